"""timm backbones: `timm.<name>` with its head removed (timm's num_classes=0) across 150+ models
of every timm model module, heads replaced, stems adapted (in_chans), feature maps (features_only),
weight files, and a clear error when timm is missing. Each checked against a real forward pass."""

import sys
import warnings

import pytest
import torch
from load_generated import compile_and_load, compile_text
from nncompile.errors import NncompileError

timm = pytest.importorskip("timm")

# The one or two smallest models (under 30M parameters) of each of timm's model modules,
# chosen once by building every module's likeliest small models on the meta device.
# fmt: off
ACROSS_FAMILIES = [
    "caformer_s18", "cait_xxs24_224", "cait_xxs24_384", "coat_lite_tiny", "coat_tiny",
    "convformer_s18", "convit_small", "convit_tiny", "convmixer_1024_20_ks9_p14", "convmixer_768_32",
    "convnext_atto", "convnext_atto_rms", "cpubone_nano", "cpubone_s0", "crossvit_9_240",
    "crossvit_tiny_240", "cs3darknet_m", "csatv2", "csatv2_21m", "cspnext_s", "cspnext_tiny",
    "davit_tiny", "deit_tiny_distilled_patch16_224", "deit_tiny_patch16_224", "densenet121",
    "densenet169", "dla34", "dla60_res2next", "dpn68", "eca_halonext26ts", "edgenext_x_small",
    "edgenext_xx_small", "efficientformer_l1", "efficientformerv2_s0", "efficientformerv2_s1",
    "efficientvim_m1_dist", "efficientvim_m2_dist", "efficientvit_b0", "efficientvit_b1",
    "efficientvit_m0", "efficientvit_m1", "ese_vovnet19b_dw", "ese_vovnet39b",
    "eva02_tiny_patch14_224", "fasternet_s", "fasternet_t0", "fastvit_t12", "fastvit_t8",
    "focalnet_tiny_lrf", "focalnet_tiny_srf", "gcvit_xtiny", "gcvit_xxtiny", "gernet_s",
    "ghostnet_050", "ghostnet_100", "hardcorenas_a", "hardcorenas_b", "hgnet_tiny", "hgnetv2_b0",
    "hiera_tiny_224", "hrnet_w18_small", "hrnet_w18_small_v2", "iformer_m_distilled", "iformer_s",
    "inception_next_atto", "inception_next_tiny", "inception_v3", "lcnetv2_base", "lcnetv2_small",
    "legacy_seresnet18", "legacy_seresnet34", "legacy_xception", "levit_128s", "levit_conv_128s",
    "lowformer_b0", "lowformer_b1", "mambaout_femto", "mambaout_tiny", "maxvit_pico_rw_256",
    "maxvit_rmlp_pico_rw_256", "mixer_s16_224", "mobilenetv3_small_050", "mobilenetv3_small_075",
    "mobilevit_xxs", "mobilevitv2_050", "mvitv2_tiny", "nest_tiny", "nest_tiny_jx", "nf_resnet26",
    "pit_xs_224", "pit_xs_distilled_224", "pvt_v2_b0", "pvt_v2_b1", "rdnet_tiny", "regnetv_040",
    "regnetx_002", "repghostnet_050", "repghostnet_058", "repvit_m0_9", "repvit_m1",
    "res2net50_14w_8s", "res2next50", "resmlp_12_224", "resnest14d", "resnest26d", "resnet18",
    "resnet26", "resnet32ts", "resnetv2_18", "resnetv2_34", "rexnet_100", "rexnetr_100",
    "sam2_hiera_tiny", "sedarknet21", "sehalonet33ts", "selecsls42", "selecsls60", "sequencer2d_s",
    "shvit_s1", "shvit_s2", "skresnet18", "skresnet34", "starnet_s1", "starnet_s2", "swiftformer_s",
    "swiftformer_xs", "swin_s3_tiny_224", "swin_tiny_patch4_window7_224", "swinv2_cr_tiny_224",
    "swinv2_cr_tiny_384", "swinv2_tiny_window16_256", "swinv2_tiny_window8_256", "test_nfnet",
    "test_vit_relpos", "tiny_vit_11m_224", "tiny_vit_5m_224", "tinynet_c", "tinynet_d",
    "tnt_s_legacy_patch16_224", "tnt_s_patch16_224", "tresnet_m", "twins_pcpvt_small",
    "twins_svt_small", "visformer_tiny", "vit_srelpos_small_patch16_224", "vit_tiny_patch16_224",
    "vit_tiny_patch16_384", "vit_tiny_patch16_dinov3_qkvb", "vit_tiny_r_s16_p8_224",
    "vit_tiny_r_s16_p8_384", "vitamin_small_224", "volo_d1_224", "volo_d1_384", "xception41",
    "xception41p", "xcit_nano_12_p8_224", "xcit_nano_12_p8_384",
]
# fmt: on
SAMPLE = [
    "convnext_atto",
    "deit_tiny_distilled_patch16_224",
    "efficientnet_b0",
    "mobilenetv3_small_050",
    "regnetx_002",
    "resnet18",
    "swin_tiny_patch4_window7_224",
    "vit_tiny_patch16_224",
]


def timm_spec(name: str, size: int, body: str = "head: remove", channels: int = 3, after: str | None = None):
    after = "  fc: {op: Linear, out_features: 7}\n" if after is None else after
    return (
        "nncompile: 1\nname: Net\n"
        f"inputs:\n  image: [{channels}, {size}, {size}]\n"
        f"nodes:\n  net:\n    op: timm.{name}\n    {body}\n{after}"
        "task: {kind: classification}\n"
    )


def compile_any_size(name, tmp_path, **kw):
    """Compiled at 64x64 where the model allows, else at the size it was trained on."""
    trained = timm.models.get_pretrained_cfg_value(name, "input_size") or (3, 224, 224)
    for size in dict.fromkeys((64, trained[-1])):
        try:
            return size, compile_and_load(timm_spec(name, size, **kw), tmp_path)
        except NncompileError as err:
            if "fails on its input" not in str(err) or size == trained[-1]:
                raise
    raise AssertionError("unreachable")


def fresh(module):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return module.Net(pretrained=False)
        except TypeError:
            return module.Net()


def real_forward(module, size: int, channels: int = 3):
    torch.manual_seed(0)
    model = fresh(module).eval()
    seen = {}
    model.net.register_forward_hook(lambda m, a, out: seen.setdefault("net", out))
    with torch.no_grad():
        out = model(torch.randn(2, channels, size, size))
    return seen["net"], out


def check_head_removed(name, tmp_path):
    size, (result, module) = compile_any_size(name, tmp_path)
    predicted = result.shaped.nodes["net"].built.out.shape
    features, out = real_forward(module, size)
    assert tuple(features.shape) == predicted
    assert tuple(out.shape) == (2, 7)


@pytest.mark.parametrize("name", SAMPLE)
def test_head_remove_width_matches_real_forward(name, tmp_path):
    check_head_removed(name, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(set(ACROSS_FAMILIES) - set(SAMPLE)))
def test_head_remove_across_families(name, tmp_path):
    check_head_removed(name, tmp_path)


def test_models_span_the_families():
    names = set(ACROSS_FAMILIES)
    assert len(names) >= 100
    assert names <= set(timm.list_models())
    families = [m for m in timm.list_modules() if names & set(timm.list_models(module=m))]
    assert len(families) >= 80


def test_head_replace_and_four_channel_stem(tmp_path):
    body = "head: replace\n    num_classes: 5\n    in_channels: 4"
    result, module = compile_and_load(timm_spec("resnet18", 64, body, channels=4, after=""), tmp_path)
    assert 'timm.create_model("resnet18", num_classes=5, in_chans=4)' in result.source
    assert result.shaped.nodes["net"].built.new_layers == ["fc"]
    _, out = real_forward(module, 64, channels=4)
    assert out.shape == (2, 5)


@pytest.mark.parametrize(
    ("name", "outputs"),
    [
        ("resnet18", ["layer2", "layer4"]),
        ("convnext_atto", [1, 3]),
        ("efficientnet_b0", ["blocks.4"]),
        ("mobilenetv3_small_050", [0, "blocks.5"]),
    ],
)
def test_feature_maps(name, outputs, tmp_path):
    body = "output: [" + ", ".join(map(str, outputs)) + "]"
    last = f"net.{outputs[-1]}" if len(outputs) > 1 else "net"
    after = f"  flat: {{op: Flatten, in: {last}}}\n  fc: {{op: Linear, out_features: 7}}\n"
    size, (result, module) = compile_any_size(name, tmp_path, body=body, after=after)
    built = result.shaped.nodes["net"].built
    predicted = [p.info.shape for p in built.ports.values()] or [built.out.shape]
    real, _ = real_forward(module, size)
    assert [tuple(t.shape) for t in real] == predicted


def test_unknown_feature_map_lists_them(tmp_path):
    with pytest.raises(NncompileError, match="has no feature map 'layer9'") as err:
        compile_text(timm_spec("resnet18", 64, "output: layer9", after=""), tmp_path)
    assert "layer1, layer2, layer3, layer4" in str(err.value)


def test_unknown_model_suggests(tmp_path):
    with pytest.raises(NncompileError, match="unknown timm model 'resnet181'") as err:
        compile_text(timm_spec("resnet181", 64), tmp_path)
    assert "resnet18" in str(err.value)


def test_weights_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    state = timm.create_model("resnet18").state_dict()
    torch.save(state, tmp_path / "r18.pth")
    result, module = compile_and_load(
        timm_spec("resnet18", 64, "weights: r18.pth\n    head: remove"), tmp_path
    )
    assert 'pretrained_cfg_overlay={"file": "r18.pth"}' in result.source
    loaded = module.Net().net.state_dict()
    assert all(torch.equal(loaded[k], state[k]) for k in loaded)
    state.pop("layer1.0.bn1.weight")
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(NncompileError, match=r"missing keys \[layer1.0.bn1.weight\]"):
        compile_text(timm_spec("resnet18", 64, "weights: bad.pth"), tmp_path)


def test_missing_timm_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm now raises ImportError
    with pytest.raises(NncompileError, match="needs the timm package") as err:
        compile_text(timm_spec("resnet18", 64), tmp_path)
    assert "pip install timm" in str(err.value)
