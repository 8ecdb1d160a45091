"""The Python API mirrors the command line: the same results, from the same code paths."""

import json

import nncompile
import pytest
from conftest import ROOT

TABULAR = "specs/tabular_mlp.yaml"


@pytest.fixture(autouse=True)
def at_root(monkeypatch):
    monkeypatch.chdir(ROOT)


def test_compile_spec_gives_source_shapes_and_summary(tmp_path):
    compiled = nncompile.compile_spec(TABULAR, "generated/tabular_mlp.py")
    assert compiled.source == (ROOT / "generated" / "tabular_mlp.py").read_text()
    assert compiled.shapes["features"] == (32,)
    assert compiled.shapes["fc1"] == (64,) and compiled.shapes["head"] == (1,)
    table = compiled.summary()
    assert table.total_params == 32 * 64 + 64 + 2 * 64 + 64 * 64 + 64 + 64 + 1
    assert [r.node for r in table.rows] == ["fc1", "act1", "norm1", "drop1", "fc2", "act2", "head"]
    out = tmp_path / "model.py"
    compiled.write(out)
    assert out.read_text() == compiled.source


def test_readme_example_shapes():
    assert nncompile.compile_spec("specs/seed1_resnet_head.yaml").shapes["resnet"] == (512,)


def test_functions_match_the_commands(run_cli):
    _, table, _ = run_cli("summary", TABULAR)
    assert nncompile.summarize(TABULAR).text() == table
    _, mermaid, _ = run_cli("graph", TABULAR)
    assert nncompile.render_graph(TABULAR) == mermaid
    _, dot, _ = run_cli("graph", TABULAR, "--format", "dot")
    assert nncompile.render_graph(TABULAR, "dot") == dot
    _, schema, _ = run_cli("schema")
    assert nncompile.json_schema() == json.loads(schema)


def test_check_returns_warnings_and_raises_located_errors(write_spec):
    dead = write_spec(
        "nncompile: 1\nname: Net\ninputs: {x: [4]}\nnodes:\n  fc: {op: Linear, out_features: 2}\n"
        "  unused: {op: ReLU, in: x}\noutputs: {y: fc}\ntask: {kind: classification}\n"
    )
    warnings = nncompile.check(dead)
    assert [w.node for w in warnings] == ["unused"] and warnings[0].severity == "warning"
    bad = write_spec(
        "nncompile: 1\nname: Net\ninputs: {x: [4]}\nnodes: {fc: {op: Linear}}\ntask: {kind: regression}\n"
    )
    with pytest.raises(nncompile.NncompileError) as info:
        nncompile.check(bad)
    (diagnostic,) = info.value.diagnostics
    assert (diagnostic.node, diagnostic.loc.line) == ("fc", 4)
    assert info.value.render().startswith(f"{bad}:4:9: error: node 'fc': nn.Linear needs `out_features`")


def test_staleness_functions():
    results = nncompile.check_generated("specs", "generated")
    assert results and not any(r.stale for r in results)
    assert not nncompile.check_output(TABULAR, "generated/tabular_mlp.py").stale
    stale = nncompile.check_output(TABULAR, "generated/two_tower_concat.py")
    assert stale.stale and stale.diff.startswith("--- generated/two_tower_concat.py (on disk)")


def test_write_names_its_own_path_in_the_header(tmp_path, run_cli):
    """compile_spec(path).write(OUT) regenerates with `-o OUT`, so `--check` on OUT agrees."""
    out = tmp_path / "model_api.py"
    compiled = nncompile.compile_spec(TABULAR)
    assert f"Regenerate: nncompile {TABULAR} -o model.py\n" in compiled.source  # nothing written yet
    compiled.write(out)
    text = out.read_text()
    assert f"Regenerate: nncompile {TABULAR} -o {out.as_posix()}\n" in text and "-o model.py" not in text
    assert text == compiled.source
    assert not nncompile.check_output(TABULAR, out).stale
    code, stdout, _ = run_cli(TABULAR, "-o", out, "--check")
    assert code == 0 and stdout == f"{out}: up to date\n"
