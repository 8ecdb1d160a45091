"""Every spec in specs/: compiles to exactly its golden file in generated/, and that file runs on
its own (nncompile not importable): real shapes equal the predictions, it trains 2 steps, and a
checkpoint round trip gives identical outputs."""

import difflib
import os

import pytest
from conftest import ROOT, SPECS, compiled_spec, generated_path
from run_generated import Runner

REFRESH = "make generate"


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_golden(spec, monkeypatch):
    monkeypatch.chdir(ROOT)
    expected_path = generated_path(spec)
    assert expected_path.exists(), f"{expected_path} is missing: run `{REFRESH}`"
    source = compiled_spec(spec).source
    expected = expected_path.read_text()
    if source != expected:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(True), source.splitlines(True), str(expected_path), "compiled now"
            )
        )
        pytest.fail(f"{expected_path.name} is out of date with {spec.name}; refresh with `{REFRESH}`\n{diff}")


@pytest.mark.xdist_group("cli_compiled_every_spec")  # one worker compiles every spec once
def test_output_is_identical_under_different_hash_seeds(cli_compiled_every_spec, monkeypatch):
    """The CLI's process, under a hash seed other than this one's, writes what this one compiles."""
    monkeypatch.chdir(ROOT)
    run, folder = cli_compiled_every_spec
    assert run.returncode == 0, run.stderr
    assert run.hash_seed != os.environ.get("PYTHONHASHSEED")
    for spec in SPECS:
        name = f"{spec.stem}.py"
        written = (folder / name).read_text().replace(f"-o {folder}/{name}", f"-o generated/{name}")
        assert written == compiled_spec(spec).source, name


def expectations(result) -> dict:
    spec = result.spec
    nodes = {}
    for node_id, node in result.shaped.nodes.items():
        built = node.built
        nodes[node_id] = (
            list(built.out.shape) if built.out else {p: list(v.info.shape) for p, v in built.ports.items()}
        )
        if built.per_item:  # the module itself sees the items folded into the batch
            nodes[node_id] = [nodes[node_id][0] * nodes[node_id][1], *nodes[node_id][2:]]
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


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    """One process (nncompile not importable) runs every generated file this test process asks for."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "specs")}  # user layers live next to the specs
    runner = Runner(env, tmp_path_factory.mktemp("runner") / "stderr.txt")
    yield runner
    runner.close()


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
def test_generated_file_runs_standalone(spec, runner, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    result = compiled_spec(spec)
    expected = expectations(result)
    report = runner.run(generated_path(spec), expected, tmp_path)
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
    assert report["compared_values"] > 0, "the round trip compared empty outputs"
