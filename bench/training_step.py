"""6. Training step: the generated LightningModule of specs/tabular_mlp.yaml against a hand-written
one doing the same work the way a Lightning expert writes it (handwritten.TabularExpertModule),
around the same nn.Module with the same weights, trained by the same Trainer settings. A small model
at batch 8, so the per-step overhead of the LightningModule (checks, logging, metrics) dominates.

A step is timed from the Trainer's on_train_batch_start to on_train_batch_end (training_step,
backward and the optimizer step), in this process's CPU time with torch on one thread. Each round
fits each variant once (the order rotates); its figure is the CPU time of the steps after the
warm-up ones.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytorch_lightning as pl
import torch

from . import handwritten
from .common import (
    SPECS,
    Result,
    compile_to_module,
    fmt_seconds,
    interleaved,
    one_thread,
    paired_ratio,
    spread,
    temp_dir,
)

SECTION = "6. Training step"
TARGET = 1.05
MISS_NOTE = (
    "The generated step does more per step than the expert's: it checks the batch and the target's "
    "shape and dtype, and logs the epoch mean of the loss (synced once per epoch) besides the step's "
    "loss. Each `self.log` call costs tens of microseconds in Lightning, which is what shows at batch 8 "
    "on a small MLP; with a real model it is noise."
)


class StepClock(pl.Callback):
    """Adds up the CPU seconds of every training step after the first `warmup` of each fit."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.total = 0.0
        self.start = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.start = time.process_time()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if batch_idx >= self.warmup:
            self.total += time.process_time() - self.start


def fit(module: pl.LightningModule, loader, steps: int, clock: StepClock) -> None:
    trainer = pl.Trainer(
        accelerator="cpu",
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[clock],
    )
    trainer.fit(module, train_dataloaders=loader)


def build_pair(workdir: Path):
    """The generated module and the expert one, each around a TabularMLP with the same weights."""
    module = compile_to_module(SPECS / "tabular_mlp.yaml", workdir)
    generated = module.TabularMLPModule()
    model = module.TabularMLP()
    model.load_state_dict(generated.model.state_dict())
    return generated, handwritten.TabularExpertModule(model)


def run(batch: int = 8, steps: int = 200, warmup: int = 20, rounds: int = 9) -> list[Result]:
    import logging

    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)  # the Trainer's banner each fit
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    data = [(torch.randn(batch, 32, generator=g), torch.randn(batch, 1, generator=g)) for _ in range(steps)]
    loader = torch.utils.data.DataLoader(data, batch_size=None)
    clock = StepClock(warmup)
    timed = steps - warmup
    with temp_dir() as tmp, one_thread():
        generated, hand = build_pair(Path(tmp))
        # interleaved reads the clock around each fit: the seconds of its timed steps alone
        samples = interleaved(
            {
                "generated": lambda: fit(generated, loader, steps, clock),
                "hand-written": lambda: fit(hand, loader, steps, clock),
            },
            rounds,
            clock=lambda: clock.total,
        )
    ratio, q1, q3 = paired_ratio(samples, "generated", "hand-written")
    med = {n: sorted(s)[len(s) // 2] / timed for n, s in samples.items()}
    return [
        Result(
            SECTION,
            f"tabular_mlp (batch {batch}), training step: generated / hand-written LightningModule",
            ratio,
            TARGET,
            f"{fmt_seconds(med['generated'])} / {fmt_seconds(med['hand-written'])} per step; {spread(q1, q3)}",
            MISS_NOTE,
        )
    ]
