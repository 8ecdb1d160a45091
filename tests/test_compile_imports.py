"""Compile latency (issue 30): a compile imports only what the spec at hand needs, and the shortcuts
that spare the imports answer exactly what the slow way does.

- torchmetrics is imported only for a metric outside `metrics.KNOWN` (its package init imports
  transformers); every KNOWN entry is checked against torchmetrics itself here.
- Small layers run on the CPU (`ops.base.runs_on_cpu`), so a model of small layers never imports
  torch's meta kernels (torch._dynamo, sympy); every spec and fuzzed specs give the same shapes and
  the same errors on the meta device.
"""

import copy
import json
import subprocess
import sys

import pytest
import torch
import yaml
from conftest import ROOT
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nncompile import compile_spec
from nncompile.errors import NncompileError
from nncompile.ops import base
from nncompile.spec.model import CallSpec, MetricSpec
from nncompile.training import metrics
from test_fuzz import BASES, mutate

HEAVY = ("torchmetrics", "transformers", "timm", "pytorch_lightning", "lightning", "torchgeo", "peft")
META_KERNELS = ("torch._dynamo", "sympy")

PROBE = """
import json, sys
from nncompile import compile_spec
loaded = {}
for spec in sys.argv[1:]:
    compile_spec(spec)
    loaded[spec] = sorted(
        m for m in sys.modules if "." not in m or m == "torch._dynamo" or m.startswith("nncompile.")
    )
print(json.dumps(loaded))
"""
# the op families' modules, each imported by `ops.resolve` when a spec names one, and the reviewer
# tools, imported by their commands
FAMILIES = {
    "torchvision": "nncompile.ops.backbones.torchvision_models",
    "torchvision parts": "nncompile.ops.backbones.torchvision_parts",
    "torchvision whole": "nncompile.ops.backbones.torchvision_whole",
    "timm": "nncompile.ops.backbones.timm_models",
    "transformers": "nncompile.ops.backbones.hf_models",
    "torchgeo": "nncompile.ops.backbones.torchgeo_models",
    "checkpoint": "nncompile.ops.backbones.checkpoint_backbone",
}
TOOLS = ("nncompile.tools.summary", "nncompile.tools.graph_render", "nncompile.tools.staleness")


def test_compiling_imports_only_what_the_spec_uses():
    """One process compiles a torch.nn spec, then a torchvision one (what the first loaded stays)."""
    specs = [str(ROOT / "specs" / "tabular_mlp.yaml"), str(ROOT / "specs" / "seed1_resnet_head.yaml")]
    run = subprocess.run([sys.executable, "-c", PROBE, *specs], capture_output=True, text=True, check=True)
    mlp, resnet = json.loads(run.stdout.splitlines()[-1]).values()
    assert not {*HEAVY, *META_KERNELS, "torchvision", *FAMILIES.values(), *TOOLS} & set(mlp)
    assert "torchvision" in resnet
    assert not set(HEAVY) & set(resnet)
    assert {*FAMILIES.values(), *TOOLS} & set(resnet) == {FAMILIES["torchvision"]}


HEADS = {  # kind -> dummy predictions and targets as heads.py tries a metric on them
    "multiclass": [(torch.rand(2, c).softmax(1), torch.tensor([0, 1])) for c in (1, 2, 5)]
    + [(torch.rand(2, 3, 4, 4).softmax(1), torch.zeros(2, 4, 4, dtype=torch.long))],
    "multilabel": [(torch.rand(2, c), torch.zeros(2, c, dtype=torch.long)) for c in (1, 2, 4)],
    "binary": [
        (torch.rand(2), torch.tensor([0, 1])),
        (torch.rand(2, 1), torch.zeros(2, 1, dtype=torch.long)),
    ],
    "regression": [(torch.rand(*s), torch.rand(*s)) for s in ((2,), (2, 1), (2, 3), (2, 3, 4))],
}


def resolved(metric, kind, preds, target):
    try:
        return metrics.resolve(metric, kind, preds, target)
    except NncompileError as err:
        return str(err)


@pytest.mark.parametrize(("kind", "name"), sorted(metrics.KNOWN))
def test_known_metrics_are_what_torchmetrics_gives(kind, name, monkeypatch):
    metric = MetricSpec(name, CallSpec(name, {}, None))
    for preds, target in HEADS[kind]:
        known = resolved(metric, kind, preds, target)
        with monkeypatch.context() as patched:
            patched.setattr(metrics, "KNOWN", {})
            assert known == resolved(metric, kind, preds, target), (kind, name, tuple(preds.shape))


def shapes(path, monkeypatch, cpu: bool, summary: bool = False):
    """The compiled shapes (and the summary table, with its MACs), or the error text, with small
    layers on the CPU or all on meta."""
    with monkeypatch.context() as patched:
        if not cpu:
            patched.setattr(base, "runs_on_cpu", lambda inputs, parameters=0: False)
        try:
            compiled = compile_spec(path)
        except NncompileError as err:
            return str(err)
        return (compiled.shapes, compiled.summary().text() if summary else None)


# specs that hold small layers (the rest are backbones, which stay on the meta device)
SMALL_LAYER_SPECS = [
    "tabular_mlp",
    "two_tower_concat",
    "squeeze_excitation_ops",
    "video_cnn_lstm",
    "unet_skip",
    "seed1_resnet_head",  # a meta backbone feeding small layers
]


@pytest.mark.parametrize("name", SMALL_LAYER_SPECS)
def test_cpu_probes_give_the_meta_shapes(name, monkeypatch):
    path = ROOT / "specs" / f"{name}.yaml"
    assert shapes(path, monkeypatch, True, summary=True) == shapes(path, monkeypatch, False, summary=True)


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_fuzzed_specs_give_the_same_shapes_and_errors_on_cpu_and_meta(data, monkeypatch, tmp_path_factory):
    doc = copy.deepcopy(data.draw(st.sampled_from(BASES)))
    for _ in range(data.draw(st.integers(1, 2))):
        mutate(doc, data)
    path = tmp_path_factory.mktemp("probe") / "spec.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    assert shapes(path, monkeypatch, cpu=True) == shapes(path, monkeypatch, cpu=False)


def test_runs_on_cpu_bounds_size_work_and_dtype():
    small = base.TensorInfo((2, 32), "float32")
    assert base.runs_on_cpu([small], parameters=2112)
    assert not base.runs_on_cpu([base.TensorInfo((2, 3, 224, 224), "float32")])  # too many elements
    assert not base.runs_on_cpu([small], parameters=base.CPU_ELEMENTS + 1)
    assert not base.runs_on_cpu([base.TensorInfo((2, 32), "float16")])  # CPU half kernels differ
    assert not base.runs_on_cpu([base.TensorInfo((2, 1 << 15), "float32")], parameters=1 << 12)  # work
