"""Inputs that match the weights (issue 27): `normalize:` from the weights' metadata or by hand,
the stem built by band name (`bands:`, `weights_bands:`, `new_bands:`), torchgeo's backbones."""

import importlib
import sys

import pytest
import timm
import torch
import torchvision
from backbone_helpers import cache_weights
from load_generated import compile_and_load
from nncompile.errors import NncompileError
from nncompile.pipeline import compile_spec
from nncompile.runtime.stem import _stem_by_band
from torchvision.transforms.v2.functional import normalize

RGB = "[B04, B03, B02]"  # what the channels of RGB weights saw, in Sentinel-2's names


def spec(bands: str | None = None, node: str = "", normalize: str | None = None, op="torchvision.resnet18"):
    """A 160x160 input with len(bands) channels (default 3) fed to a backbone `net` whose head is replaced."""
    channels = bands.count(",") + 1 if bands else 3
    keys = f"shape: [{channels}, 160, 160]"  # near the 224 of the weights: no size warning
    keys += f", bands: {bands}" if bands else ""
    keys += f", normalize: {normalize}" if normalize else ""
    return (
        "nncompile: 1\nname: Net\n"
        f"inputs:\n  image: {{{keys}}}\n"
        f"nodes:\n  net:\n    op: {op}\n    weights: DEFAULT\n    head: replace\n    num_classes: 5\n"
        + "".join(f"    {line}\n" for line in node.splitlines())
        + "task: {kind: classification}\n"
    )


@pytest.fixture
def rgb_weights(torch_home):
    """Random resnet18 weights where torchvision reads ResNet18_Weights.DEFAULT: its conv1 filters."""
    torch.manual_seed(3)
    state = cache_weights(
        torch_home, torchvision.models.ResNet18_Weights.DEFAULT, torchvision.models.resnet18()
    )
    return state["conv1.weight"]


def stem_of(text: str, folder):
    _, module = compile_and_load(text, folder)
    return module.Net().net.conv1.weight.detach()


def error_of(text: str, write_spec):
    with pytest.raises(NncompileError) as info:
        compile_spec(write_spec(text))
    [diagnostic] = info.value.diagnostics
    return diagnostic, text.splitlines()[diagnostic.loc.line - 1][diagnostic.loc.col - 1 :]


# --- the stem by band name ---------------------------------------------------------------------


def test_matched_bands_get_the_pretrained_slices_and_a_new_band_their_mean(rgb_weights, tmp_path):
    stem = stem_of(spec("[B02, B03, B04, B08]", f"weights_bands: {RGB}"), tmp_path)
    assert stem.shape[1] == 4
    for channel, pretrained in enumerate([2, 1, 0]):  # B02 is blue, RGB weights' channel 2
        assert torch.equal(stem[:, channel], rgb_weights[:, pretrained])
    assert torch.equal(stem[:, 3], rgb_weights.mean(dim=1))


def test_permuting_two_band_names_permutes_the_stem_channels(rgb_weights, tmp_path):
    first = stem_of(spec("[B02, B03, B04, B08]", f"weights_bands: {RGB}"), tmp_path)
    swapped = stem_of(spec("[B03, B02, B04, B08]", f"weights_bands: {RGB}"), tmp_path)
    assert torch.equal(swapped[:, [1, 0, 2, 3]], first)


def test_band_names_match_with_or_without_leading_zeros(rgb_weights, tmp_path):
    stem = stem_of(spec("[B2, B3, B4, B8A]", f"weights_bands: {RGB}"), tmp_path)
    assert torch.equal(stem[:, :3], rgb_weights[:, [2, 1, 0]])


@pytest.mark.parametrize("rule", ["zero", "random"])
def test_a_new_band_follows_its_rule(rule, rgb_weights, tmp_path):
    stem = stem_of(spec("[B08, B04, B03, B02]", f"weights_bands: {RGB}\nnew_bands: {rule}"), tmp_path)
    assert torch.equal(stem[:, 1:], rgb_weights)
    if rule == "zero":
        assert not stem[:, 0].any()
    else:  # the new layer's own initialisation: none of the pretrained filters, nor their mean
        assert stem[:, 0].std() > 0
        assert not any(torch.equal(stem[:, 0], s) for s in [*rgb_weights.unbind(1), rgb_weights.mean(1)])


def test_the_header_says_which_channel_came_from_where(tmp_path):
    result, _ = compile_and_load(spec("[B02, B03, B04, B08]", f"weights_bands: {RGB}"), tmp_path)
    assert (
        "net: stem conv1 built by band: B02 = pretrained channel 2 (B02), B03 = pretrained channel 1 (B03), "
        "B04 = pretrained channel 0 (B04), B08 = new (mean)"
    ) in result.source.replace("\n", " ")


def test_stem_by_band_copies_slices_exactly():
    conv = torch.nn.Conv2d(3, 8, 3, bias=True)
    new = _stem_by_band(conv, [2, None, 0], "zero")
    assert torch.equal(new.weight[:, 0], conv.weight[:, 2]) and torch.equal(
        new.weight[:, 2], conv.weight[:, 0]
    )
    assert not new.weight[:, 1].any() and torch.equal(new.bias, conv.bias)


def test_timm_stem_is_built_by_band(tmp_path):
    result, module = compile_and_load(
        spec("[B02, B03, B04, B08]", f"weights_bands: {RGB}", op="timm.resnet18"), tmp_path
    )
    assert '_stem_by_band(self.net.conv1, [2, 1, 0, None], "mean")' in result.source
    torch.manual_seed(0)
    plain = timm.create_model("resnet18", num_classes=5)
    torch.manual_seed(0)
    net = module.Net(pretrained=False).net  # the same random filters, then mapped by band
    assert torch.equal(net.conv1.weight[:, :3], plain.conv1.weight[:, [2, 1, 0]])


def test_named_bands_without_weights_bands_warn_that_the_stem_repeats_filters(write_spec):
    result = compile_spec(write_spec(spec("[B02, B03, B04, B08]")))
    [warning] = [w for w in result.warnings if w.severity == "warning"]
    assert "repeats the pretrained filters" in warning.message
    assert "weights_bands: [B04, B03, B02]" in warning.hint
    assert "_adapt_stem(self.net.conv1, 4)" in result.source


# --- errors at the line --------------------------------------------------------------------------


def test_a_band_listed_twice_is_an_error_at_it(write_spec):
    d, at = error_of(spec("[B02, B03, B02, B08]"), write_spec)
    assert d.message == "band 'B02' is listed twice" and at.startswith("B02, B08]")


def test_bands_of_the_wrong_length_are_an_error(write_spec):
    text = spec("[B02, B03, B04]").replace("shape: [3,", "shape: [4,")
    d, at = error_of(text, write_spec)
    assert d.message == "`bands:` names 3 bands but the input has 4 channels" and at.startswith("[B02")


def test_weights_bands_of_the_wrong_length_are_an_error(write_spec):
    d, at = error_of(spec("[B02, B03, B04, B08]", "weights_bands: [B04, B03]"), write_spec)
    assert d.message == "`weights_bands:` names 2 bands but the stem of torchvision.resnet18 takes 3 channels"
    assert at.startswith("[B04, B03]")


def test_an_unknown_new_bands_rule_is_an_error(write_spec):
    d, at = error_of(spec("[B02, B03, B04, B08]", f"weights_bands: {RGB}\nnew_bands: meen"), write_spec)
    assert d.message == "unknown `new_bands` rule 'meen'" and d.hint == "did you mean 'mean'?"
    assert at == "meen"


def test_weights_bands_need_named_input_bands(write_spec):
    d, _ = error_of(spec(None, f"weights_bands: {RGB}"), write_spec)
    assert d.message == "`weights_bands:` needs the names of the input's channels"


# --- normalisation -------------------------------------------------------------------------------


def test_normalize_weights_emits_torchvision_weights_own_mean_and_std(tmp_path):
    result, module = compile_and_load(spec(RGB, f"weights_bands: {RGB}", normalize="weights"), tmp_path)
    preset = torchvision.models.ResNet18_Weights.DEFAULT.transforms()
    model = module.Net(pretrained=False)
    assert torch.equal(model.image_mean.flatten(), torch.tensor(preset.mean))
    assert torch.equal(model.image_std.flatten(), torch.tensor(preset.std))
    assert (
        "# torchvision ResNet18_Weights.IMAGENET1K_V1.transforms(), the weights of node 'net'"
        in result.source
    )
    assert "image_mean" not in model.state_dict()  # checkpoints and weight files are unchanged


def test_normalize_weights_emits_timm_pretrained_cfg(tmp_path):
    _, module = compile_and_load(spec(None, normalize="weights", op="timm.resnet18"), tmp_path)
    cfg = timm.models.get_pretrained_cfg("resnet18")
    model = module.Net(pretrained=False)
    assert torch.equal(model.image_mean.flatten(), torch.tensor(cfg.mean))
    assert torch.equal(model.image_std.flatten(), torch.tensor(cfg.std))


def test_normalize_follows_the_band_mapping(tmp_path):
    _, module = compile_and_load(
        spec("[B02, B03, B04]", f"weights_bands: {RGB}", normalize="weights"), tmp_path
    )
    preset = torchvision.models.ResNet18_Weights.DEFAULT.transforms()
    assert torch.equal(module.Net(pretrained=False).image_mean.flatten(), torch.tensor(preset.mean[::-1]))


def test_normalize_weights_equals_normalising_by_hand_before_the_plain_model(tmp_path):
    _, normalised = compile_and_load(spec(None, normalize="weights"), tmp_path)
    _, plain = compile_and_load(spec(None), tmp_path)
    a, b = normalised.Net(pretrained=False).eval(), plain.Net(pretrained=False).eval()
    b.load_state_dict(a.state_dict())
    preset = torchvision.models.ResNet18_Weights.DEFAULT.transforms()
    x = torch.rand(2, 3, 64, 64)
    by_hand = normalize(x, preset.mean, preset.std)
    with torch.no_grad():
        assert torch.allclose(a(x), b(by_hand), rtol=0, atol=1e-6)


def test_normalize_by_hand(tmp_path):
    text = spec(None, normalize="{mean: [1, 2, 3], std: [2]}")
    _, module = compile_and_load(text, tmp_path)
    model = module.Net(pretrained=False)
    assert model.image_mean.flatten().tolist() == [1, 2, 3] and model.image_std.flatten().tolist() == [
        2,
        2,
        2,
    ]


def test_normalize_weights_without_pretrained_weights_is_an_error(write_spec):
    d, at = error_of(spec(None, normalize="weights").replace("weights: DEFAULT", "weights: null"), write_spec)
    assert "no node reading input 'image' has pretrained weights" in d.message and at.startswith("weights}")


def test_an_unknown_normalisation_is_an_error(write_spec):
    d, at = error_of(spec(None, normalize="imagenet"), write_spec)
    assert d.message == "unknown normalisation 'imagenet'" and at.startswith("imagenet")


def test_normalize_by_hand_of_the_wrong_length_is_an_error(write_spec):
    d, _ = error_of(spec(None, normalize="{mean: [1, 2], std: [1]}"), write_spec)
    assert d.message == "`normalize: mean` must be 3 numbers, one per channel, not [1, 2]"


def test_pretrained_input_left_unnormalised_gets_a_note(write_spec):
    result = compile_spec(write_spec(spec(None)))
    [note] = [w for w in result.warnings if w.severity == "note"]
    assert note.message.startswith("input 'image' feeds node 'net', whose weights expect inputs normalised")
    assert "normalize: weights" in note.hint


# --- torchgeo --------------------------------------------------------------------------------------


def torchgeo_models():
    try:
        return importlib.import_module("torchgeo.models")
    except ImportError as exc:  # the `geo` extra is not installed, or a dependency of it is missing
        pytest.skip(f"torchgeo (the `geo` extra) cannot be imported: {exc}")


def test_torchgeo_subset_of_sentinel2_bands_gets_the_pretrained_slices(torch_home, tmp_path):
    models = torchgeo_models()
    weights = models.ResNet18_Weights.SENTINEL2_ALL_MOCO
    torch.manual_seed(5)
    pretrained = timm.create_model("resnet18", in_chans=13, num_classes=0)
    cache_weights(torch_home, weights, pretrained)
    text = spec("[B02, B03, B04, B08]", op="torchgeo.resnet18", normalize="weights").replace(
        "DEFAULT", "SENTINEL2_ALL_MOCO"
    )
    result, module = compile_and_load(text, tmp_path)
    model = module.Net()
    stem = model.net.conv1.weight.detach()
    names = weights.meta["bands"]
    for channel, band in enumerate(["B2", "B3", "B4", "B8"]):
        assert torch.equal(stem[:, channel], pretrained.conv1.weight[:, names.index(band)])
    step = weights.transforms[-1]  # Normalize
    assert model.image_mean.flatten().tolist() == [float(step.mean[0])] * 4
    assert model.image_std.flatten().tolist() == [float(step.std[0])] * 4
    assert "torchgeo ResNet18_Weights.SENTINEL2_ALL_MOCO.transforms" in result.source


def test_a_torchgeo_op_without_torchgeo_says_what_to_install(write_spec, monkeypatch):
    monkeypatch.setitem(sys.modules, "torchgeo", None)  # as if the `geo` extra were not installed
    d, at = error_of(spec("[B02, B03, B04, B08]", op="torchgeo.resnet18"), write_spec)
    assert d.message.startswith("torchgeo.resnet18 needs torchgeo, which cannot be imported: ")
    assert at == "torchgeo.resnet18"
    assert d.hint == "pip install 'nncompile[geo]' (or pip install torchgeo requests)"


def test_torchgeo_is_never_imported_by_a_spec_that_does_not_use_it(write_spec, monkeypatch):
    monkeypatch.setitem(sys.modules, "torchgeo", None)  # importing it would raise
    assert compile_spec(write_spec(spec("[B02, B03, B04, B08]", f"weights_bands: {RGB}"))).source


# --- transforms() ----------------------------------------------------------------------------------


def test_transforms_equal_the_weights_own_on_a_test_image(tmp_path):
    _, module = compile_and_load(spec(RGB, f"weights_bands: {RGB}"), tmp_path)
    torch.manual_seed(0)
    image = torch.rand(3, 300, 280)
    preset = torchvision.models.ResNet18_Weights.DEFAULT.transforms()
    assert torch.allclose(module.NetModule.transforms()(image), preset(image), rtol=0, atol=1e-6)
    pixels = (image * 255).to(torch.uint8)  # resized as uint8: v2 and v1 may round one level apart
    level = 1 / 255 / min(preset.std)
    assert torch.allclose(module.NetModule.transforms()(pixels), preset(pixels), rtol=0, atol=level * 1.01)


def test_transforms_leave_normalisation_to_a_model_that_normalises(tmp_path):
    _, module = compile_and_load(spec(RGB, f"weights_bands: {RGB}", normalize="weights"), tmp_path)
    image = torch.rand(3, 240, 260)
    preset = torchvision.models.ResNet18_Weights.DEFAULT.transforms()
    model = module.Net(pretrained=False)
    ours = (module.NetModule.transforms()(image) - model.image_mean[0]) / model.image_std[0]
    assert torch.allclose(ours, preset(image), rtol=0, atol=1e-5)


# --- sizes -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("op", ["timm.vit_tiny_patch16_224", "torchvision.vit_b_16"])
def test_a_size_a_fixed_size_backbone_cannot_take_is_an_error_at_the_input(op, write_spec):
    text = spec(None, op=op).replace("160, 160", "96, 96")
    d, at = error_of(text, write_spec)
    assert (
        d.message == f"{op} takes only 224x224 images (its position embeddings are of that size), not 96x96"
    )
    assert at.startswith("image:") and "[C, 224, 224]" in d.hint


def test_a_size_far_from_the_training_size_is_a_warning(write_spec):
    result = compile_spec(write_spec(spec(None).replace("160, 160", "64, 64")))
    [warning] = [w for w in result.warnings if w.severity == "warning"]
    assert warning.message == (
        "input 'image' is 64x64, far from the 224x224 the weights of node 'net' were trained at "
        "(torchvision ResNet18_Weights.IMAGENET1K_V1.transforms())"
    )
    assert [w.severity for w in compile_spec(write_spec(spec(None))).warnings] == ["note"]


def test_normalize_weights_reads_a_hugging_face_image_processor_config(tmp_path):
    import json

    import transformers

    config = transformers.ViTConfig(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=48,
        image_size=32,
        patch_size=8,
    )
    transformers.ViTModel(config).save_pretrained(tmp_path / "vit")
    processor = {"do_normalize": True, "image_mean": [0.5, 0.4, 0.3], "image_std": [0.2, 0.25, 0.3]}
    processor |= {"size": {"height": 32, "width": 32}, "resample": 2}
    (tmp_path / "vit" / "preprocessor_config.json").write_text(json.dumps(processor))
    text = (
        "nncompile: 1\nname: Net\ninputs:\n  image: {shape: [3, 32, 32], normalize: weights}\n"
        f"nodes:\n  vit: {{op: transformers.AutoModel, model: {tmp_path / 'vit'}, weights: DEFAULT, output: cls}}\n"
        "  fc: {op: Linear, out_features: 5}\ntask: {kind: classification}\n"
    )
    result, module = compile_and_load(text, tmp_path)
    model = module.Net(pretrained=False)
    assert torch.equal(model.image_mean.flatten(), torch.tensor(processor["image_mean"]))
    assert torch.equal(model.image_std.flatten(), torch.tensor(processor["image_std"]))
    assert "preprocessor_config.json, the weights of node 'vit'" in result.source
