"""3. Compile latency: the wall time of `nncompile SPEC -o OUT` in a fresh process against a fresh
process that only imports what the spec's model needs (torch, and torchvision where it is used).

A third process, `import torch` plus one op on the meta device, shows the floor that shape
propagation on the meta device sets: torch implements most meta kernels in Python, and the first
one run imports torch._dynamo and sympy.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from .common import SPECS, Result, fmt_seconds, paired_ratio, run_child, spread, temp_dir

SECTION = "3. Compile latency"
TARGET = 1.15
META_FLOOR = "import torch; torch.nn.ReLU()(torch.empty(1, device='meta'))"
MISS_NOTE = (
    "The time over the import is torch's, not the compiler's: the first op run on the meta device "
    "imports torch._dynamo and sympy (torch's meta kernels are Python decompositions wrapped in "
    "`torch._disable_dynamo`), which the 'meta-device floor' row measures alone. The compiler's own "
    "modules (yaml, networkx, jinja2, nncompile) import in about 0.3 s. What would close it: "
    "propagate shapes without running torch's Python meta kernels for the common torch.nn layers "
    "(e.g. real CPU tensors with batch 1 for layers with small weights, keeping meta for "
    "backbones), or a torch release whose meta kernels do not import torch._dynamo."
)


def run(
    cases: tuple[tuple[str, str], ...] = (
        ("seed1_resnet_head", "import torch, torchvision"),
        ("tabular_mlp", "import torch"),
    ),
    rounds: int = 5,
    meta_floor: bool = True,
) -> list[Result]:
    """`cases` pairs a spec in specs/ with the import it is measured against."""
    with temp_dir() as tmp:
        commands: dict[str, list[str]] = {}
        for spec, imports in cases:
            commands[f"nncompile {spec}"] = [
                "-m",
                "nncompile",
                str(SPECS / f"{spec}.yaml"),
                "-o",
                str(Path(tmp) / f"{spec}.py"),
            ]
            commands[imports] = ["-c", imports]
        if meta_floor:
            commands["meta-device floor"] = ["-c", META_FLOOR]
        names = list(commands)
        samples: dict[str, list[float]] = {n: [] for n in names}
        cpu: dict[str, list[float]] = {n: [] for n in names}
        for r in range(rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                child = run_child(commands[name])
                samples[name].append(child.wall)
                cpu[name].append(child.cpu)
    med = {n: statistics.median(s) for n, s in samples.items()}
    pairs = [(f"nncompile {spec}", imports, TARGET) for spec, imports in cases]
    if meta_floor:
        pairs.append(("meta-device floor", "import torch", None))
    results = []
    for num, den, target in pairs:
        ratio, q1, q3 = paired_ratio(samples, num, den)
        cpu_ratio = paired_ratio(cpu, num, den)[0]
        results.append(
            Result(
                SECTION,
                f"`{num}` / `python -c '{den}'`"
                if num != "meta-device floor"
                else f"meta-device floor (`{META_FLOOR}`) / `python -c 'import torch'`",
                ratio,
                target,
                f"{fmt_seconds(med[num])} / {fmt_seconds(med[den])} wall, median of {rounds}; {spread(q1, q3)}; "
                f"CPU time ratio {cpu_ratio:.3f}",
                MISS_NOTE if target else "",
            )
        )
    return results
