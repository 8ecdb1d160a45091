import copy
import functools
import gc
import os
import subprocess
import sys
from pathlib import Path

import pytest
from ddp_jobs import Launch, launch_all
from nncompile import compile_spec

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.yaml"))
# Generated files must never try to download weights in tests.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# pytest-xdist's workers share the cores: torch in each (and in the processes it starts) uses its
# share, set before torch is imported. Workers each running a thread per core wait on each other.
if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    share = (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, share)))


def spec_params(group: str) -> list:
    """SPECS as test parameters whose tests of one file share an xdist worker (`--dist loadgroup`):
    what one of them builds for a spec and caches in its process, the others reuse."""
    return [pytest.param(s, id=s.stem, marks=pytest.mark.xdist_group(f"{group}-{s.stem}")) for s in SPECS]


def generated_path(spec: Path) -> Path:
    return ROOT / "generated" / f"{spec.stem}.py"


def compiled_spec(spec: Path):
    """A spec in specs/ compiled as `make generate` compiles it (from the root, into generated/),
    once per test process: several test files compile every spec, at up to seconds each. Each
    caller gets its own copy, so `Compiled.write` on it leaves the cache alone."""
    spec = spec.relative_to(ROOT) if spec.is_relative_to(ROOT) else spec  # a test's own spec: as is
    return copy.copy(_compile_once(spec, (ROOT / spec).read_text()))


@functools.cache
def _compile_once(spec: Path, text: str):
    """Keyed by the spec's text as well: an edited spec is compiled again."""
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        return compile_spec(spec, generated_path(spec).relative_to(ROOT))
    finally:
        os.chdir(cwd)


@pytest.fixture(scope="session")
def cli_compiled_every_spec(tmp_path_factory):
    """`nncompile specs/*.yaml -o FOLDER/`, as `make generate` runs it, in a process whose hash seed
    (`.hash_seed`) is not this one's: (the finished process, FOLDER). Compiling every spec takes
    a while, so the tests of the recipe and of hash-seed independence share one run."""
    folder = tmp_path_factory.mktemp("cli_generated")
    seed = "12345" if os.environ.get("PYTHONHASHSEED") == "0" else "0"
    run = subprocess.run(
        [sys.executable, "-m", "nncompile", *(str(s.relative_to(ROOT)) for s in SPECS), "-o", f"{folder}/"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONHASHSEED": seed},
    )
    run.hash_seed = seed
    return run, folder


@pytest.fixture
def run_cli(capsys, monkeypatch):
    """Run the CLI in-process from the repository root: returns (exit code, stdout, stderr)."""
    from nncompile.cli import main

    def run(*args: str):
        monkeypatch.chdir(ROOT)
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def write_spec(tmp_path):
    """Write a spec text into a temporary file and return its path."""

    def write(text: str, name: str = "spec.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    """An empty TORCH_HOME: torchvision loads weights put in its hub/checkpoints without network."""
    home = tmp_path / "torch_home"
    (home / "hub" / "checkpoints").mkdir(parents=True)
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home


sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def ddp_launch(tmp_path_factory) -> Launch:
    """Every job added with `ddp_job` (tests/ddp_jobs.py), trained in one DDP launch."""
    return launch_all(tmp_path_factory.mktemp("ddp"))


def pytest_collection_finish(session) -> None:
    """What collection imported (torch, torchvision, the compiler) lives until the end: moved out
    of the garbage collector's reach, its full collections stop walking their ~400,000 objects."""
    gc.freeze()
