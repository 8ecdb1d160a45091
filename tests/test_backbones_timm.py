"""timm backbones: `timm.<name>` with its head removed (timm's num_classes=0) across 150+ models
of every timm model module, heads replaced, stems adapted (in_chans), feature maps (features_only),
weight files, and a clear error when timm is missing. Each checked against a real forward pass."""

import os
import subprocess
import sys

import pytest
import torch
from backbone_helpers import backbone_spec, real_forward
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
    "efficientnet_b0", "efficientvim_m1_dist", "efficientvim_m2_dist", "efficientvit_b0", "efficientvit_b1",
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


def timm_spec(name: str, size: int, body: str = "head: remove", channels: int = 3, after: str | None = None):
    return backbone_spec(f"timm.{name}", size, body, after, channels)


def compile_any_size(name, tmp_path, **kw):
    """Compiled at 64x64 where the model allows, else at the size it was trained on."""
    trained = timm.models.get_pretrained_cfg_value(name, "input_size") or (3, 224, 224)
    for size in dict.fromkeys((64, trained[-1])):
        try:
            return size, compile_and_load(timm_spec(name, size, **kw), tmp_path)
        except NncompileError as err:
            refused = "fails on its input" in str(err) or "images (its position embeddings" in str(err)
            if not refused or size == trained[-1]:
                raise
    raise AssertionError("unreachable")


@pytest.mark.parametrize("name", ACROSS_FAMILIES)
def test_head_remove_width_matches_real_forward(name, tmp_path):
    """Each model built with zero weights (a shape check needs no initialisation) and run on one
    small image: the widths nncompile predicts for a batch of 2 are those of the real output."""
    size, (result, module) = compile_any_size(name, tmp_path)
    predicted = result.shaped.nodes["net"].built.out.shape
    features, out = real_forward(module, size, initialised=False, batch=1)
    assert predicted[0] == 2 and tuple(features.shape) == (1, *predicted[1:]), name
    assert tuple(out.shape) == (1, 7)


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


LOAD_AND_COMPARE = """
import torch
from safetensors.torch import load_file

import model

loaded = model.Net().net.state_dict()
cached = load_file("cached.safetensors")
print(sorted(loaded) == sorted(k for k in cached if not k.startswith("fc.")))
print(all(torch.equal(loaded[k], cached[k]) for k in loaded))
"""


def test_default_weights_load_from_the_hub_cache_without_network(tmp_path):
    """timm fetches DEFAULT weights with huggingface_hub, which offline reads its cache: a state
    dict put there in hf_hub_download's layout is what the generated model loads, in a fresh
    interpreter (huggingface_hub reads its cache location once, on import)."""
    from safetensors.torch import save_file

    torch.manual_seed(0)
    state = timm.create_model("resnet18").state_dict()
    save_file(state, tmp_path / "cached.safetensors")
    repo_id = timm.models.get_pretrained_cfg_value("resnet18", "hf_hub_id")  # timm/resnet18.a1_in1k
    repo = tmp_path / "hub" / f"models--{repo_id.replace('/', '--')}"
    revision = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    (repo / "snapshots" / revision).mkdir(parents=True)
    save_file(state, repo / "snapshots" / revision / "model.safetensors")
    result = compile_text(timm_spec("resnet18", 64, "weights: DEFAULT\n    head: remove"), tmp_path)
    assert '"resnet18", pretrained=pretrained, num_classes=0' in result.source
    (tmp_path / "model.py").write_text(result.source)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub")}
    run = subprocess.run(
        [sys.executable, "-c", LOAD_AND_COMPARE],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.stdout.split() == ["True", "True"], run.stderr[-2000:]


def test_weights_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    state = timm.create_model("resnet18").state_dict()
    torch.save(state, tmp_path / "r18.pth")
    result, module = compile_and_load(
        timm_spec("resnet18", 64, "weights: r18.pth\n    head: remove"), tmp_path
    )
    assert '"file": _weights_file(net_weights, "net_weights", pretrained)' in result.source
    assert 'net_weights: str = os.path.join(HERE, "r18.pth")' in result.source
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
