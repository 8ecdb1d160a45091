"""Run every benchmark and write bench/RESULTS.md: `make bench`, or `python bench/run.py`.

Options: `--only 1 3` runs some sections; `--output PATH` writes elsewhere.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "compiler"), str(ROOT)]  # this tree's compiler and bench package

import torch  # noqa: E402
import torchvision  # noqa: E402

from bench import (  # noqa: E402
    big_backbone,
    compile_latency,
    inference_memory,
    runtime_parity,
    scale,
    training_step,
)
from bench.common import Result  # noqa: E402

SECTIONS = {
    "1": runtime_parity,
    "2": inference_memory,
    "3": compile_latency,
    "4": scale,
    "5": big_backbone,
    "6": training_step,
}


def machine() -> list[str]:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in _read("/proc/cpuinfo") if line.startswith("model name")),
        platform.processor() or "unknown CPU",
    )
    mem = next((line.split()[1] for line in _read("/proc/meminfo") if line.startswith("MemTotal")), None)
    return [
        f"- CPU: {cpu}; {os.cpu_count()} logical cores, {len(os.sched_getaffinity(0))} usable by this run",
        f"- Memory: {int(mem) / 2**20:.1f} GiB" if mem else "- Memory: unknown",
        f"- OS: {platform.platform()}",
        f"- Python {platform.python_version()}, torch {torch.__version__}, torchvision {torchvision.__version__}",
        "- Timed in this process (1, 4): torch on 1 thread, CPU time; child processes (3, 5): torch's "
        f"default threads ({torch.get_num_threads()}), wall time",
    ]


def _read(path: str) -> list[str]:
    try:
        return Path(path).read_text().splitlines()
    except OSError:
        return []


def report(results: list[Result], started: datetime, seconds: float, load: tuple, load_end: tuple) -> str:
    cores = len(os.sched_getaffinity(0))
    lines = [
        "# nncompile benchmark results",
        "",
        f"Written by `make bench` (bench/run.py) on {started:%Y-%m-%d %H:%M} UTC in {seconds / 60:.1f} minutes. "
        "Every ratio compares two things measured side by side in this run, taking turns round after "
        "round; it is the median over rounds of the per-round ratio. See bench/README.md for the method.",
        "",
        "## Machine",
        "",
        *machine(),
        f"- Load average (1, 5, 15 min): {_load(load)} at the start, {_load(load_end)} at the end",
        "",
    ]
    if max(load[0], load_end[0]) > cores / 2:
        lines += [
            f"**Load note:** the machine was shared with other work during this run (load average up to "
            f"{max(load[0], load_end[0]):.1f} on {cores} cores), so timings are noisy: the quartiles of the "
            "per-round ratios show how much. Memory figures are not affected by load.",
            "",
        ]
    met = [r for r in results if r.met is not None]
    lines += [
        f"**{sum(bool(r.met) for r in met)} of {len(met)} targets met.**",
        "",
    ]
    for section in dict.fromkeys(r.section for r in results):
        lines += [
            f"## {section}",
            "",
            "| figure | value | target | met | measured |",
            "|---|---|---|---|---|",
        ]
        for r in (r for r in results if r.section == section):
            target = "-" if r.target is None else f"<= {r.target:g}{r.unit if r.unit != 'x' else ''}"
            verdict = {True: "yes", False: "**no**", None: "(context)"}[r.met]
            value = f"{r.value:.3f}" if r.unit == "x" else f"{r.value:.1f} s"
            lines.append(f"| {r.name} | {value} | {target} | {verdict} | {r.detail} |")
        lines.append("")
        missed = [r for r in results if r.section == section and r.met is False]
        for note in dict.fromkeys(r.miss_note for r in missed):
            lines += [f"Missed ({', '.join(r.name for r in missed if r.miss_note == note)}): {note}", ""]
    return "\n".join(lines)


def _load(values: tuple) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="+", choices=sorted(SECTIONS), help="run only these sections")
    p.add_argument("--output", type=Path, default=ROOT / "bench" / "RESULTS.md")
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    started, start, load = datetime.now(timezone.utc), time.perf_counter(), os.getloadavg()
    results: list[Result] = []
    for key in args.only or sorted(SECTIONS):
        module = SECTIONS[key]
        t = time.perf_counter()
        print(f"[bench] {module.SECTION} ...", flush=True)
        section = module.run()
        for r in section:
            print(f"  {r.name}: {r.value:.3f} (target {r.target}) {r.detail}", flush=True)
        print(f"  ({time.perf_counter() - t:.0f} s)", flush=True)
        results += section
    text = report(results, started, time.perf_counter() - start, load, os.getloadavg())
    args.output.write_text(text + "\n")
    print(f"[bench] wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
