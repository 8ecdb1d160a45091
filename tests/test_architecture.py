"""The compiler's architecture holds: the import-linter contracts in pyproject.toml (stages as
layers, runtime/ and tools/ apart, no circles) pass, and a circle added on purpose fails them."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")


def _lint(package_parent: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(package_parent)}
    return subprocess.run(
        [str(LINT), "--no-cache", str(ROOT / "pyproject.toml")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_import_contracts_hold():
    result = _lint(ROOT / "compiler")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_a_circle_breaks_the_contracts(tmp_path):
    shutil.copytree(ROOT / "compiler" / "nncompile", tmp_path / "nncompile")
    yaml_source = tmp_path / "nncompile" / "spec" / "yamlsrc.py"  # the load stage importing the plan stage
    yaml_source.write_text(yaml_source.read_text() + "\nfrom ..plan import planner  # noqa: E402\n")
    result = _lint(tmp_path)
    assert result.returncode != 0
    assert "nncompile.spec is not allowed to import nncompile.plan" in result.stdout
    assert "No circles between the modules of any package BROKEN" in result.stdout
