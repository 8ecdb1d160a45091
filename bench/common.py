"""What every benchmark shares: interleaved timing, loading generated code, and the result row.

Every figure is a ratio of two things measured side by side in one run. The variants of one
comparison take turns within each round (the starting one rotates), so load from other users of a
shared machine hits both sides alike; the figure is the median over rounds of the per-round ratio.
"""

from __future__ import annotations

import compileall
import contextlib
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
BENCH_SPECS = Path(__file__).resolve().parent / "specs"


@dataclass
class Result:
    """One figure of RESULTS.md: `value` (a ratio unless `unit` says otherwise) and `target`, its
    upper bound (None: shown for context only)."""

    section: str
    name: str
    value: float
    target: float | None
    detail: str  # the two measurements behind the ratio, and the spread over rounds
    miss_note: str = ""  # why a missed target is missed and what would close it
    unit: str = "x"  # "x" for a ratio, "s" for seconds

    @property
    def met(self) -> bool | None:
        return None if self.target is None else self.value <= self.target


def interleaved(
    variants: dict[str, Callable[[], object]],
    rounds: int,
    inner: int = 1,
    clock: Callable[[], float] = time.process_time,
) -> dict[str, list[float]]:
    """Seconds per call of each variant, one sample per round; each sample times `inner` calls.

    The default clock is this process's CPU time: on a shared machine, the time other processes
    hold the cores would otherwise land at random on one side or the other.
    """
    names = list(variants)
    samples: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            fn = variants[name]
            start = clock()
            for _ in range(inner):
                fn()
            samples[name].append((clock() - start) / inner)
    return samples


def paired_ratio(samples: dict[str, list[float]], num: str, den: str) -> tuple[float, float, float]:
    """The median over rounds of num/den, and the 25th and 75th percentiles of that ratio."""
    ratios = sorted(a / b for a, b in zip(samples[num], samples[den], strict=True))
    if len(ratios) < 4:
        return statistics.median(ratios), ratios[0], ratios[-1]
    q1, _, q3 = statistics.quantiles(ratios, n=4)
    return statistics.median(ratios), q1, q3


@contextlib.contextmanager
def one_thread():
    """torch on one thread while timing: steadier on a shared machine, and the CPU clock then
    counts only the work itself (idle OpenMP workers spin, and spinning is CPU time)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def calibrate(fn: Callable[[], object], seconds: float) -> int:
    """How many calls of `fn` take about `seconds` of CPU time (at least 1), after a warm-up call."""
    fn()
    start = time.process_time()
    fn()
    once = max(time.process_time() - start, 1e-6)
    return max(1, round(seconds / once))


def fmt_seconds(s: float) -> str:
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.2f} ms"
    return f"{s * 1e6:.1f} us"


def spread(q1: float, q3: float) -> str:
    return f"per-round ratios {q1:.3f} to {q3:.3f} (quartiles)"


def compile_to_module(spec: Path, workdir: Path, name: str | None = None):
    """Compile `spec` with nncompile in this process and import the generated file."""
    from nncompile import compile_spec

    name = name or f"bench_generated_{spec.stem}"
    out = workdir / f"{name}.py"
    out.write_text(compile_spec(spec, out).source)
    module_spec = importlib.util.spec_from_file_location(name, out)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def python_env() -> dict[str, str]:
    """The environment for child Python processes: this tree's compiler first on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "compiler"), env.get("PYTHONPATH")]))
    env.setdefault("HF_HUB_OFFLINE", "1")
    return env


def compile_bytecode() -> None:
    """Compile this tree's compiler to bytecode, as pip does when it installs a package: where
    PYTHONDONTWRITEBYTECODE is set (this project's machines set it), every child process would
    otherwise compile the compiler's source again (about 0.3 s of CPU), which no installed
    nncompile pays. torch's own bytecode was written when it was installed."""
    compileall.compile_dir(ROOT / "compiler" / "nncompile", quiet=1)


@dataclass
class ChildRun:
    wall: float  # seconds from start to exit
    cpu: float  # user + system CPU seconds of the child alone
    stdout: str


def run_child(args: list[str], cwd: Path | None = None) -> ChildRun:
    """Run `python ARGS` to completion and read its own resource use from wait4()."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, *args],
        cwd=cwd,
        env=python_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    output = proc.stdout.read().decode(errors="replace")  # read before waiting: a full pipe blocks
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.stdout.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"python {' '.join(args)} failed ({proc.returncode}):\n{output[-2000:]}")
    return ChildRun(wall, usage.ru_utime + usage.ru_stime, output)


def temp_dir() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="nncompile-bench-")
