"""Generated files are formatted and lint-clean under ruff's defaults (the settings of the
repositories users copy them into), with the pyflakes, import-order and bugbear rules on top."""

import shutil
import subprocess
import sys

import pytest
from conftest import ROOT

RUFF = [sys.executable, "-m", "ruff"]
RULES = ["--select", "E,F,W,I,B,UP", "--ignore", "E501"]  # shape comments may run past 88 columns


@pytest.fixture(scope="module")
def ruff():
    if shutil.which("ruff") is None and subprocess.run(RUFF + ["--version"], capture_output=True).returncode:
        pytest.skip("ruff is not installed")
    return RUFF


def test_generated_files_are_ruff_formatted(ruff):
    run = subprocess.run(
        ruff + ["format", "--isolated", "--check", "--diff", "generated"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_generated_files_pass_ruff_check(ruff):
    run = subprocess.run(
        ruff + ["check", "--isolated", "--target-version", "py310", *RULES, "generated"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_compiler_code_passes_ruff(ruff):
    run = subprocess.run(ruff + ["check", "compiler", "tests"], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
