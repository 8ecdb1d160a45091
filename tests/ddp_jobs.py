"""One DDP launch for every test that trains under strategy="ddp": a launch starts two interpreters
that import torch and Lightning (20 s and more on 2 cores), so the test files add their jobs here
with `ddp_job` when they are imported, and the session fixture `ddp_launch` (conftest.py) compiles
them all and trains them one after another in one run of tests/ddp_train.py. The tests that use it
carry `pytest.mark.xdist_group("ddp_launch")`: one pytest-xdist worker runs them, and launches once."""

import contextlib
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from nncompile import compile_spec

SCRIPT = Path(__file__).with_name("ddp_train.py")
RANKS = (0, 1)
TIMEOUT_S = 600
JOBS: dict[str, tuple[str, dict]] = {}  # name -> (spec text, how ddp_train.py trains it)


def ddp_job(name: str, spec: str, **run) -> str:
    """Add a job to the launch: `spec` compiled to NAME.py and trained by ddp_train.py with `run`
    (`run="train"` or `"unfreeze"`, `module` the LightningModule class, the run's arguments)."""
    if name in JOBS:
        raise ValueError(f"two DDP jobs named {name!r}")
    JOBS[name] = (spec, run)
    return name


@dataclass
class Launch:
    folder: Path
    jobs: list[str]
    returncode: int | None  # None: timed out
    stderr: str

    def source(self, job: str) -> str:
        """The generated file the job trained."""
        return (self.folder / f"{job}.py").read_text()

    def reports(self, job: str) -> list[dict]:
        """The job's report from each rank. Fails the test where the launch did not get through
        this job, naming the job it stopped in, with the tail of its stderr."""
        unfinished = [name for name in self.jobs if not all(self._report(name, r).exists() for r in RANKS)]
        if job not in unfinished and (self.returncode == 0 or unfinished):
            return [json.loads(self._report(job, r).read_text()) for r in RANKS]
        ended = "timed out" if self.returncode is None else f"exited with code {self.returncode}"
        where = f"without finishing job {unfinished[0]!r}" if unfinished else "after its last job"
        pytest.fail(
            f"DDP job {job!r}: the launch of jobs {self.jobs} {ended} {where}; its stderr ends:\n"
            f"{self.stderr[-4000:]}"
        )

    def _report(self, job: str, rank: int) -> Path:
        return self.folder / f"{job}-rank{rank}.json"


def launch_all(folder: Path) -> Launch:
    """Compile every job into `folder` and train them all in one DDP launch."""
    jobs = []
    for name, (text, run) in JOBS.items():
        spec, generated = folder / f"{name}.yaml", folder / f"{name}.py"
        spec.write_text(text)
        generated.write_text(compile_spec(spec, generated).source)
        jobs.append({"name": name, "path": str(generated), **run})
    (folder / "jobs.json").write_text(json.dumps(jobs))
    env = {**os.environ, "PYTHONPATH": "", "OMP_NUM_THREADS": "1"}  # the generated files stand alone
    with open(folder / "stderr.txt", "w") as stderr:
        process = subprocess.Popen(
            [sys.executable, str(SCRIPT), str(folder)],
            cwd=folder,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,  # its own process group: rank 0 and the rank it starts
        )
        try:
            returncode = process.wait(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            returncode = None
        finally:  # a rank left waiting in a collective for one that failed
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return Launch(folder, list(JOBS), returncode, (folder / "stderr.txt").read_text())
