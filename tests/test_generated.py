"""Every spec in specs/: compiles to exactly its golden file in generated/, and that file runs on
its own (nncompile not importable): real shapes equal the predictions, it trains 2 steps, and a
checkpoint round trip gives identical outputs."""

import difflib
import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT, SPECS, generated_path
from nncompile import compile_spec

REFRESH = "make generate"


def compiled(spec):
    return compile_spec(spec.relative_to(ROOT), generated_path(spec).relative_to(ROOT))


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_golden(spec, monkeypatch):
    monkeypatch.chdir(ROOT)
    expected_path = generated_path(spec)
    assert expected_path.exists(), f"{expected_path} is missing: run `{REFRESH}`"
    source = compiled(spec).source
    expected = expected_path.read_text()
    if source != expected:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(True), source.splitlines(True), str(expected_path), "compiled now"
            )
        )
        pytest.fail(f"{expected_path.name} is out of date with {spec.name}; refresh with `{REFRESH}`\n{diff}")


def test_output_is_identical_under_different_hash_seeds(tmp_path):
    script = (
        "import hashlib, sys\n"
        "from pathlib import Path\n"
        "from nncompile import compile_spec\n"
        "for p in sorted(Path('specs').glob('*.yaml')):\n"
        "    print(p.name, hashlib.sha256(compile_spec(p).source.encode()).hexdigest())\n"
    )
    outputs = []
    for seed in ("0", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        run = subprocess.run(
            [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, check=True
        )
        outputs.append(run.stdout)
    assert outputs[0] == outputs[1]
    assert outputs[0].count("\n") == len(SPECS)


def expectations(result) -> dict:
    spec = result.spec
    nodes = {}
    for node_id, node in result.shaped.nodes.items():
        built = node.built
        nodes[node_id] = (
            list(built.out.shape) if built.out else {p: list(v.info.shape) for p, v in built.ports.items()}
        )
    outputs = {name: list(info.shape) for name, info in result.shaped.outputs.items()}
    return {
        "name": spec.name,
        "pretrained": result.ir.model.pretrained,
        "inputs": {i.name: [list(i.shape), i.dtype] for i in spec.inputs},
        "nodes": nodes,
        "outputs": outputs,
        "task": spec.task.kind,
        "heads": {h.output or next(iter(outputs)): h.kind for h in spec.task.heads},
    }


def run_generated(path, expected: dict, tmp_path) -> dict:
    exp_file = tmp_path / "expected.json"
    exp_file.write_text(json.dumps(expected))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "specs")}  # user layers live next to the specs
    run = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "run_generated.py"), str(path), str(exp_file)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    line = next(line for line in run.stdout.splitlines() if line.startswith("REPORT "))
    return json.loads(line.removeprefix("REPORT "))


def same_shape(seen, predicted, field: str | None = None) -> bool:
    if seen == predicted:
        return True
    # a Hugging Face model returns a ModelOutput; the node's value is the field its call reads
    if field is not None and isinstance(seen, dict) and field in seen:
        return seen[field] == predicted
    # a feature extractor returns a dict; the node's value is its one requested entry
    return isinstance(seen, dict) and len(seen) == 1 and next(iter(seen.values())) == predicted


def output_field(call) -> str | None:
    """`pooler_output` for a call `self.bert(...).pooler_output`: the field of the module's output it reads."""
    suffix = getattr(call, "suffix", "")
    return suffix[1:] if suffix.startswith(".") and suffix[1:].isidentifier() else None


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_generated_file_runs_standalone(spec, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    result = compiled(spec)
    expected = expectations(result)
    report = run_generated(generated_path(spec), expected, tmp_path)
    assert report["nncompile_imported"] is False
    for node_id, shape in report["node_shapes"].items():
        field = output_field(result.shaped.nodes[node_id].built.call)
        assert same_shape(shape, expected["nodes"][node_id], field), (
            node_id,
            shape,
            expected["nodes"][node_id],
        )
    assert report["node_shapes"], "no node module was observed"
    if len(expected["outputs"]) == 1:
        assert report["output_shapes"] == next(iter(expected["outputs"].values()))
    else:
        assert report["output_shapes"] == expected["outputs"]
    assert report["finite_loss"], report["metrics"]
    assert report["restored_equal"]
