"""Offline, a generated model with pretrained weights fails with one error that names the weights,
says where the file goes and points at `pretrained=False`; following it makes the model build."""

import os
import subprocess
import sys

import nncompile
import pytest
import torch
import torchvision
from backbone_helpers import backbone_spec, cache_weights
from load_generated import load_source

# huggingface_hub retries a refused request five times, sleeping 1 to 8 s between: up to three
# minutes a build without the network; the sleeps go, the requests and their failures stay.
OFFLINE_PROCESS = (
    "import sys, time; time.sleep = lambda s: None; sys.path.insert(0, sys.argv[1]); import model; "
)
BUILT_WITHOUT = "built with pretrained=False"


def build_offline(folder, env: dict, without_first: bool = True) -> subprocess.CompletedProcess:
    """Build the generated model in a fresh interpreter that cannot reach the network (every
    request goes to a proxy on a closed port): with pretrained=False first (`without_first`,
    printing BUILT_WITHOUT once it works), then with the weights, the build a failure ends on."""
    offline = {**os.environ, "https_proxy": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9", **env}
    for name in ("no_proxy", "NO_PROXY"):
        offline.pop(name, None)
    code = OFFLINE_PROCESS + (
        f"model.Net(pretrained=False); print({BUILT_WITHOUT!r}); " if without_first else ""
    )
    return subprocess.run(
        [sys.executable, "-c", code + "model.Net()", str(folder)],
        capture_output=True,
        text=True,
        env=offline,
        timeout=300,
    )


def compile_into(tmp_path, text: str):
    spec = tmp_path / "spec.yaml"
    spec.write_text(text)
    nncompile.compile_spec(spec).write(tmp_path / "model.py")
    return tmp_path / "model.py"


def test_torchvision_download_failure_says_where_the_file_goes(torch_home, tmp_path, monkeypatch):
    compile_into(tmp_path, backbone_spec("torchvision.resnet18", 64, body="weights: DEFAULT"))
    run = build_offline(tmp_path, {"TORCH_HOME": str(torch_home)})
    assert BUILT_WITHOUT in run.stdout
    assert run.returncode == 1
    weights = torchvision.models.ResNet18_Weights.DEFAULT
    file = torch_home / "hub" / "checkpoints" / weights.url.rpartition("/")[2]
    error = run.stderr.strip().splitlines()
    assert error[-2].startswith(f"RuntimeError: cannot download {weights}: ")
    assert error[-1] == (
        f"To train offline, download {weights.url} into {file.parent}/, or pass pretrained=False"
    )
    assert run.stderr.count("Traceback") == 1 and "During handling" not in run.stderr
    cache_weights(torch_home, weights, torchvision.models.resnet18())  # the file where the error said
    assert file.is_file()

    def no_network(url, *args, **kwargs):
        raise AssertionError(f"downloads {url}")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    load_source((tmp_path / "model.py").read_text(), tmp_path).Net()  # builds from the file, in-process


def offline_message(run: subprocess.CompletedProcess) -> tuple[str, str]:
    """The generated error's two lines, once checked to be the one error the build ends with."""
    assert run.returncode == 1, run.stderr[-3000:]
    assert run.stderr.count("Traceback") == 1 and "During handling" not in run.stderr
    assert "The above exception" not in run.stderr
    first, second = run.stderr.strip().splitlines()[-2:]
    return first, second


DETECTION_PART = """\
nncompile: 1
name: Net
inputs: {image: [3, 64, 64]}
nodes:
  fpn: {op: torchvision.detection.fasterrcnn_mobilenet_v3_large_320_fpn, weights: DEFAULT, output: backbone}
  pool: {op: AdaptiveAvgPool2d, output_size: 1, in: fpn.pool}
  flat: {op: Flatten}
  fc: {op: Linear, out_features: 7}
task: {kind: classification}
"""
SEGMENTATION = "torchvision.segmentation.deeplabv3_mobilenet_v3_large"
SEGMENTATION_PARTS = f"""\
nncompile: 1
name: Net
inputs: {{image: [3, 64, 64]}}
nodes:
  backbone: {{op: {SEGMENTATION}, weights: DEFAULT, output: backbone}}
  head: {{op: {SEGMENTATION}, weights: DEFAULT, output: classifier, in: backbone.out}}
  aux: {{op: {SEGMENTATION}, weights: DEFAULT, output: aux_classifier, in: backbone.aux}}
outputs: {{out: head, aux: aux}}
task: {{kind: multiclass, output: out}}
"""
WHOLE_SEGMENTATION = """\
nncompile: 1
name: Net
inputs: {image: [3, 64, 64]}
nodes:
  net: {op: torchvision.segmentation.lraspp_mobilenet_v3_large, weights: DEFAULT, head: replace, num_classes: 3}
outputs: {out: net.out}
task: {kind: segmentation}
"""
WHOLE_DETECTION = """\
nncompile: 1
name: Net
inputs: {images: {shape: [3, 64, 64], list: true}}
nodes:
  net: {op: torchvision.detection.ssdlite320_mobilenet_v3_large, weights: DEFAULT, head: replace, num_classes: 2}
task: {kind: detection}
"""


@pytest.mark.parametrize(
    ("text", "weights"),
    [
        (DETECTION_PART, "detection.FasterRCNN_MobileNet_V3_Large_320_FPN_Weights"),
        (SEGMENTATION_PARTS, "segmentation.DeepLabV3_MobileNet_V3_Large_Weights"),
        (WHOLE_SEGMENTATION, "segmentation.LRASPP_MobileNet_V3_Large_Weights"),
        (WHOLE_DETECTION, "detection.SSDLite320_MobileNet_V3_Large_Weights"),
    ],
    ids=["detection-part", "segmentation-parts-built-once", "whole-segmentation", "whole-detection"],
)
def test_segmentation_and_detection_download_failures_say_where_the_file_goes(
    torch_home, tmp_path, text, weights
):
    source = compile_into(tmp_path, text).read_text()
    guards = [line for line in source.splitlines() if line.strip().startswith("with _download_hint(")]
    assert len(guards) == 1  # parts of one build: one download
    family, enum = weights.split(".")
    member = getattr(getattr(torchvision.models, family), enum).DEFAULT
    file = torch_home / "hub" / "checkpoints" / member.url.rpartition("/")[2]
    run = build_offline(tmp_path, {"TORCH_HOME": str(torch_home)})
    first, second = offline_message(run)
    assert first.startswith(f"RuntimeError: cannot download {member}: ")
    assert second == (
        f"To train offline, download {member.url} into {file.parent}/, or pass pretrained=False"
    )
    assert BUILT_WITHOUT in run.stdout


# HF_HUB_OFFLINE=1 (huggingface_hub does not try the network), or no flag and no network
HUB_OFFLINE = pytest.mark.parametrize("flag", [{"HF_HUB_OFFLINE": "1"}, {}], ids=["hf-offline", "no-network"])


@HUB_OFFLINE
def test_timm_download_failure_names_the_repository(tmp_path, flag):
    pytest.importorskip("timm")
    compile_into(tmp_path, backbone_spec("timm.convnext_atto", 64, body="weights: DEFAULT"))
    home = tmp_path / "hf_home"
    env = {"HF_HOME": str(home), "HF_HUB_OFFLINE": "0", **flag, "TORCH_HOME": str(tmp_path)}
    run = build_offline(tmp_path, env)
    first, second = offline_message(run)
    assert first.startswith(
        "RuntimeError: cannot download the pretrained weights timm/convnext_atto.d2_in1k: "
    )
    assert "`hf download timm/convnext_atto.d2_in1k`" in second
    assert f"copy the Hugging Face cache to {home / 'hub'}" in second
    assert "set `weights:` in the spec to a local file" in second and "pretrained=False" in second
    assert BUILT_WITHOUT in run.stdout


HF_SPEC = """\
nncompile: 1
name: Net
dims: {seq: 8}
inputs:
  input_ids: {shape: [seq], dtype: int64}
nodes:
  bert: {op: transformers.AutoModel, model: tiny-org/tiny-bert, weights: DEFAULT, output: pooler_output}
  fc: {op: Linear, out_features: 3}
task: {kind: classification}
"""


@pytest.fixture(scope="module")
def bert_folder(tmp_path_factory):
    """A Hugging Face cache (`hub/`) with tiny-bert's config and not its weights, and HF_SPEC
    compiled against it into `model.py` by the CLI in a fresh process (huggingface_hub reads its
    cache's place when imported): once, for both network conditions."""
    transformers = pytest.importorskip("transformers")
    folder = tmp_path_factory.mktemp("bert")
    snapshot = folder / "hub" / "models--tiny-org--tiny-bert" / "snapshots" / ("0" * 40)
    config = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 48}
    transformers.BertConfig(vocab_size=50, **config).save_pretrained(snapshot)
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("0" * 40)
    (folder / "spec.yaml").write_text(HF_SPEC)
    compiled = subprocess.run(
        [sys.executable, "-m", "nncompile", "spec.yaml", "-o", "model.py"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_CACHE": str(folder / "hub"), "HF_HUB_OFFLINE": "1"},
    )
    assert compiled.returncode == 0, compiled.stderr
    return folder


@HUB_OFFLINE
def test_transformers_download_failure_names_the_model(bert_folder, flag):
    """The config is in the Hugging Face cache (nncompile reads it at compile time), the weights
    are not: building with them is the generated error, building without them works."""
    env = {"HF_HUB_CACHE": str(bert_folder / "hub"), "HF_HUB_OFFLINE": "0", **flag}
    run = build_offline(bert_folder, env)
    first, second = offline_message(run)
    assert first.startswith("RuntimeError: cannot download the pretrained weights tiny-org/tiny-bert: ")
    assert second == (
        "To train offline, fetch them with `hf download tiny-org/tiny-bert` where there is a network and "
        f"copy the Hugging Face cache to {bert_folder / 'hub'}, or set `weights:` in the spec to a local "
        "folder (save_pretrained); or pass pretrained=False (random weights)"
    )
    assert BUILT_WITHOUT in run.stdout


def test_a_model_without_downloads_carries_no_helper(tmp_path):
    text = compile_into(tmp_path, backbone_spec("torchvision.resnet18", 64, body="weights: null")).read_text()
    assert "_download_hint" not in text
    weights = tmp_path / "w.pth"
    torch.save(torchvision.models.resnet18().state_dict(), weights)
    text = compile_into(
        tmp_path, backbone_spec("torchvision.resnet18", 64, body=f"weights: {weights}")
    ).read_text()
    assert "_download_hint" not in text  # a local file is not downloaded
