"""3. Compile latency: the wall time of `nncompile SPEC -o OUT` in a fresh process against a fresh
process that only imports what the spec's model needs (torch, and torchvision where it is used).

A third process, `import torch` plus one op on the meta device, shows what shape propagation on
the meta device would cost: torch implements most meta kernels in Python, and the first one run
imports torch._dynamo and sympy. The compiler runs small layers on the CPU instead
(`ops.base.runs_on_cpu`), so a model of small layers never pays it.

The last row compiles many specs in one process (`nncompile specs/*.yaml -o DIR/`, as `make
generate` does) against one spec in one process: the imports are paid once, so 20 specs should
cost at most 3 times one.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from .common import SPECS, Result, fmt_seconds, paired_ratio, run_child, spread, temp_dir

SECTION = "3. Compile latency"
MANY_TARGET = 3.0
SINGLE = "seed1_resnet_head"  # the one spec the many-spec compile is measured against
META_FLOOR = "import torch; torch.nn.ReLU()(torch.empty(1, device='meta'))"
MISS_NOTE = (
    "Look for a heavy import the spec does not need: `python -X importtime -m nncompile SPEC` "
    "(torchmetrics and its transformers, torch._dynamo and sympy through the meta device or "
    "a torch.optim parameter group); tests/test_compile_imports.py lists what a compile may load."
)

MANY_MISS_NOTE = (
    "Each spec's own work (building its backbones on the meta device, its shapes, its file) is "
    "what the many-spec compile adds to one import of torch, torchvision and timm; a miss means "
    "that work, not the imports, dominates: see section 4 for the compiler's own cost."
)


def run(
    cases: tuple[tuple[str, str, float], ...] = (
        ("seed1_resnet_head", "import torch, torchvision", 1.15),
        ("tabular_mlp", "import torch", 1.5),
    ),
    rounds: int = 5,
    meta_floor: bool = True,
    many: int = 20,
) -> list[Result]:
    """`cases` pairs a spec in specs/ with the import it is measured against and the target ratio
    (issue 30: the compiler adds little to the import of what the spec uses); `many` is how many
    specs of specs/ the many-spec row compiles in one process (0: no such row)."""
    with temp_dir() as tmp:
        commands: dict[str, list[str]] = {}
        for spec, imports, _ in cases:
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
        specs = sorted(SPECS.glob("*.yaml"))[:many]
        if many:
            (Path(tmp) / "many").mkdir()
            commands[f"nncompile {len(specs)} specs"] = [
                "-m",
                "nncompile",
                *map(str, specs),
                "-o",
                f"{tmp}/many/",
            ]
            commands[f"nncompile {SINGLE}"] = [
                "-m",
                "nncompile",
                str(SPECS / f"{SINGLE}.yaml"),
                "-o",
                f"{tmp}/one.py",
            ]
        names = list(commands)
        samples: dict[str, list[float]] = {n: [] for n in names}
        cpu: dict[str, list[float]] = {n: [] for n in names}
        for r in range(rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                child = run_child(commands[name])
                samples[name].append(child.wall)
                cpu[name].append(child.cpu)
    med = {n: statistics.median(s) for n, s in samples.items()}
    pairs = [(f"nncompile {spec}", imports, target) for spec, imports, target in cases]
    if meta_floor:
        pairs.append(("meta-device floor", "import torch", None))
    if many:
        pairs.append((f"nncompile {len(specs)} specs", f"nncompile {SINGLE}", MANY_TARGET))
    results = []
    for num, den, target in pairs:
        ratio, q1, q3 = paired_ratio(samples, num, den)
        cpu_ratio = paired_ratio(cpu, num, den)[0]
        if num == "meta-device floor":
            name = f"meta-device floor (`{META_FLOOR}`) / `python -c 'import torch'`"
        elif den.startswith("nncompile"):
            name = f"`nncompile <{len(specs)} specs of specs/> -o DIR/` (one process) / `{den} -o OUT`"
        else:
            name = f"`{num}` / `python -c '{den}'`"
        results.append(
            Result(
                SECTION,
                name,
                ratio,
                target,
                f"{fmt_seconds(med[num])} / {fmt_seconds(med[den])} wall, median of {rounds}; {spread(q1, q3)}; "
                f"CPU time ratio {cpu_ratio:.3f}",
                (MANY_MISS_NOTE if den.startswith("nncompile") else MISS_NOTE) if target else "",
            )
        )
    return results
