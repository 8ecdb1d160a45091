"""4. Scale: compile time of chains and random DAGs of growing size, in this process (the imports
and torch's first-use costs paid by a warm-up compile), spec file to source text. Time is this
process's CPU time (compiling is single-threaded), which other load on the machine barely moves;
the wall times are shown beside it.

A linear compiler takes ten times as long for ten times the nodes; the figures are the time at
the largest size over the time at the size ten times smaller, and the largest size's seconds.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from . import specgen
from .common import Result, fmt_seconds, paired_ratio, spread, temp_dir

SECTION = "4. Scale"
RATIO_TARGET = 11.0
SECONDS_TARGET = 60.0
KINDS = {"chain": specgen.chain, "random DAG": specgen.random_dag}
RATIO_NOTE = (
    "Some stage does more than constant work per node. Profile the largest size with cProfile and "
    "compare each function's call count and time per call with the smaller size's; if the counts scale "
    "by 10 but the times by more, check the cyclic garbage collector (pipeline.compile_spec pauses it: "
    "its full passes rescan the whole heap, torch's included, each time the heap grows by a quarter)."
)
SECONDS_NOTE = (
    "Nearly all of the time is shape propagation: torch's Python meta kernels (decompositions, "
    "type promotion, torch._check) cost about 1 ms per op. Inferring the shapes of shape-preserving "
    "layers without running them, or caching results per (layer, arguments, input shape), would "
    "close it."
)


def compile_seconds(path: Path) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of compiling `path` in this process."""
    from nncompile.pipeline import compile_spec

    cpu, wall = time.process_time(), time.perf_counter()
    compile_spec(path, path.with_suffix(".py"))
    return time.process_time() - cpu, time.perf_counter() - wall


def run(sizes: tuple[int, ...] = (100, 1_000, 10_000), rounds: int = 7) -> list[Result]:
    results = []
    with temp_dir() as tmp:
        paths = {}
        for kind, generate in KINDS.items():
            for n in sizes:
                paths[kind, n] = Path(tmp, f"{kind.replace(' ', '_')}_{n}.yaml")
                paths[kind, n].write_text(generate(n))
        warm = Path(tmp, "warm_up.yaml")
        warm.write_text(specgen.random_dag(20))
        compile_seconds(warm)
        names = list(paths)
        samples: dict[tuple, list[float]] = {key: [] for key in names}  # CPU seconds
        walls: dict[tuple, list[float]] = {key: [] for key in names}
        for r in range(rounds):
            for key in names[r % len(names) :] + names[: r % len(names)]:
                cpu, wall = compile_seconds(paths[key])
                samples[key].append(cpu)
                walls[key].append(wall)
    for kind in KINDS:
        for small, large in zip(sizes, sizes[1:], strict=False):
            ratio, q1, q3 = paired_ratio(samples, (kind, large), (kind, small))
            growth = large / small
            last = large == sizes[-1]
            results.append(
                Result(
                    SECTION,
                    f"{kind}: compile time of {large:,} nodes / {small:,} nodes",
                    ratio,
                    RATIO_TARGET * growth / 10 if last else None,
                    f"{fmt_seconds(statistics.median(samples[kind, large]))} / "
                    f"{fmt_seconds(statistics.median(samples[kind, small]))} CPU, median of {rounds}; "
                    f"{spread(q1, q3)}",
                    RATIO_NOTE if last else "",
                )
            )
        largest = statistics.median(samples[kind, sizes[-1]])
        results.append(
            Result(
                SECTION,
                f"{kind}: seconds to compile {sizes[-1]:,} nodes",
                largest,
                SECONDS_TARGET,
                f"CPU seconds, median of {rounds} (wall: "
                f"{', '.join(fmt_seconds(s) for s in walls[kind, sizes[-1]])})",
                SECONDS_NOTE,
                unit="s",
            )
        )
    return results
