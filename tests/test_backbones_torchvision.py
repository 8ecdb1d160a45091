"""torchvision backbones: every classification builder with its head removed, heads replaced,
intermediate outputs, pretrained weights (DEFAULT from torchvision's cache, local files) and
stem adaptation, each checked against a real forward pass of the generated module."""

import warnings

import pytest
import torch
import torchvision
from backbone_helpers import backbone_spec, cache_weights, fresh, real_forward
from load_generated import compile_and_load, compile_text
from nncompile.errors import NncompileError
from nncompile.ops.backbones import surgery
from nncompile.ops.backbones.torchvision_weights import build_as_with_weights

ALL_BUILDERS = torchvision.models.list_models(module=torchvision.models)
SIZES = (64, 224, 299)  # the first input size a model accepts is used


def compile_any_size(op, tmp_path, **kw):
    for size in SIZES:
        try:
            return size, compile_and_load(backbone_spec(op, size, **kw), tmp_path)
        except NncompileError as err:
            if "fails on its input" not in str(err) and "images (its position embeddings" not in str(err):
                raise
    pytest.fail(f"{op} accepts none of the sizes {SIZES}")


@pytest.mark.parametrize("builder", ALL_BUILDERS)
def test_head_remove_width_matches_real_forward(builder, tmp_path):
    """Every classification builder, built with zero weights (a shape check needs no
    initialisation) and run on one small image (the forward is most of the cost, vit_h_14's
    seconds): the widths nncompile predicts for a batch of 2 are those of the real output."""
    size, (result, module) = compile_any_size(f"torchvision.{builder}", tmp_path)
    predicted = result.shaped.nodes["net"].built.out.shape
    features, out = real_forward(module, size, initialised=False, batch=1)
    assert predicted[0] == 2 and tuple(features.shape) == (1, *predicted[1:]), builder
    assert len(predicted) == 2, f"{builder}: head removal leaves {predicted}, not pooled features"
    assert tuple(out.shape) == (1, 7)


def test_every_builder_is_covered():
    assert len(ALL_BUILDERS) >= 80  # list_models found the builders


@pytest.mark.parametrize("builder", ["resnet18", "squeezenet1_1", "vit_b_16", "mobilenet_v3_small"])
def test_head_replace(builder, tmp_path):
    size, (result, module) = compile_any_size(
        f"torchvision.{builder}", tmp_path, body="head: replace\n    num_classes: 5", after=""
    )
    assert result.shaped.nodes["net"].built.out.shape == (2, 5)
    _, out = real_forward(module, size)
    assert tuple(out.shape) == (2, 5)
    assert "new head: 5 classes" in result.source


@pytest.mark.parametrize(
    ("builder", "outputs"),
    [
        ("resnet18", ["layer2", "layer3", "layer4"]),
        ("vgg11", ["features"]),
        ("efficientnet_b0", ["features.3", "features"]),
        ("convnext_tiny", ["features.5"]),
        ("vit_b_16", ["encoder"]),
        ("swin_t", ["features.3", "norm"]),
    ],
)
def test_intermediate_outputs(builder, outputs, tmp_path):
    body = "output: [" + ", ".join(outputs) + "]"
    last = f"net.{outputs[-1]}" if len(outputs) > 1 else "net"
    after = f"  pool: {{op: Flatten, in: {last}}}\n  fc: {{op: Linear, out_features: 7}}\n"
    size, (result, module) = compile_any_size(f"torchvision.{builder}", tmp_path, body=body, after=after)
    built = result.shaped.nodes["net"].built
    predicted = {n: p.info.shape for n, p in built.ports.items()} or {outputs[0]: built.out.shape}
    real, _ = real_forward(module, size)
    assert {name: tuple(t.shape) for name, t in real.items()} == predicted


def test_unknown_output_suggests(tmp_path):
    with pytest.raises(NncompileError, match="has no layer 'layer5'") as err:
        compile_text(backbone_spec("torchvision.resnet18", 64, body="output: layer5"), tmp_path)
    assert "did you mean 'layer" in str(err.value)


def test_regnet_builds_off_the_meta_device(tmp_path):
    """regnet computes its widths with tensors while building: shapes fall back to the CPU."""
    initialisers = dict(vars(torch.nn.init))
    result = compile_text(backbone_spec("torchvision.regnet_y_400mf", 64), tmp_path)
    assert result.shaped.nodes["net"].built.out.shape == (2, 440)
    assert vars(torch.nn.init) == initialisers  # built uninitialised, then torch.nn.init restored


def test_meta_builds_skip_torch_initialisers_whole(monkeypatch):
    """torch.nn.init hands its initialisers to a TorchFunctionMode with the tensor by keyword,
    and the mode sees none of the calls inside them: they are skipped whole on meta."""

    def refuse(*args, **kwargs):
        raise AssertionError("an initialiser ran on the meta device")

    monkeypatch.setattr(torch.nn.init, "_calculate_fan_in_and_fan_out", refuse)
    model = surgery.build_meta(lambda: torch.nn.Linear(4, 3, bias=False))  # kaiming_uniform_
    assert model.weight.is_meta and tuple(model.weight.shape) == (3, 4)


# --- weights -----------------------------------------------------------------------------------


def test_default_weights_load_from_the_cache_without_network(torch_home, tmp_path):
    torch.manual_seed(1)
    state = cache_weights(
        torch_home, torchvision.models.ResNet18_Weights.DEFAULT, torchvision.models.resnet18()
    )
    _, module = compile_and_load(backbone_spec("torchvision.resnet18", 64, body="weights: DEFAULT"), tmp_path)
    loaded = module.Net().net.state_dict()
    assert all(torch.equal(loaded[k], state[k]) for k in state)


EVERY_WEIGHTS = [
    (builder, member)
    for builder in ALL_BUILDERS
    for member in torchvision.models.get_model_weights(builder).__members__
    if member != "DEFAULT"  # an alias of one of the others
]


@pytest.mark.parametrize(("builder", "weights"), EVERY_WEIGHTS)
def test_weights_build_the_same_model_as_none(builder, weights, tmp_path):
    """For every builder and every member of its weights enum, the generated model built with
    `pretrained=False` has the state-dict keys and shapes of the model torchvision builds for
    those weights (the builder run with them on the meta device, their download and loading
    skipped), compiled for the image size of the weights. nncompile drops the auxiliary heads of googlenet and inception_v3 either way:
    they are left out of the comparison."""
    size = torchvision.models.get_model_weights(builder)[weights].transforms.keywords["crop_size"]
    text = backbone_spec(f"torchvision.{builder}", size, body=f"weights: {weights}")
    _, module = compile_and_load(text, tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = surgery.build_meta(lambda: module.Net(pretrained=False)).net
    trained = build_as_with_weights(lambda: torchvision.models.get_model(builder, weights=weights))
    aux = ("aux1.", "aux2.", "AuxLogits.")
    expected = {k: v for k, v in surgery.state_shapes(trained).items() if not k.startswith(aux)}
    assert surgery.state_shapes(plain) == expected


def test_enum_member_and_unknown_member(tmp_path):
    result = compile_text(backbone_spec("torchvision.resnet18", 64, body="weights: IMAGENET1K_V1"), tmp_path)
    assert "ResNet18_Weights.IMAGENET1K_V1" in result.source
    with pytest.raises(NncompileError, match="unknown weights 'IMAGENET_V1'") as err:
        compile_text(backbone_spec("torchvision.resnet18", 64, body="weights: IMAGENET_V1"), tmp_path)
    assert "IMAGENET1K_V1" in str(err.value)


def test_googlenet_state_dict_is_the_same_with_and_without_weights(torch_home, tmp_path):
    """googlenet drops its auxiliary heads only when given weights: nncompile pins aux_logits."""
    torch.manual_seed(2)
    cached = torchvision.models.googlenet(aux_logits=True, init_weights=True)
    cache_weights(torch_home, torchvision.models.GoogLeNet_Weights.DEFAULT, cached)
    _, module = compile_and_load(
        backbone_spec("torchvision.googlenet", 64, body="weights: DEFAULT"), tmp_path
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pretrained, fresh = module.Net(), module.Net(pretrained=False)
    assert list(pretrained.state_dict()) == list(fresh.state_dict())
    assert pretrained.net.transform_input == fresh.net.transform_input
    fresh.load_state_dict(pretrained.state_dict())  # a checkpoint of one loads into the other


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_local_weights_file(suffix, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(3)
    state = torchvision.models.resnet18().state_dict()
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, tmp_path / f"r18{suffix}")
    else:
        torch.save({"state_dict": state, "epoch": 3}, tmp_path / f"r18{suffix}")
    result, module = compile_and_load(
        backbone_spec("torchvision.resnet18", 64, body=f"weights: r18{suffix}\n    head: remove"), tmp_path
    )
    loaded = module.Net().net.state_dict()
    assert all(torch.equal(loaded[k], state[k]) for k in loaded)
    assert "_load_weights(self.net," in result.source


def test_mismatched_weights_file_lists_missing_and_unexpected_keys(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    state = torchvision.models.resnet18().state_dict()
    state["extra.weight"] = state.pop("layer4.1.bn2.weight")
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(NncompileError) as err:
        compile_text(backbone_spec("torchvision.resnet18", 64, body="weights: bad.pt"), tmp_path)
    message = str(err.value)
    assert "missing keys [layer4.1.bn2.weight]" in message
    assert "unexpected keys [extra.weight]" in message
    assert "strict: false" in message
    result, module = compile_and_load(
        backbone_spec("torchvision.resnet18", 64, body="weights: bad.pt\n    strict: false"), tmp_path
    )
    assert "layer4.1.bn2.weight" in result.source.split('"""')[1]  # reported in the header
    module.Net()  # loads what matches


def test_weights_file_of_another_architecture(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save(torchvision.models.resnet18(num_classes=10).state_dict(), tmp_path / "r10.pt")
    with pytest.raises(NncompileError, match=r"fc.weight \(10, 512\) vs \(1000, 512\)"):
        compile_text(backbone_spec("torchvision.resnet18", 64, body="weights: r10.pt"), tmp_path)


def test_missing_weights_file(tmp_path):
    with pytest.raises(NncompileError, match="weights file 'nowhere/r18.pth' not found"):
        compile_text(backbone_spec("torchvision.resnet18", 64, body="weights: nowhere/r18.pth"), tmp_path)


# --- stem adaptation ---------------------------------------------------------------------------


def stem_spec(op: str, channels: int, body: str, after: str | None = None) -> str:
    return backbone_spec(op, 64, body=f"in_channels: {channels}\n    {body}", after=after).replace(
        "image: [3,", f"image: [{channels},"
    )


def test_four_channel_resnet_keeps_pretrained_filters(torch_home, tmp_path):
    torch.manual_seed(4)
    state = cache_weights(
        torch_home, torchvision.models.ResNet18_Weights.DEFAULT, torchvision.models.resnet18()
    )
    result, module = compile_and_load(
        stem_spec("torchvision.resnet18", 4, "weights: DEFAULT\n    head: remove"), tmp_path
    )
    assert "self.net.conv1 = _adapt_stem(self.net.conv1, 4)" in result.source
    model = module.Net().eval()
    rgb = state["conv1.weight"]
    stem = model.net.conv1.weight
    assert stem.shape == (64, 4, 7, 7)
    torch.testing.assert_close(stem[:, :3], rgb * 3 / 4)
    torch.testing.assert_close(stem[:, 3], rgb[:, 0] * 3 / 4)
    others = {k: v for k, v in model.net.state_dict().items() if k != "conv1.weight"}
    assert all(torch.equal(v, state[k]) for k, v in others.items())
    with torch.no_grad():
        assert model(torch.randn(2, 4, 64, 64)).shape == (2, 7)


def test_one_channel_vgg_sums_the_rgb_filters(tmp_path):
    result, module = compile_and_load(
        stem_spec(
            "torchvision.vgg11",
            1,
            "output: features",
            "  flat: {op: Flatten}\n  fc: {op: Linear, out_features: 7}\n",
        ),
        tmp_path,
    )
    assert "self.net.features[0] = _adapt_stem(self.net.features[0], 1)" in result.source
    torch.manual_seed(5)
    rgb = torchvision.models.vgg11().features[0].weight
    torch.manual_seed(5)
    model = fresh(module)
    torch.testing.assert_close(model.net.get_submodule("features.0").weight, rgb.sum(dim=1, keepdim=True))
    with torch.no_grad():
        assert model(torch.randn(2, 1, 64, 64)).shape == (2, 7)


def test_wrong_channel_count_suggests_in_channels(tmp_path):
    text = backbone_spec("torchvision.resnet18", 64).replace("image: [3,", "image: [4,")
    with pytest.raises(NncompileError, match="add `in_channels: 4`"):
        compile_text(text, tmp_path)


class _Loaded(Exception):
    """Raised where torchvision would fetch weights: the model was accepted up to that point."""


def test_weights_that_change_the_architecture_are_passed_explicitly(tmp_path, monkeypatch):
    """ViT's SWAG weights make torchvision build for 384-pixel images. The generated model passes
    image_size=384 itself, so it has the same architecture with or without the weights, and the
    shapes nncompile predicts are those of the pretrained model."""
    from torchvision.models._api import WeightsEnum

    body = "weights: IMAGENET1K_SWAG_E2E_V1\n    head: remove"
    result, module = compile_and_load(backbone_spec("torchvision.vit_b_16", 384, body=body), tmp_path)
    assert "image_size=384" in result.source
    with torch.device("meta"):
        model = module.Net(pretrained=False)
        out = model.net(torch.empty(2, 3, 384, 384))
    assert tuple(out.shape) == result.shaped.nodes["net"].built.out.shape == (2, 768)

    def fetch(self, *args, **kwargs):
        raise _Loaded

    monkeypatch.setattr(WeightsEnum, "get_state_dict", fetch)
    with pytest.raises(_Loaded), torch.device("meta"):
        module.Net(pretrained=True)  # torchvision accepts image_size=384 with these weights
    with pytest.raises(NncompileError, match="takes only 384x384 images"):
        compile_text(backbone_spec("torchvision.vit_b_16", 224, body=body), tmp_path)
