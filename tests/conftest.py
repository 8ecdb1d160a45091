import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.yaml"))
# Generated files must never try to download weights in tests.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def generated_path(spec: Path) -> Path:
    return ROOT / "generated" / f"{spec.stem}.py"


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
