"""The exact error output for common mistakes: each tests/snapshots/errors/<case>.yaml is checked
with `nncompile check`, and its exit status and stderr must equal <case>.txt.

Refresh after an intended change to the messages:
    NNCOMPILE_UPDATE_SNAPSHOTS=1 python -m pytest tests/test_errors_snapshot.py
and review the diff of tests/snapshots/ before committing it.
"""

import os

import pytest
from conftest import ROOT

CASES = sorted((ROOT / "tests" / "snapshots" / "errors").glob("*.yaml"))
UPDATE = os.environ.get("NNCOMPILE_UPDATE_SNAPSHOTS") == "1"


def test_enough_distinct_mistakes():
    assert len(CASES) >= 10


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.stem)
def test_error_output(case, run_cli):
    code, out, err = run_cli("check", case.relative_to(ROOT).as_posix())
    got = f"exit status {code}\n{err}"
    expected_path = case.with_suffix(".txt")
    if UPDATE:
        expected_path.write_text(got)
    assert expected_path.exists(), f"no snapshot {expected_path.name}: run with NNCOMPILE_UPDATE_SNAPSHOTS=1"
    assert got == expected_path.read_text()
    assert code == 2 and out == ""
    assert "Traceback" not in err


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.stem)
def test_every_error_is_located_with_a_caret_and_a_hint(case):
    lines = case.with_suffix(".txt").read_text().splitlines()
    headers = [i for i, line in enumerate(lines) if ": error: " in line]
    assert headers, "no error line"
    for i in headers:
        assert lines[i].startswith(case.relative_to(ROOT).as_posix() + ":")
        assert lines[i + 2].strip() == "^", "no caret under the spec line"
        block = lines[i + 3 : next((h for h in headers if h > i), len(lines))]
        assert any(line.startswith("hint: ") for line in block), f"no hint for {lines[i]}"
