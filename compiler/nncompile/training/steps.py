"""The lines of the generated shared step and epoch end: outputs, target checks, losses, what is
logged per step, and the epoch means of the losses."""

from __future__ import annotations

from ..pyfmt import (
    Arg,
    Call,
    Entry,
    Seq,
    literal,
    statement,
)
from .heads import HeadIR, Target

STAGES = ("train", "val", "test")


PRECISION = (
    "        # Losses and metrics in the module's dtype (float32 under mixed precision),",
    "        # never in the autocast dtype of the outputs.",
)


def step_lines(head: HeadIR) -> list[str]:
    """The shared train/val/test step of one head: predictions, target check, loss, and what is
    logged per step.

    One `self.log` per training step (the step's loss, unsynced: no all-reduce per step); the
    epoch means of the losses and the metrics are updated here and logged once per epoch."""
    lines = list(PRECISION)
    lines += statement("preds = ", f"self(**inputs){head.target.suffix}.to(self.dtype)", 2)
    lines += statement("target = ", check_call("target", head.target), 2)
    lines += statement("loss = ", Call("self.loss_fn", (Arg(None, "preds"), Arg(None, "target"))), 2)
    lines += step_loss_lines("preds")
    if head.metrics:
        lines += statement("metrics = ", 'getattr(self, f"{stage}_metrics")', 2)
        lines += update_lines("metrics", head, "preds", "target")
    return lines


def step_loss_lines(batch: str) -> list[str]:
    step = (Arg(None, '"train_loss_step"'), Arg(None, "loss"), Arg("prog_bar", "True"))
    return [
        '        if stage == "train":  # every step, this process\'s value: no all-reduce per step',
        *statement("", Call("self.log", step), 3),
        *statement("", mean_update('f"{stage}_loss"', "loss", batch), 2),
    ]


def mean_update(key: str, loss: str, batch: str) -> Call:
    """Add a loss to its epoch mean, once per sample (the mean weighs batches by their size)."""
    return Call(f"self.loss_means[{key}].update", (Arg(None, f"{loss}.detach().expand({batch}.shape[0])"),))


def update_lines(collection: str, head: HeadIR, preds: str, target: str) -> list[str]:
    scores = head.target.scores.format(preds=preds)
    return statement("", Call(f"{collection}.update", (Arg(None, scores), Arg(None, target))), 2)


def epoch_lines(head: HeadIR) -> list[str]:
    if not head.metrics:
        return []
    return statement("", Call("self.log_dict", (Arg(None, 'getattr(self, f"{stage}_metrics")'),)), 2)


def loss_mean_lines(names: tuple[str, ...], stages: tuple[str, ...] = STAGES) -> list[str]:
    """One MeanMetric per logged loss and stage: each syncs across processes once, in compute()."""
    if not names:
        return []
    # nan_strategy="disable": the default checks for NaN with a device-to-host copy every step
    mean = Call("torchmetrics.MeanMetric", (Arg("nan_strategy", literal("disable")),))
    table = Seq(tuple(Entry(literal(f"{stage}_{name}"), mean) for stage in stages for name in names), "{}")
    return [
        "        # Epoch means of the losses, each step's loss added once per sample (so batches",
        "        # weigh by their size); synced across processes once per epoch, in compute().",
        *statement("self.loss_means = ", Call("nn.ModuleDict", (Arg(None, table),)), 2),
    ]


def check_call(target: str, spec: Target, preds: str = "preds") -> Call:
    return Call(
        "_checked_target",
        (
            Arg(None, target),
            Arg(None, spec.shape.format(preds=preds)),
            Arg(None, spec.dtype.format(preds=preds)),
            Arg(None, literal(spec.doc)),
        ),
    )


def logged_names(head: HeadIR, prefix: str = "") -> set[str]:
    """Every name one head logs (what a scheduler's `monitor` may watch), its metrics' names
    after `<stage>_<prefix>`; the total loss's."""
    names = set()
    for stage in ("train", "val"):
        names.add(f"{stage}_loss")
        names.update(f"{stage}_{prefix}{m.log_name}" for m in head.metrics if m.streaming or stage != "train")
    return names
