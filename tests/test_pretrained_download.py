"""Offline, a generated model with pretrained weights fails with one error that names the weights,
says where the file goes and points at `pretrained=False`; following it makes the model build.

Each network condition builds all its generated models in one fresh interpreter (see
offline_helpers.py): the fixture `offline` compiles them and runs it once, and each test reads
the output of its own model's build."""

import importlib.util
import subprocess
from dataclasses import dataclass
from pathlib import Path

import nncompile
import pytest
import torch
import torchvision
from backbone_helpers import backbone_spec, cache_weights
from load_generated import load_source
from offline_helpers import BUILT_WITHOUT, build_offline, hub_snapshot, use_hub_cache

# HF_HUB_OFFLINE=1 (huggingface_hub does not try the network), or no flag and no network
HF_OFFLINE, NO_NETWORK = "hf-offline", "no-network"


def on_the_worker_of(condition: str):
    """The tests of one condition share the worker where its fresh interpreter runs, once."""
    return pytest.mark.xdist_group(f"offline_builds_{condition}")


HUB_OFFLINE = pytest.mark.parametrize(
    "condition", [pytest.param(c, marks=on_the_worker_of(c)) for c in (HF_OFFLINE, NO_NETWORK)]
)

RESNET = backbone_spec("torchvision.resnet18", 64, body="weights: DEFAULT")
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
TIMM = backbone_spec("timm.convnext_atto", 64, body="weights: DEFAULT")
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
TORCHVISION_MODELS = {
    "resnet": RESNET,
    "detection_part": DETECTION_PART,
    "segmentation_parts_built_once": SEGMENTATION_PARTS,
    "whole_segmentation": WHOLE_SEGMENTATION,
    "whole_detection": WHOLE_DETECTION,
}


def models(condition: str) -> dict[str, str]:
    """The models a condition builds, by name: the timm and transformers ones, where their
    library is installed, in both; torchvision's, which does not read the flag, where it is set
    (as the tests set it: conftest.py)."""
    hub = {
        name: text
        for name, text, library in (("timm", TIMM, "timm"), ("bert", HF_SPEC, "transformers"))
        if importlib.util.find_spec(library)
    }
    return {**TORCHVISION_MODELS, **hub} if condition == HF_OFFLINE else hub


@dataclass
class Offline:
    """One condition's generated models (`models/NAME.py`) and caches under `root`, and each
    model's build (`runs[NAME]`, a finished process of its own)."""

    root: Path
    runs: dict[str, subprocess.CompletedProcess]

    @property
    def torch_home(self) -> Path:
        return self.root / "torch_home"

    @property
    def hub(self) -> Path:
        return self.root / "hf_home" / "hub"

    @property
    def models(self) -> Path:
        return self.root / "models"

    def model(self, name: str) -> Path:
        return self.models / f"{name}.py"


@pytest.fixture(scope="module")
def offline(tmp_path_factory):
    """condition -> its Offline, built on first use."""
    done = {}

    def get(condition: str) -> Offline:
        if condition not in done:
            done[condition] = build_condition(tmp_path_factory.mktemp(condition), condition)
        return done[condition]

    return get


def build_condition(root: Path, condition: str) -> Offline:
    """The condition's models compiled, then built in one fresh interpreter, with an empty
    TORCH_HOME and a Hugging Face cache that has tiny-bert's config and not its weights
    (nncompile reads the config at compile time: in-process, pointed at that cache)."""
    offline = Offline(root, {})
    (offline.torch_home / "hub" / "checkpoints").mkdir(parents=True)
    texts = models(condition)
    folder = offline.models
    folder.mkdir()
    with pytest.MonkeyPatch.context() as monkeypatch:
        if "bert" in texts:
            save_tiny_bert_config(offline.hub)
            use_hub_cache(monkeypatch, offline.hub)
        for name, text in texts.items():
            (folder / f"{name}.yaml").write_text(text)
            nncompile.compile_spec(folder / f"{name}.yaml").write(offline.model(name))
    env = {
        "TORCH_HOME": str(offline.torch_home),
        "HF_HOME": str(offline.hub.parent),
        "HF_HUB_CACHE": str(offline.hub),  # over one the environment may set
        "HF_HUB_OFFLINE": "1" if condition == HF_OFFLINE else "0",
    }
    offline.runs.update(build_offline(folder, list(texts), env))
    return offline


def save_tiny_bert_config(hub: Path) -> None:
    import transformers  # optional: only where installed (models)

    config = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 48}
    transformers.BertConfig(vocab_size=50, **config).save_pretrained(hub_snapshot(hub, "tiny-org/tiny-bert"))


def offline_message(run) -> tuple[str, str]:
    """The generated error's two lines, once checked to be the one error the build ends with."""
    assert run.returncode == 1, run.stderr[-3000:]
    assert run.stderr.count("Traceback") == 1 and "During handling" not in run.stderr
    assert "The above exception" not in run.stderr
    first, second = run.stderr.strip().splitlines()[-2:]
    return first, second


@on_the_worker_of(HF_OFFLINE)
def test_torchvision_download_failure_says_where_the_file_goes(offline, tmp_path, monkeypatch):
    builds = offline(HF_OFFLINE)
    run = builds.runs["resnet"]
    assert BUILT_WITHOUT in run.stdout
    assert run.returncode == 1
    weights = torchvision.models.ResNet18_Weights.DEFAULT
    file = builds.torch_home / "hub" / "checkpoints" / weights.url.rpartition("/")[2]
    error = run.stderr.strip().splitlines()
    assert error[-2].startswith(f"RuntimeError: cannot download {weights}: ")
    assert error[-1] == (
        f"To train offline, download {weights.url} into {file.parent}/, or pass pretrained=False"
    )
    assert run.stderr.count("Traceback") == 1 and "During handling" not in run.stderr
    cache_weights(builds.torch_home, weights, torchvision.models.resnet18())  # the file where the error said
    assert file.is_file()

    def no_network(url, *args, **kwargs):
        raise AssertionError(f"downloads {url}")

    monkeypatch.setenv("TORCH_HOME", str(builds.torch_home))  # torch.hub reads it at each call
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    load_source(builds.model("resnet").read_text(), tmp_path).Net()  # builds from the file, in-process


@on_the_worker_of(HF_OFFLINE)
@pytest.mark.parametrize(
    ("name", "weights"),
    [
        ("detection_part", "detection.FasterRCNN_MobileNet_V3_Large_320_FPN_Weights"),
        ("segmentation_parts_built_once", "segmentation.DeepLabV3_MobileNet_V3_Large_Weights"),
        ("whole_segmentation", "segmentation.LRASPP_MobileNet_V3_Large_Weights"),
        ("whole_detection", "detection.SSDLite320_MobileNet_V3_Large_Weights"),
    ],
    ids=["detection-part", "segmentation-parts-built-once", "whole-segmentation", "whole-detection"],
)
def test_segmentation_and_detection_download_failures_say_where_the_file_goes(offline, name, weights):
    builds = offline(HF_OFFLINE)
    source = builds.model(name).read_text()
    guards = [line for line in source.splitlines() if line.strip().startswith("with _download_hint(")]
    assert len(guards) == 1  # parts of one build: one download
    family, enum = weights.split(".")
    member = getattr(getattr(torchvision.models, family), enum).DEFAULT
    file = builds.torch_home / "hub" / "checkpoints" / member.url.rpartition("/")[2]
    run = builds.runs[name]
    first, second = offline_message(run)
    assert first.startswith(f"RuntimeError: cannot download {member}: ")
    assert second == (
        f"To train offline, download {member.url} into {file.parent}/, or pass pretrained=False"
    )
    assert BUILT_WITHOUT in run.stdout


@HUB_OFFLINE
def test_timm_download_failure_names_the_repository(offline, condition):
    pytest.importorskip("timm")
    builds = offline(condition)
    run = builds.runs["timm"]
    first, second = offline_message(run)
    assert first.startswith(
        "RuntimeError: cannot download the pretrained weights timm/convnext_atto.d2_in1k: "
    )
    assert "`hf download timm/convnext_atto.d2_in1k`" in second
    assert f"copy the Hugging Face cache to {builds.hub}" in second
    assert "set `weights:` in the spec to a local file" in second and "pretrained=False" in second
    assert BUILT_WITHOUT in run.stdout


@HUB_OFFLINE
def test_transformers_download_failure_names_the_model(offline, condition):
    """The config is in the Hugging Face cache (nncompile reads it at compile time), the weights
    are not: building with them is the generated error, building without them works."""
    pytest.importorskip("transformers")
    builds = offline(condition)
    run = builds.runs["bert"]
    first, second = offline_message(run)
    assert first.startswith("RuntimeError: cannot download the pretrained weights tiny-org/tiny-bert: ")
    assert second == (
        "To train offline, fetch them with `hf download tiny-org/tiny-bert` where there is a network and "
        f"copy the Hugging Face cache to {builds.hub}, or set `weights:` in the spec to a local "
        "folder (save_pretrained); or pass pretrained=False (random weights)"
    )
    assert BUILT_WITHOUT in run.stdout


def compile_into(tmp_path, text: str):
    spec = tmp_path / "spec.yaml"
    spec.write_text(text)
    nncompile.compile_spec(spec).write(tmp_path / "model.py")
    return tmp_path / "model.py"


def test_a_model_without_downloads_carries_no_helper(tmp_path):
    text = compile_into(tmp_path, backbone_spec("torchvision.resnet18", 64, body="weights: null")).read_text()
    assert "_download_hint" not in text
    weights = tmp_path / "w.pth"
    torch.save(torchvision.models.resnet18().state_dict(), weights)
    text = compile_into(
        tmp_path, backbone_spec("torchvision.resnet18", 64, body=f"weights: {weights}")
    ).read_text()
    assert "_download_hint" not in text  # a local file is not downloaded
