"""Parts of torchvision segmentation and detection models (`output: backbone`): their ports
against a real forward pass, and the same model with and without weights (torchvision adds the
auxiliary classifier of segmentation models, and builds detection backbones with
FrozenBatchNorm2d and early layers frozen, only when given weights)."""

import warnings

import pytest
import torch
import torchvision
from backbone_helpers import backbone_spec, cache_weights, fresh, real_forward
from load_generated import compile_and_load, compile_text
from nncompile.errors import NncompileError
from nncompile.ops.backbones import surgery
from nncompile.ops.backbones.torchvision_parts import covering_roots
from nncompile.ops.backbones.torchvision_weights import build_as_with_weights

DETECTION = torchvision.models.list_models(module=torchvision.models.detection)
SEGMENTATION = torchvision.models.list_models(module=torchvision.models.segmentation)


def part_spec(family: str, builder: str, size: int, body: str = "output: backbone", port: str | None = None):
    source = f"net.{port}" if port else "net"
    after = f"  flat: {{op: Flatten, in: {source}}}\n  fc: {{op: Linear, out_features: 7}}\n"
    return backbone_spec(f"torchvision.{family}.{builder}", size, body=body, after=after)


def port_of(builder: str) -> str:
    """A port of the builder's backbone for the next node to read."""
    return "high" if builder.startswith("lraspp") else "out" if builder in SEGMENTATION else "0"


def image_size(builder: str) -> int:
    return 320 if builder.startswith("ssd") else 64  # SSD's extra layers need their image size


def check_ports(result, module, size: int) -> None:
    predicted = {n: p.info.shape for n, p in result.shaped.nodes["net"].built.ports.items()}
    real, out = real_forward(module, size)
    assert {n: tuple(t.shape) for n, t in real.items()} == predicted
    assert out.shape == (2, 7)


@pytest.mark.parametrize("builder", SEGMENTATION)
def test_segmentation_backbone_ports(builder, tmp_path):
    """Every segmentation builder's backbone: ports `net.out` and `net.aux` (`net.low`,
    `net.high` for lraspp), predicted as a real forward pass returns them."""
    result, module = compile_and_load(part_spec("segmentation", builder, 64, port=port_of(builder)), tmp_path)
    assert "weights_backbone=None" in result.source  # never downloads the backbone's own weights
    check_ports(result, module, 64)


def test_segmentation_needs_a_submodule(tmp_path):
    with pytest.raises(NncompileError, match="did you mean 'backbone'"):
        compile_text(part_spec("segmentation", "fcn_resnet50", 64, body="output: backbne"), tmp_path)


@pytest.mark.parametrize("builder", DETECTION)
def test_detection_backbone_ports(builder, tmp_path):
    """Every detection builder's backbone: FPN levels (ports `net.0` ... `net.pool`) or SSD's
    feature maps (`net.0` ... `net.5`), predicted as a real forward pass returns them."""
    size = image_size(builder)
    result, module = compile_and_load(part_spec("detection", builder, size, port=port_of(builder)), tmp_path)
    check_ports(result, module, size)


def test_unknown_detection_model_suggests(tmp_path):
    with pytest.raises(NncompileError, match="did you mean 'fasterrcnn_resnet50_fpn'"):
        compile_text(part_spec("detection", "fasterrcnn_resnet50", 64), tmp_path)


@pytest.mark.parametrize(
    ("family", "builder"),
    [("segmentation", b) for b in SEGMENTATION] + [("detection", b) for b in DETECTION],
)
def test_backbone_without_weights_is_the_pretrained_one(family, builder, tmp_path):
    """For every segmentation and detection builder, `Net(pretrained=False)` holds the modules
    (types, eps), state-dict shapes and trainable parameters of the backbone torchvision builds
    for the DEFAULT weights (on the meta device, their download and loading skipped), but the
    layers torchvision freezes: there, only `freeze:` freezes."""
    body = "weights: DEFAULT\n    output: backbone"
    text = part_spec(family, builder, image_size(builder), body=body, port=port_of(builder))
    _, module = compile_and_load(text, tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = surgery.build_meta(lambda: module.Net(pretrained=False)).net
    full = build_as_with_weights(lambda: torchvision.models.get_model(builder, weights="DEFAULT"))
    trained = full.backbone
    kinds = [(n, type(m).__name__, getattr(m, "eps", None)) for n, m in trained.named_modules()]
    assert [(n, type(m).__name__, getattr(m, "eps", None)) for n, m in plain.named_modules()] == kinds
    assert surgery.state_shapes(plain) == surgery.state_shapes(trained)
    assert all(p.requires_grad for p in plain.parameters())


def models_both_ways(module):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return module.Net(), module.Net(pretrained=False)


@pytest.mark.parametrize(
    ("builder", "source"),
    [
        # FrozenBatchNorm2d with eps=0.0 (legacy weights) in the body, layers frozen
        ("fasterrcnn_resnet50_fpn", "_frozen_batchnorm(self.net.body, eps=0.0)"),
        # BatchNorm2d either way, but layers frozen only with weights
        ("fasterrcnn_resnet50_fpn_v2", "self.net.requires_grad_(True)"),
        ("fasterrcnn_mobilenet_v3_large_320_fpn", "_frozen_batchnorm(self.net.body, eps=1e-05)"),
    ],
)
def test_detection_backbone_is_the_same_with_and_without_weights(builder, source, torch_home, tmp_path):
    """A state dict cached where torchvision looks for the DEFAULT weights makes `Net()` take
    torchvision's real pretrained path; `Net(pretrained=False)` must be the same model."""
    torch.manual_seed(0)
    full = torchvision.models.get_model(builder, weights=None, weights_backbone=None)
    state = cache_weights(torch_home, torchvision.models.get_model_weights(builder).DEFAULT, full)
    text = part_spec("detection", builder, 64, body="weights: DEFAULT\n    output: backbone", port="pool")
    result, module = compile_and_load(text, tmp_path)
    assert source in result.source
    pretrained, plain = models_both_ways(module)
    kinds = [(n, type(m).__name__, getattr(m, "eps", None)) for n, m in pretrained.named_modules()]
    assert kinds == [(n, type(m).__name__, getattr(m, "eps", None)) for n, m in plain.named_modules()]
    assert list(pretrained.state_dict()) == list(plain.state_dict())
    trainable = [n for n, p in pretrained.named_parameters() if p.requires_grad]
    assert trainable == [n for n, p in plain.named_parameters() if p.requires_grad]
    assert trainable == [n for n, _ in pretrained.named_parameters()]  # `freeze:` alone freezes
    loaded = pretrained.net.state_dict()
    assert all(torch.equal(v, state[f"backbone.{k}"]) for k, v in loaded.items())
    plain.load_state_dict(pretrained.state_dict())  # a checkpoint of one loads into the other
    image = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(plain.eval()(image), pretrained.eval()(image))
    counts = result.source.split('"""')[1]
    parameters = sum(p.numel() for p in plain.parameters())
    assert f"Parameters: {parameters:,}" in counts


def test_frozen_detection_backbone_trains_only_the_head(tmp_path):
    body = "weights: DEFAULT\n    output: backbone\n    freeze: true"
    text = part_spec("detection", "fasterrcnn_mobilenet_v3_large_320_fpn", 64, body=body, port="pool")
    result, module = compile_and_load(text, tmp_path)
    assert "requires_grad_(True)" not in result.source  # nothing to undo before freezing it all
    model = fresh(module)
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["fc.weight", "fc.bias"]


def test_covering_roots_takes_whole_subtrees_only():
    norms = {"body.a.bn", "body.b.bn", "fpn.bn"}
    assert covering_roots({"body.a.bn", "body.b.bn"}, norms) == ["body"]
    assert covering_roots({"body.a.bn", "fpn.bn"}, norms) == ["body.a.bn", "fpn.bn"]
    assert covering_roots(set(norms), norms) == [""]


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_detection_weights_file_of_the_whole_model(suffix, tmp_path, monkeypatch):
    """A state dict of the whole detector, saved from torchvision's pretrained layout
    (FrozenBatchNorm2d: no num_batches_tracked), loads before the backbone is taken."""
    from nncompile.runtime.torchvision_norms import _frozen_batchnorm

    monkeypatch.chdir(tmp_path)
    builder = "fasterrcnn_mobilenet_v3_large_320_fpn"
    torch.manual_seed(1)
    full = torchvision.models.get_model(builder, weights=None, weights_backbone=None)
    _frozen_batchnorm(full.backbone.body, eps=1e-5)
    state = full.state_dict()
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, tmp_path / f"det{suffix}")
    else:
        torch.save(state, tmp_path / f"det{suffix}")
    body = f"weights: det{suffix}\n    output: backbone"
    result, module = compile_and_load(part_spec("detection", builder, 64, body=body, port="pool"), tmp_path)
    assert "_load_weights(" in result.source and '_weights_file(net_weights, "net_weights"' in result.source
    assert f'net_weights: str = os.path.join(HERE, "det{suffix}")' in result.source
    assert "self.net = self.net.backbone" in result.source
    pretrained, plain = models_both_ways(module)
    assert list(pretrained.state_dict()) == list(plain.state_dict())
    loaded = pretrained.net.state_dict()
    compared = [k for k in loaded if f"backbone.{k}" in state]
    assert len(compared) > 200  # the backbone's weights, found under the whole model's prefix
    assert all(torch.equal(loaded[k], state[f"backbone.{k}"]) for k in compared)
    assert all(k.endswith("num_batches_tracked") for k in loaded if f"backbone.{k}" not in state)


def test_mismatched_detection_weights_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    builder = "fasterrcnn_mobilenet_v3_large_320_fpn"
    state = torchvision.models.get_model(builder, weights=None, weights_backbone=None).state_dict()
    del state["backbone.fpn.layer_blocks.0.0.weight"]
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(NncompileError, match=r"missing keys \[backbone.fpn.layer_blocks.0.0.weight\]") as err:
        compile_text(
            part_spec("detection", builder, 64, body="weights: bad.pt\n    output: backbone"), tmp_path
        )
    assert "strict: false" in str(err.value)


def test_torchvisions_own_freezing_as_a_trainable_list(tmp_path):
    """docs/backbones.md: `trainable: [body.layer2, body.layer3, body.layer4, fpn]` trains what
    torchvision trains with the weights; FrozenBatchNorm2d (buffers only) needs no freezing line."""
    builder = "fasterrcnn_resnet50_fpn"
    body = (
        "weights: DEFAULT\n    output: backbone\n    trainable: [body.layer2, body.layer3, body.layer4, fpn]"
    )
    result, module = compile_and_load(part_spec("detection", builder, 64, body=body, port="pool"), tmp_path)
    assert "self.net.body.layer1.requires_grad_(False)" in result.source
    assert "bn1.requires_grad_" not in result.source
    with torch.device("meta"):
        ours = fresh(module).net
    reference = build_as_with_weights(
        lambda: torchvision.models.get_model(builder, weights="DEFAULT")
    ).backbone
    trainable = [n for n, p in reference.named_parameters() if p.requires_grad]
    assert [n for n, p in ours.named_parameters() if p.requires_grad] == trainable
