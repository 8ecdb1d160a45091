"""The `nncompile SPEC -o OUT` command: exit codes, stdout, overwrite protection, atomic output."""

import subprocess
import sys

from conftest import ROOT
from nncompile import __version__

GOOD = "nncompile: 1\nname: Net\ninputs: {x: [4]}\nnodes:\n  fc: {op: Linear, out_features: 2}\ntask: {kind: regression}\n"
BAD = GOOD.replace("out_features: 2", "out_features: 2, bogus: 1")


def test_compile_to_file_and_stdout(run_cli, write_spec, tmp_path):
    spec = write_spec(GOOD)
    out = tmp_path / "model.py"
    code, _, err = run_cli(spec, "-o", out)
    assert code == 0, err
    text = out.read_text()
    assert "class Net(nn.Module)" in text and "class NetModule(pl.LightningModule)" in text
    code, stdout, _ = run_cli(spec, "-o", "-")
    assert code == 0

    def without_regenerate_line(source):  # it names the output path, which differs
        return [line for line in source.splitlines() if not line.startswith("Regenerate:")]

    assert without_regenerate_line(stdout) == without_regenerate_line(text)


def test_spec_error_exits_2_without_output(run_cli, write_spec, tmp_path):
    out = tmp_path / "model.py"
    code, stdout, err = run_cli(write_spec(BAD), "-o", out)
    assert code == 2 and stdout == ""
    assert "spec.yaml:5:" in err and "node 'fc'" in err and "unknown argument 'bogus'" in err
    assert "Traceback" not in err
    assert not out.exists()


def test_never_overwrites_a_user_file_without_force(run_cli, write_spec, tmp_path):
    out = tmp_path / "model.py"
    out.write_text("my precious code\n")
    code, _, err = run_cli(write_spec(GOOD), "-o", out)
    assert code == 3 and "not written by nncompile" in err  # not 2: the spec is fine
    assert out.read_text() == "my precious code\n"
    code, _, _ = run_cli(write_spec(GOOD), "-o", out, "--force")
    assert code == 0 and "class Net" in out.read_text()
    code, _, _ = run_cli(write_spec(GOOD), "-o", out)  # now it is ours: recompiling replaces it
    assert code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.py", "spec.yaml"]  # no temp files left


def test_failed_compile_leaves_previous_output(run_cli, write_spec, tmp_path):
    out = tmp_path / "model.py"
    assert run_cli(write_spec(GOOD), "-o", out)[0] == 0
    before = out.read_text()
    assert run_cli(write_spec(BAD), "-o", out)[0] == 2
    assert out.read_text() == before


def test_subprocess_version_help_and_no_traceback(tmp_path):
    run = subprocess.run([sys.executable, "-m", "nncompile", "--version"], capture_output=True, text=True)
    assert run.returncode == 0 and __version__ in run.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD)
    run = subprocess.run(
        [sys.executable, "-m", "nncompile", str(bad), "-o", str(tmp_path / "o.py")],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert run.returncode == 2 and "Traceback" not in run.stderr and "bad.yaml:5:" in run.stderr
