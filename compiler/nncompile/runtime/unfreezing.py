"""Gradual unfreezing as the Lightning callback the generated file carries (its source is copied
there): training/recipes/unfreezing.py plans it, docs/fine-tuning.md says why it works this way."""

from __future__ import annotations

import pytorch_lightning as pl
from torch import nn


class GradualUnfreezing(pl.Callback):
    """Holds each part in `schedule` frozen, then trains it at a rising fraction of its rate,
    in its own optimizer groups throughout; by the trainer's epoch and step (DDP, resume)."""

    def __init__(self, schedule: dict[str, tuple[str, int, float]]) -> None:
        self.schedule = schedule
        self.fractions: dict[str, float] = {}  # part -> how far unfrozen at this batch

    def on_train_start(self, trainer: pl.Trainer, pl_module) -> None:
        # Rates scaled for the optimizer's step alone (a skipped AMP step runs neither hook).
        for optimizer in trainer.optimizers:
            optimizer.register_step_pre_hook(self._scale_rates)
            optimizer.register_step_post_hook(self._restore_rates)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        # Fractions, this batch counted; a part still frozen keeps BatchNorm in eval mode.
        batches = trainer.num_training_batches
        within = (batch_idx + 1) / batches if batches != float("inf") else 1.0
        now = {"step": trainer.global_step + 1, "epoch": trainer.current_epoch + within}
        for part, (unit, start, warmup) in self.schedule.items():
            done = now[unit] - start
            ratio = done / warmup if warmup > 0 else float(done > 0)
            self.fractions[part] = min(1.0, max(0.0, ratio))
            for layer in pl_module.model.get_submodule(part).modules():
                if isinstance(layer, nn.modules.batchnorm._BatchNorm):
                    layer.train(self.fractions[part] > 0)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        # A frozen part's gradients (reduced by DDP) are dropped: the optimizer skips them.
        for group in optimizer.param_groups:
            if self.fractions.get(group.get("unfreeze"), 1.0) == 0.0:
                for param in group["params"]:
                    param.grad = None

    def _scale_rates(self, optimizer, args, kwargs) -> None:
        self.scheduled = [group["lr"] for group in optimizer.param_groups]  # to restore
        for group in optimizer.param_groups:
            group["lr"] *= self.fractions.get(group.get("unfreeze"), 1.0)

    def _restore_rates(self, optimizer, args, kwargs) -> None:
        for group, lr in zip(optimizer.param_groups, self.scheduled, strict=True):
            group["lr"] = lr
