"""Output files: written through a temporary file and a rename, a file nncompile did not write is
never replaced without --force, and a failed compile or write leaves the previous output as it was."""

import os
from pathlib import Path

import pytest
from nncompile import emit

GOOD = """\
nncompile: 1
name: Net
inputs:
  x: [16]
nodes:
  fc: {op: Linear, out_features: 10}
task:
  kind: classification
"""
BROKEN = GOOD.replace("out_features: 10", "out_features: 10, bogus: 1")


def folder_listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture
def compiled(run_cli, write_spec, tmp_path):
    """A spec and its compiled output in tmp_path/out/."""
    spec = write_spec(GOOD)
    out = tmp_path / "out" / "model.py"
    out.parent.mkdir()
    code, _, err = run_cli(spec, "-o", out)
    assert code == 0, err
    return spec, out


def test_written_through_a_rename_in_the_same_folder(compiled, run_cli, monkeypatch):
    spec, out = compiled
    renames = []
    real_replace = os.replace

    def spy(src, dst):
        renames.append((Path(src), Path(dst), Path(src).read_text()))
        real_replace(src, dst)

    monkeypatch.setattr(emit.os, "replace", spy)
    assert run_cli(spec, "-o", out)[0] == 0
    [(src, dst, text)] = renames
    assert dst == out and src.parent == out.parent and src != out
    assert text == out.read_text()  # the complete text was in the temporary file before the rename
    assert folder_listing(out.parent) == ["model.py"]  # no temporary file left


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_failed_write_leaves_previous_output_and_no_temporary(compiled, run_cli, monkeypatch, error):
    spec, out = compiled
    before = out.read_bytes()

    def fail(src, dst):
        raise error

    monkeypatch.setattr(emit.os, "replace", fail)
    if isinstance(error, OSError):
        code, _, err = run_cli(spec, "-o", out)
        assert code == 3 and "cannot write" in err and "Traceback" not in err
    else:
        with pytest.raises(KeyboardInterrupt):
            run_cli(spec, "-o", out)
    assert out.read_bytes() == before
    assert folder_listing(out.parent) == ["model.py"]


def test_failed_compile_leaves_previous_output(compiled, run_cli):
    spec, out = compiled
    before, mtime = out.read_bytes(), out.stat().st_mtime_ns
    spec.write_text(BROKEN)
    code, _, err = run_cli(spec, "-o", out)
    assert code == 2 and "unknown argument 'bogus'" in err
    assert out.read_bytes() == before and out.stat().st_mtime_ns == mtime
    assert folder_listing(out.parent) == ["model.py"]


def test_previous_nncompile_output_is_replaced(compiled, run_cli):
    spec, out = compiled
    spec.write_text(GOOD.replace("out_features: 10", "out_features: 7"))
    assert run_cli(spec, "-o", out)[0] == 0
    assert "out_features=7" in out.read_text()


@pytest.mark.parametrize("content", ["# my own code\nprint('hi')\n", "", '"""A docstring."""\n'])
def test_user_file_is_not_overwritten_without_force(run_cli, write_spec, tmp_path, content):
    spec = write_spec(GOOD)
    out = tmp_path / "model.py"
    out.write_text(content)
    code, _, err = run_cli(spec, "-o", out)
    assert code == 3 and "not written by nncompile" in err and "--force" in err
    assert out.read_text() == content
    assert run_cli(spec, "-o", out, "--force")[0] == 0
    assert emit.is_nncompile_output(out)


def test_spec_given_as_its_own_output_is_kept(run_cli, write_spec):
    spec = write_spec(GOOD)
    code, _, err = run_cli(spec, "-o", spec)
    assert code == 3 and "not written by nncompile" in err
    assert spec.read_text() == GOOD


def test_symlink_to_user_file_is_not_followed(run_cli, write_spec, tmp_path):
    spec = write_spec(GOOD)
    target = tmp_path / "mine.py"
    target.write_text("# mine\n")
    link = tmp_path / "model.py"
    link.symlink_to(target)
    assert run_cli(spec, "-o", link)[0] == 3
    assert target.read_text() == "# mine\n"
    assert run_cli(spec, "-o", link, "--force")[0] == 0
    assert target.read_text() == "# mine\n"  # the link is replaced, not written through
    assert not link.is_symlink() and emit.is_nncompile_output(link)


def test_file_mode_is_kept(compiled, run_cli):
    spec, out = compiled
    out.chmod(0o600)
    assert run_cli(spec, "-o", out)[0] == 0
    assert out.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    ("where", "message"),
    [("missing/model.py", "does not exist"), ("missing/", "does not exist")],
)
def test_unusable_output_paths(run_cli, write_spec, tmp_path, where, message):
    spec = write_spec(GOOD)
    (tmp_path / "out").mkdir()
    code, _, err = run_cli(spec, "-o", f"{tmp_path}/{where}")
    assert code == 3 and message in err and "Traceback" not in err


def test_folder_without_write_permission(run_cli, write_spec, tmp_path, monkeypatch):
    """Simulated, since the tests may run as root, who can write anywhere."""

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(emit.tempfile, "mkstemp", refuse)
    code, _, err = run_cli(write_spec(GOOD), "-o", tmp_path / "model.py")
    assert code == 3 and "cannot write in" in err and "Permission denied" in err and "Traceback" not in err
    assert not (tmp_path / "model.py").exists()


def test_stdout_writes_no_file(run_cli, write_spec, tmp_path):
    spec = write_spec(GOOD)
    code, out, _ = run_cli(spec, "-o", "-")
    assert code == 0 and out.startswith('"""Net: generated by nncompile')
    assert folder_listing(tmp_path) == ["spec.yaml"]
