"""5. Big backbones: peak RSS of `nncompile` compiling a spec around torchvision's vit_h_14
(632M parameters, 2.5 GB of float32 weights) against the peak RSS of a process that imports torch
and torchvision. Shapes run on the meta device, so no weight should ever be allocated.

Each process prints its own VmHWM (/proc/self/status) as it ends: the peak of its own address
space. (getrusage's ru_maxrss would not do: across fork and exec it keeps the parent's peak.)
"""

from __future__ import annotations

import statistics
from pathlib import Path

from .common import Result, paired_ratio, run_child, spread, temp_dir

SECTION = "5. Big backbones"
TARGET = 1.2
SPEC = """\
nncompile: 1
name: BigViT
inputs:
  image: [3, 224, 224]
nodes:
  vit: {{op: torchvision.{builder}, weights: null, head: remove}}
  head: {{op: Linear, out_features: 10}}
task:
  kind: classification
"""
PRINT_PEAK = "print(next(line for line in open('/proc/self/status') if line.startswith('VmHWM:')))"
MISS_NOTE = (
    "Weights are not the cause (they would add gigabytes): the extra memory is the modules the "
    "compiler imports beyond torch and torchvision, chiefly torch._dynamo and sympy, which torch's "
    "first Python meta kernel imports (see 3.), plus the meta model's module objects. Avoiding "
    "torch's Python meta kernels would close it."
)


def peak_bytes(output: str) -> int:
    """The VmHWM line a child printed last (`VmHWM:   812345 kB`), in bytes."""
    line = next(line for line in reversed(output.splitlines()) if line.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


def run(builder: str = "vit_h_14", rounds: int = 3) -> list[Result]:
    with temp_dir() as tmp:
        spec = Path(tmp, f"{builder}.yaml")
        spec.write_text(SPEC.format(builder=builder))
        out = Path(tmp, f"{builder}.py")
        commands = {
            "nncompile": f"from nncompile.cli import main; main([{str(spec)!r}, '-o', {str(out)!r}]); {PRINT_PEAK}",
            "import": f"import torch, torchvision; {PRINT_PEAK}",
        }
        peaks: dict[str, list[float]] = {name: [] for name in commands}
        for r in range(rounds):
            for name in list(commands)[r % 2 :] + list(commands)[: r % 2]:
                peaks[name].append(peak_bytes(run_child(["-c", commands[name]]).stdout))
    ratio, q1, q3 = paired_ratio(peaks, "nncompile", "import")
    compiled, imported = (statistics.median(peaks[n]) for n in commands)
    return [
        Result(
            SECTION,
            f"peak RSS of `nncompile` on a torchvision.{builder} spec / `python -c 'import torch, torchvision'`",
            ratio,
            TARGET,
            f"{compiled / 2**20:.0f} MiB / {imported / 2**20:.0f} MiB, median of {rounds}; {spread(q1, q3)}",
            MISS_NOTE,
        )
    ]
