"""What the backbone tests share: a one-backbone spec, the generated model built without
weights, a real forward pass that records the backbone's own output, and weights put in
torchvision's cache (the `torch_home` fixture of conftest.py)."""

import warnings

import torch
from nncompile.ops.backbones import surgery


def backbone_spec(
    op: str, size: int, body: str = "head: remove", after: str | None = None, channels: int = 3
):
    """A spec feeding a (channels, size, size) image to `op` (node `net`, options `body`), then
    the nodes `after` (by default a 7-class Linear head)."""
    after = "  fc: {op: Linear, out_features: 7}\n" if after is None else after
    return (
        "nncompile: 1\nname: Net\n"
        f"inputs:\n  image: [{channels}, {size}, {size}]\n"
        f"nodes:\n  net:\n    op: {op}\n    {body}\n{after}"
        "task: {kind: classification}\n"
    )


def fresh(module):
    """The generated model without pretrained weights (the constructor takes the flag only when
    some node loads weights)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return module.Net(pretrained=False)
        except TypeError:
            return module.Net()


def real_forward(module, size: int, channels: int = 3, initialised: bool = True, batch: int = 2) -> tuple:
    """The backbone node's real output and the model's output, on a real forward pass on the CPU
    of `batch` images (in eval mode: BatchNorm takes one image as well as two).
    Not `initialised`: the model is built on the meta device and its weights and buffers are
    zeros on the CPU, so the shapes are real and the values are not: initialising the weights
    of the biggest models takes seconds each (vit_h_14: 9 s), a shape check needs none of it."""
    torch.manual_seed(0)
    if initialised:
        model = fresh(module).eval()
    else:
        model = surgery.build_meta(lambda: fresh(module)).to_empty(device="cpu").eval()
        with torch.no_grad():
            for tensor in (*model.parameters(), *model.buffers()):
                tensor.zero_()
    seen = {}
    model.net.register_forward_hook(lambda m, a, out: seen.setdefault("net", out))
    with torch.no_grad():
        out = model(torch.randn(batch, channels, size, size))
    return seen["net"], out


def cache_weights(home, weights, model) -> dict:
    """Put `model`'s state dict where torchvision looks for `weights` before downloading them."""
    state = model.state_dict()
    torch.save(state, home / "hub" / "checkpoints" / weights.url.rpartition("/")[2])
    return state


def random_batchnorm(model: torch.nn.Module) -> None:
    """Random statistics and affine values in every norm layer with running statistics (BatchNorm,
    and frozen ones: torchvision's, a generated file's). A fresh one (0, 1) in eval mode is nearly
    the identity: a comparison of outputs would not see one left out or moved."""
    ranges = {"running_mean": (-1, 1), "running_var": (0.5, 2), "weight": (0.5, 2), "bias": (-1, 1)}
    for module in model.modules():
        if getattr(module, "running_var", None) is None:
            continue
        for name, (low, high) in ranges.items():
            if getattr(module, name, None) is not None:  # no affine values without affine=True
                torch.nn.init.uniform_(getattr(module, name), low, high)
