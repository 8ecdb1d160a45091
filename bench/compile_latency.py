"""3. Compile latency: the wall time of `nncompile SPEC -o OUT` in a fresh process against a fresh
process that only imports what the spec's model needs (torch, and torchvision where it is used).

A third process, `import torch` plus one op on the meta device, shows what shape propagation on
the meta device would cost: torch implements most meta kernels in Python, and the first one run
imports torch._dynamo and sympy. The compiler runs small layers on the CPU instead
(`ops.base.runs_on_cpu`), so a model of small layers never pays it.

The last row compiles many specs in one process (`nncompile specs/*.yaml -o DIR/`, as `make
generate` does) against one spec in one process: the imports are paid once, so 20 specs should
cost at most 3 times one.

Each ratio is the median of interleaved pairs: in a round, a row's two processes run back to back
(which one goes first alternates between rounds), so both see the same load; the target rows, whose
margin is a few percent, get more rounds than the context rows. The compiler's bytecode is written
first, as an installed package's is (`common.compile_bytecode`).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

from .common import SPECS, Result, compile_bytecode, fmt_seconds, paired_ratio, run_child, spread, temp_dir

SECTION = "3. Compile latency"
MANY_TARGET = 3.0
CONTEXT_ROUNDS = 5  # the meta-device floor and the many-spec rows (one many-spec run: ~20 s)
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


@dataclass
class Row:
    """One ratio: `num` against `den` (keys of the commands), `rounds` interleaved pairs."""

    num: str
    den: str
    target: float | None
    rounds: int
    name: str
    miss_note: str


def run(
    cases: tuple[tuple[str, str, float], ...] = (
        ("seed1_resnet_head", "import torch, torchvision", 1.15),
        ("tabular_mlp", "import torch", 1.5),
    ),
    rounds: int = 9,
    meta_floor: bool = True,
    many: int = 20,
) -> list[Result]:
    """`cases` pairs a spec in specs/ with the import it is measured against and the target ratio
    (issue 30: the compiler adds little to the import of what the spec uses), each measured over
    `rounds` pairs; the context rows take at most CONTEXT_ROUNDS. `many` is how many specs of
    specs/ the many-spec row compiles in one process (0: no such row)."""
    context_rounds = min(rounds, CONTEXT_ROUNDS)
    compile_bytecode()
    with temp_dir() as tmp:
        commands: dict[str, list[str]] = {}
        rows: list[Row] = []
        for spec, imports, target in cases:
            num = f"nncompile {spec}"
            commands[num] = [
                "-m",
                "nncompile",
                str(SPECS / f"{spec}.yaml"),
                "-o",
                str(Path(tmp) / f"{spec}.py"),
            ]
            commands[imports] = ["-c", imports]
            rows.append(Row(num, imports, target, rounds, f"`{num}` / `python -c '{imports}'`", MISS_NOTE))
        if meta_floor:
            commands["meta-device floor"] = ["-c", META_FLOOR]
            commands["import torch"] = ["-c", "import torch"]
            name = f"meta-device floor (`{META_FLOOR}`) / `python -c 'import torch'`"
            rows.append(Row("meta-device floor", "import torch", None, context_rounds, name, ""))
        if many:
            specs = sorted(SPECS.glob("*.yaml"))[:many]
            (Path(tmp) / "many").mkdir()
            num, den = f"nncompile {len(specs)} specs", f"nncompile {SINGLE} (one spec)"
            commands[num] = ["-m", "nncompile", *map(str, specs), "-o", f"{tmp}/many/"]
            commands[den] = ["-m", "nncompile", str(SPECS / f"{SINGLE}.yaml"), "-o", f"{tmp}/one.py"]
            name = f"`nncompile <{len(specs)} specs of specs/> -o DIR/` (one process) / `nncompile {SINGLE} -o OUT`"
            rows.append(Row(num, den, MANY_TARGET, context_rounds, name, MANY_MISS_NOTE))
        measured = [(row, *samples) for row, samples in zip(rows, _pairs(rows, commands), strict=True)]
    results = []
    for row, wall, cpu in measured:
        ratio, q1, q3 = paired_ratio(wall, row.num, row.den)
        cpu_ratio = paired_ratio(cpu, row.num, row.den)[0]
        num_s, den_s = statistics.median(wall[row.num]), statistics.median(wall[row.den])
        detail = (
            f"{fmt_seconds(num_s)} / {fmt_seconds(den_s)} wall, median of {row.rounds} interleaved pairs; "
            f"{spread(q1, q3)}; CPU time ratio {cpu_ratio:.3f}"
        )
        results.append(
            Result(SECTION, row.name, ratio, row.target, detail, row.miss_note if row.target else "")
        )
    return results


def _pairs(rows: list[Row], commands: dict[str, list[str]]) -> list[tuple[dict, dict]]:
    """Per row, the wall and CPU seconds of its two processes. In each round every row that still
    has rounds to go runs its two back to back, the one that goes first alternating between
    rounds; a row's rounds are spread over the whole run."""
    wall = [{row.num: [], row.den: []} for row in rows]
    cpu = [{row.num: [], row.den: []} for row in rows]
    for r in range(max(row.rounds for row in rows)):
        for row, row_wall, row_cpu in zip(rows, wall, cpu, strict=True):
            if r >= row.rounds:
                continue
            for name in (row.num, row.den) if r % 2 == 0 else (row.den, row.num):
                child = run_child(commands[name])
                row_wall[name].append(child.wall)
                row_cpu[name].append(child.cpu)
    return list(zip(wall, cpu, strict=True))
