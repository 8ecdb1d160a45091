"""`nncompile check SPEC...` and the command-line conventions every command shares: the compile
form next to the subcommands, exit statuses, no traceback for spec errors, cheap startup."""

import subprocess
import sys

import pytest
from conftest import ROOT, SPECS

TABULAR = "specs/tabular_mlp.yaml"


def test_check_accepts_every_example_spec_and_writes_nothing(run_cli, tmp_path):
    before = sorted(p.name for p in ROOT.iterdir())
    code, out, err = run_cli("check", *(s.relative_to(ROOT) for s in SPECS))
    assert code == 0, err
    assert out.count(": ok: ") == len(SPECS)
    assert "specs/tabular_mlp.yaml: ok: 7 nodes, outputs value (B, 1)" in out
    assert sorted(p.name for p in ROOT.iterdir()) == before


def test_check_reports_every_failing_spec_and_exits_2(run_cli, write_spec):
    bad = write_spec(
        "nncompile: 1\nname: Net\ninputs: {x: [4]}\nnodes: {fc: {op: Lineer}}\ntask: {kind: regression}\n"
    )
    code, out, err = run_cli("check", TABULAR, bad)
    assert code == 2
    assert f"{TABULAR}: ok" in out
    assert f"{bad}:4:18: error: node 'fc': unknown op 'Lineer'" in err
    assert "Traceback" not in err


def test_independent_errors_stop_at_the_limit(run_cli, write_spec):
    nodes = "".join(f"  n{i}: {{op: Nope{i}}}\n" for i in range(30))
    bad = write_spec(
        f"nncompile: 1\nname: Net\ninputs: {{x: [4]}}\nnodes:\n{nodes}task: {{kind: regression}}\n"
    )
    code, _, err = run_cli("check", bad)
    assert code == 2
    assert err.count(": error: ") == 20
    assert err.rstrip().endswith("stopped after 20 errors; fix these and run again for the rest")


def test_compile_form_coexists_with_commands(run_cli, tmp_path):
    out = tmp_path / "model.py"
    code, _, err = run_cli(TABULAR, "-o", out)
    assert code == 0, err
    assert "class TabularMLP(nn.Module)" in out.read_text()
    code, stdout, _ = run_cli(TABULAR, "-o", "-")
    assert code == 0 and stdout == out.read_text().replace(str(out), "model.py")


def test_an_unknown_command_is_read_as_a_spec_path(run_cli, tmp_path):
    code, _, err = run_cli("chek", "-o", tmp_path / "x.py")
    assert code == 2
    assert "chek:1:1: error: cannot read spec" in err


def _imports_torch(*args: str) -> tuple[int, bool, str]:
    """Run the CLI in a fresh interpreter: (exit status, whether torch got imported, stdout)."""
    code = (
        "import sys\nfrom nncompile.cli import main\n"
        "try:\n    status = main(sys.argv[1:])\nexcept SystemExit as e:\n    status = e.code\n"
        "print('TORCH', 'torch' in sys.modules, file=sys.stderr)\nsys.exit(status)\n"
    )
    run = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT)
    return run.returncode, "TORCH True" in run.stderr, run.stdout


def test_help_and_schema_do_not_import_torch():
    code, torch_imported, out = _imports_torch("--help")
    assert code == 0 and not torch_imported
    assert "nncompile check SPEC..." in out and "check-generated" in out
    code, torch_imported, out = _imports_torch("schema")
    assert code == 0 and not torch_imported
    assert '"$schema": "https://json-schema.org/draft/2020-12/schema"' in out
    code, torch_imported, out = _imports_torch("resolve", "specs/seed1_resnet50_swap.yaml")
    assert code == 0 and not torch_imported
    assert "op: torchvision.resnet50  # specs/seed1_resnet50_swap.yaml:" in out


def test_every_command_has_help(run_cli, capsys):
    for command in ("check", "summary", "graph", "resolve", "sweep", "schema", "check-generated"):
        with pytest.raises(SystemExit) as exit_info:
            run_cli(command, "--help")
        assert exit_info.value.code == 0
        assert f"usage: nncompile {command}" in capsys.readouterr().out


def test_no_arguments_prints_the_help_with_every_command(run_cli):
    code, out, err = run_cli()
    assert code == 2 and out == ""
    assert err.startswith("usage: nncompile") and "nncompile summary SPEC" in err


def test_check_counts_one_node_in_the_singular(run_cli, write_spec):
    spec = write_spec(
        "nncompile: 1\nname: Net\ninputs: {x: [4]}\nnodes: {fc: {op: Linear, out_features: 2}}\ntask: {kind: regression}\n"
    )
    code, out, _ = run_cli("check", spec)
    assert code == 0 and out == f"{spec}: ok: 1 node, outputs fc (B, 2)\n"
