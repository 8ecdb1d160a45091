"""`nncompile SPEC... -o FOLDER/`: several specs compiled in one process, a line per compile
(progress, output, parameters, time), and the exit status of an output that cannot be written."""

import re
import subprocess
import sys

import pytest
from conftest import ROOT, SPECS
from nncompile.cli import EXIT_OUTPUT, EXIT_SPEC
from nncompile.emit import output_files

GOOD = "nncompile: 1\nname: Net\ninputs: {x: [4]}\nnodes:\n  fc: {op: Linear, out_features: 2}\ntask: {kind: regression}\n"
FROZEN = GOOD.replace(
    "out_features: 2}", "out_features: 2, freeze: true}\n  head: {op: Linear, out_features: 3}"
)
BAD = GOOD.replace("out_features: 2", "out_featurs: 2")


def test_several_specs_compile_into_a_folder_with_progress(run_cli, write_spec, tmp_path):
    a, b = write_spec(GOOD, "a.yaml"), write_spec(FROZEN, "b.yaml")
    out = tmp_path / "gen"
    out.mkdir()
    code, stdout, err = run_cli(a, b, "-o", f"{out}/")
    assert code == 0, err
    assert stdout == ""
    lines = err.splitlines()
    assert re.fullmatch(rf"\[1/2\] {a} -> {out}/a\.py: 10 parameters, 10 trainable \(\d+\.\d\d s\)", lines[0])
    # fc (4*2+2) frozen, head (2*3+3) trainable
    assert re.fullmatch(rf"\[2/2\] {b} -> {out}/b\.py: 19 parameters, 9 trainable \(\d+\.\d\d s\)", lines[1])
    assert re.fullmatch(r"compiled 2 specs in \d+\.\d s", lines[2])
    for name in ("a", "b"):
        text = (out / f"{name}.py").read_text()
        assert f"Regenerate: nncompile {tmp_path}/{name}.yaml -o {out}/{name}.py" in text
        assert output_files.is_nncompile_output(out / f"{name}.py")
    # the folder form agrees with --check, spec by spec
    code, stdout, _ = run_cli(a, b, "-o", out, "--check")
    assert code == 0 and stdout.count(": up to date") == 2


def test_one_failing_spec_does_not_stop_the_others(run_cli, write_spec, tmp_path):
    bad, good = write_spec(BAD, "bad.yaml"), write_spec(GOOD, "good.yaml")
    code, _, err = run_cli(bad, good, "-o", f"{tmp_path}/")
    assert code == EXIT_SPEC
    assert f"{bad}:5:20: error: node 'fc': unknown argument 'out_featurs' for nn.Linear" in err
    assert f"[1/2] {bad}: failed; {tmp_path}/bad.py is left as it was" in err
    assert f"[2/2] {good} -> {tmp_path}/good.py: 10 parameters" in err
    assert "compiled 1 of 2 specs in " in err
    assert not (tmp_path / "bad.py").exists() and (tmp_path / "good.py").is_file()


def test_one_spec_prints_one_success_line(run_cli, write_spec, tmp_path):
    spec = write_spec(FROZEN)
    code, stdout, err = run_cli(spec, "-o", tmp_path / "model.py")
    assert code == 0 and stdout == ""
    assert re.fullmatch(rf"{spec} -> {tmp_path}/model\.py: 19 parameters, 9 trainable \(\d+\.\d\d s\)\n", err)
    # into an existing folder, one spec is named after itself
    code, _, err = run_cli(spec, "-o", tmp_path)
    assert code == 0 and (tmp_path / "spec.py").is_file() and "-> " in err


def test_several_specs_need_a_folder_with_distinct_names(run_cli, write_spec, tmp_path, capsys):
    import pytest

    a = write_spec(GOOD, "a.yaml")
    (tmp_path / "sub").mkdir()
    other = tmp_path / "sub" / "a.yaml"
    other.write_text(GOOD)
    for args in ((a, a, "-o", tmp_path / "x.py"), (a, other, "-o", tmp_path), (a, a, "-o", "-")):
        with pytest.raises(SystemExit) as exit_info:
            run_cli(*args)
        assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "several specs need -o FOLDER/" in err and "the same name" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.yaml", "sub"]


def test_refusing_to_overwrite_has_its_own_exit_status(run_cli, write_spec, tmp_path):
    """Exit 3, not 2 (a spec problem), when the output is a file nncompile did not write."""
    spec = write_spec(GOOD)
    mine = tmp_path / "model.py"
    mine.write_text("my own code\n")
    code, _, err = run_cli(spec, "-o", mine)
    assert code == EXIT_OUTPUT == 3
    assert "was not written by nncompile" in err and "--force" in err
    assert "Traceback" not in err and mine.read_text() == "my own code\n"
    assert run_cli(spec, "-o", mine, "--force")[0] == 0


def test_exit_statuses_are_documented():
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert "3 an output that cannot be written (a file nncompile did not write" in readme
    assert (
        "| 3 | an output that cannot be written: a file nncompile did not write"
        in (ROOT / "docs" / "cli.md").read_text()
    )
    help_text = subprocess.run(
        [sys.executable, "-m", "nncompile", "--help"], capture_output=True, text=True, cwd=ROOT
    ).stdout
    assert "3 an output that cannot be written" in " ".join(help_text.split())


@pytest.mark.xdist_group("cli_compiled_every_spec")  # one worker compiles every spec once
def test_make_generate_compiles_every_spec_in_one_process(cli_compiled_every_spec):
    """The Makefile's recipe, run into a temporary folder: one process writes every golden file."""
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("\ngenerate:", 1)[1].split("\n\n", 1)[0].strip().splitlines()[1:]
    assert [line.strip() for line in recipe] == ["$(BIN)/nncompile $(SPECS) -o generated/"]
    run, folder = cli_compiled_every_spec
    specs = [str(s.relative_to(ROOT)) for s in SPECS]
    assert run.returncode == 0, run.stderr
    assert f"[{len(specs)}/{len(specs)}] " in run.stderr and f"compiled {len(specs)} specs in " in run.stderr
    for spec in SPECS:
        name = f"{spec.stem}.py"
        written = (folder / name).read_text().replace(f"-o {folder}/{name}", f"-o generated/{name}")
        assert written == (ROOT / "generated" / name).read_text(), name
