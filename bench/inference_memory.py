"""2. Inference memory: peak activation memory of the generated MLP chain under torch.no_grad()
against a hand-written nn.Sequential with the same weights.

The allocator hook: glibc's malloc serves torch's CPU tensors, and mallinfo2() reports the bytes
it has handed out and not taken back. A TorchDispatchMode reads that after every aten op of the
forward; the peak above the level before the call (weights and input already allocated) is the
activation memory. This sees every intermediate a forward keeps alive, whoever holds it.
"""

from __future__ import annotations

import ctypes
import statistics
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from .common import BENCH_SPECS, Result, temp_dir
from .runtime_parity import build_pair, mlp_shape

SECTION = "2. Inference memory"
TARGET = 1.05
MISS_NOTE = (
    "The generated forward keeps an intermediate alive longer than nn.Sequential does: plan.py must "
    "rebind or `del` each value right after its last use."
)


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


_libc = ctypes.CDLL("libc.so.6")
_libc.mallinfo2.restype = _MallInfo2


def bytes_in_use() -> int:
    info = _libc.mallinfo2()
    return info.uordblks + info.hblkhd  # heap chunks in use + chunks mapped on their own


class PeakMemory(TorchDispatchMode):
    """Peak bytes in use above the level at entry, sampled after every aten op."""

    def __enter__(self):
        self.base = bytes_in_use()
        self.peak = 0
        return super().__enter__()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.peak = max(self.peak, bytes_in_use() - self.base)
        return out


def peak_activation_bytes(model: torch.nn.Module, x: torch.Tensor) -> int:
    with torch.no_grad():
        with PeakMemory() as meter:
            out = model(x)
        del out
    return meter.peak


def run(
    mlp_spec: Path = BENCH_SPECS / "mlp_chain64.yaml", batch: int = 1024, rounds: int = 5
) -> list[Result]:
    torch.manual_seed(0)
    with temp_dir() as tmp:
        generated, hand = build_pair(mlp_spec, Path(tmp))
    generated.eval(), hand.eval()
    layers, width = mlp_shape(mlp_spec)
    x = torch.randn(batch, width)
    models = {"generated": generated, "nn.Sequential": hand}
    for model in models.values():  # first calls allocate the kernels' one-off buffers
        peak_activation_bytes(model, x), peak_activation_bytes(model, x)
    peaks: dict[str, list[int]] = {name: [] for name in models}
    for r in range(rounds):
        for name in list(models)[r % 2 :] + list(models)[: r % 2]:
            peaks[name].append(peak_activation_bytes(models[name], x))
    gen, seq = (statistics.median(peaks[n]) for n in models)
    one = batch * width * x.element_size()
    return [
        Result(
            SECTION,
            f"{mlp_spec.stem} ({layers} Linear, {batch}x{width}) under no_grad: generated / nn.Sequential",
            gen / seq,
            TARGET,
            f"{gen / 2**20:.2f} MiB / {seq / 2**20:.2f} MiB peak above weights and input "
            f"(one activation: {one / 2**20:.2f} MiB; median of {rounds})",
            MISS_NOTE,
        )
    ]
