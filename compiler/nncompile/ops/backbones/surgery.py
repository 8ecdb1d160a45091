"""Fine-tuning surgery on a backbone built on the meta device: find its classification head and
its stem by inspecting the module (not from a per-model list), and replace them.

The generated file gets plain assignments (`self.resnet.fc = nn.Identity()`) and, for a stem
taking N channels, the small `_adapt_stem` function of runtime/stem.py, so it never imports nncompile.
"""

from __future__ import annotations

from collections.abc import Callable

from ...pyfmt import Arg, Call, identifier, literal

PROBE_CLASSES = 7  # a class count no builder defaults to: the layers it changes are the head


def module_path_code(path: str) -> str:
    """`classifier.6` -> `.classifier[6]`: attribute access for names, indexing for positions."""
    return "".join(f"[{p}]" if p.isdigit() else f".{identifier(p)}" for p in path.split("."))


def build_meta(factory: Callable[[], object]):
    """`factory()` on the meta device, its weights' values never computed (meta_init.py).
    Builders that read tensor values while building (the regnet family computes its widths with
    tensors) are built on the CPU with torch.nn.init's initialisers as no-ops (regnet_y_128gf:
    0.4 s instead of 10), and moved to meta."""
    import torch

    from .meta_init import values_skipped, weights_left_uninitialised  # imports torch

    try:
        with torch.device("meta"), values_skipped():
            return factory()
    except (NotImplementedError, RuntimeError):
        with weights_left_uninitialised():
            return factory().to("meta")


def state_shapes(model) -> dict[str, tuple[int, ...]]:
    return {name: tuple(t.shape) for name, t in model.state_dict().items()}


def set_submodule(model, path: str, module) -> None:
    parent_path, _, name = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    if name.isdigit():
        parent[int(name)] = module
    else:
        setattr(parent, name, module)


def changed_layers(model, probe) -> list[str]:
    """Paths of the parameterised layers whose weight shapes differ between two builds of a model
    with different class counts: exactly the classification head(s)."""
    shapes = {name: tuple(p.shape) for name, p in probe.named_parameters()}
    changed = []
    for name, param in model.named_parameters():
        if shapes.get(name, tuple(param.shape)) != tuple(param.shape):
            layer = name.rpartition(".")[0]
            if layer not in changed:
                changed.append(layer)
    return changed


def head_width(layer) -> int | None:
    """The features a head layer reads (Linear) or its input channels (1x1 Conv)."""
    return getattr(layer, "in_features", None) or getattr(layer, "in_channels", None)


def new_head(layer, num_classes: int):
    """A fresh head like `layer` with `num_classes` outputs: (constructor code, its meta module),
    or None for a layer kind it cannot rebuild."""
    import torch
    import torch.nn as nn

    has_bias = getattr(layer, "bias", None) is not None
    bias = () if has_bias else (Arg("bias", "False"),)
    if isinstance(layer, nn.Linear):
        code = Call("nn.Linear", (Arg(None, str(layer.in_features)), Arg(None, literal(num_classes)), *bias))
        with torch.device("meta"):
            return code, nn.Linear(layer.in_features, num_classes, bias=has_bias)
    if isinstance(layer, nn.Conv2d) and layer.kernel_size == (1, 1) and layer.groups == 1:
        code = Call(
            "nn.Conv2d",
            (
                Arg(None, str(layer.in_channels)),
                Arg(None, literal(num_classes)),
                Arg("kernel_size", "1"),
                *bias,
            ),
        )
        with torch.device("meta"):
            return code, nn.Conv2d(layer.in_channels, num_classes, kernel_size=1, bias=has_bias)
    return None


def find_stem(model, image) -> tuple[str, object] | None:
    """The first Conv2d that the forward pass feeds with the 3-channel image."""
    import torch
    import torch.nn as nn

    seen: list[tuple[str, object]] = []
    hooks = [
        module.register_forward_pre_hook(lambda m, args, name=name: seen.append((name, m)))
        for name, module in model.named_modules()
        if isinstance(module, nn.Conv2d) and module.in_channels == image.shape[1]
    ]
    try:
        with torch.no_grad():
            model(image)
    except Exception:  # noqa: BLE001 - a model that fails on the probe has no stem to find here
        return None
    finally:
        for hook in hooks:
            hook.remove()
    return seen[0] if seen else None


def adapted_stem(conv, in_channels: int):
    """The stem the generated file's `_adapt_stem` makes, built here by that same function on the
    meta device, and that function's source for the generated file."""
    import inspect

    import torch

    from ...runtime.stem import _adapt_stem

    with torch.device("meta"):
        return _adapt_stem(conv, in_channels), inspect.getsource(_adapt_stem)


def count(module) -> int:
    return sum(p.numel() for p in module.parameters()) if module is not None else 0
