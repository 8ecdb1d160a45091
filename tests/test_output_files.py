"""Output files: written through a temporary file and a rename, a file nncompile did not write is
never replaced without --force, and a failed compile or write leaves the previous output as it was."""

import os
from pathlib import Path

import pytest
from nncompile.emit import output_files

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

    monkeypatch.setattr(output_files.os, "replace", spy)
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

    monkeypatch.setattr(output_files.os, "replace", fail)
    if isinstance(error, OSError):
        code, _, err = run_cli(spec, "-o", out)
        assert code == 3 and "cannot write" in err and "Traceback" not in err
    else:  # Ctrl-C: one line, exit 130 (as a shell reports SIGINT)
        code, _, err = run_cli(spec, "-o", out)
        assert code == 130 and err == "nncompile: interrupted\n"
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
    assert output_files.is_nncompile_output(out)


@pytest.mark.parametrize("flags", [(), ("--force",)])
def test_spec_given_as_its_own_output_is_kept(run_cli, write_spec, flags):
    spec = write_spec(GOOD)
    code, _, err = run_cli(spec, "-o", spec, *flags)
    assert code == 3 and f"{spec} is the spec {spec}; not writing over it (even with --force)" in err
    assert spec.read_text() == GOOD


def test_no_spec_is_written_over_by_any_path_to_it(run_cli, write_spec, tmp_path, monkeypatch):
    """Resolved paths are compared: another spelling, a symbolic link, and the folder form, where a
    spec named like an output (`x.py`, YAML all the same) would be DIR/x.py."""
    spec = write_spec(GOOD)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "link.py").symlink_to(spec)
    other = write_spec(GOOD, "x.py")
    for args in (
        [spec, "-o", f"{tmp_path}/./spec.yaml"],
        [spec, "-o", tmp_path / "link.py"],
        [spec, other, "-o", f"{tmp_path}/"],
    ):
        code, _, err = run_cli(*args, "--force")
        assert code == 3 and "not writing over it" in err, args
    assert spec.read_text() == GOOD and other.read_text() == GOOD
    with pytest.raises(output_files.OutputError, match="is the spec"):
        from nncompile import compile_spec

        compile_spec(spec).write(spec, force=True)
    assert spec.read_text() == GOOD


@pytest.mark.parametrize("flags", [(), ("--force",)])
def test_named_pipe_is_refused_at_once(run_cli, write_spec, tmp_path, flags):
    """Opening a FIFO (to read its header or write the output) would block until a reader came."""
    fifo = tmp_path / "model.py"
    os.mkfifo(fifo)
    code, _, err = run_cli(write_spec(GOOD), "-o", fifo, *flags)
    assert code == 3 and f"{fifo} is a named pipe (FIFO); nncompile writes only regular files" in err
    assert fifo.is_fifo()


@pytest.mark.parametrize("command", [["schema"], ["graph", "SPEC"], ["SPEC"]])
def test_missing_folder_with_a_slash_is_not_written_as_a_file(command, run_cli, write_spec, tmp_path):
    """`-o newdir/` names a folder: no file called `newdir` appears, for any command."""
    spec = write_spec(GOOD)
    argv = [spec if a == "SPEC" else a for a in command]
    code, _, err = run_cli(*argv, "-o", f"{tmp_path}/newdir/")
    assert code == 3 and "Traceback" not in err
    assert "newdir" in err and ("does not exist" in err)
    assert folder_listing(tmp_path) == ["spec.yaml"]


def test_python_api_refuses_a_folder_path(write_spec, tmp_path):
    from nncompile import compile_spec

    result = compile_spec(write_spec(GOOD))
    with pytest.raises(output_files.OutputError, match="ends in /"):
        result.write(f"{tmp_path}/newdir/")
    assert folder_listing(tmp_path) == ["spec.yaml"]


@pytest.mark.parametrize("command", [["graph", "SPEC"], ["graph", "SPEC", "--format", "dot"]])
def test_graph_output_never_replaces_the_spec(command, run_cli, write_spec):
    spec = write_spec(GOOD)
    code, _, err = run_cli(*[spec if a == "SPEC" else a for a in command], "-o", spec)
    assert code == 3 and "not writing over it" in err
    assert spec.read_text() == GOOD


def test_interrupt_while_compiling_prints_one_line(run_cli, write_spec, tmp_path, monkeypatch):
    """Ctrl-C during a compile: exit 130, one line, no traceback, nothing written."""
    from nncompile import shapes

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(shapes, "propagate", interrupted)
    code, out, err = run_cli(write_spec(GOOD), "-o", tmp_path / "model.py")
    assert (code, out, err) == (130, "", "nncompile: interrupted\n")
    assert folder_listing(tmp_path) == ["spec.yaml"]


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
    assert not link.is_symlink() and output_files.is_nncompile_output(link)


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

    monkeypatch.setattr(output_files.tempfile, "mkstemp", refuse)
    code, _, err = run_cli(write_spec(GOOD), "-o", tmp_path / "model.py")
    assert code == 3 and "cannot write in" in err and "Permission denied" in err and "Traceback" not in err
    assert not (tmp_path / "model.py").exists()


def test_stdout_writes_no_file(run_cli, write_spec, tmp_path):
    spec = write_spec(GOOD)
    code, out, _ = run_cli(spec, "-o", "-")
    assert code == 0 and out.startswith('"""Net: generated by nncompile')
    assert folder_listing(tmp_path) == ["spec.yaml"]


def test_ctrl_c_in_a_real_process(write_spec, tmp_path):
    """SIGINT while the compiler imports torch (seconds): exit 130, one line, no traceback."""
    import signal
    import subprocess
    import sys
    import time

    from conftest import ROOT

    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "compiler"), os.environ.get("PYTHONPATH", "")]),
    }
    out = tmp_path / "model.py"
    proc = subprocess.Popen(
        [sys.executable, "-m", "nncompile", str(write_spec(GOOD)), "-o", str(out)],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    # Signalled once torch's shared library is mapped: the process is then inside main(), in
    # torch's import, a second or more before the compile can finish.
    maps = Path(f"/proc/{proc.pid}/maps")
    if not maps.exists():
        proc.kill()
        pytest.skip("needs Linux's /proc to see when the process imports torch")
    deadline = time.monotonic() + 60
    while "libtorch" not in maps.read_text() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert (proc.returncode, err) == (130, "nncompile: interrupted\n")
    assert not out.exists()
