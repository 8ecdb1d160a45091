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


PRECISION = ("        # Losses and metrics in the module's dtype, not the outputs' autocast dtype.",)


def step_lines(head: HeadIR) -> list[str]:
    """The shared train/val/test step of one head: predictions, target check, loss, and what is
    logged per step.

    One `self.log` per training step (the step's loss, unsynced: no all-reduce per step); the
    epoch means of the losses and the metrics are accumulated here and synced once per epoch."""
    preds = f"self(**inputs){head.target.suffix}.to(self.dtype)"
    lines = statement("preds = ", preds, 2, "loss, metrics in the module's dtype")
    lines += statement("target = ", check_call("target", head.target, doc="self.target_doc"), 2)
    lines += statement("loss = ", Call("self.loss_fn", (Arg(None, "preds"), Arg(None, "target"))), 2)
    lines += step_loss_lines({'f"{stage}_loss"': "loss"})
    if head.metrics:
        lines += statement("metrics = ", 'getattr(self, f"{stage}_metrics")', 2)
        lines += update_lines("metrics", head, "preds", "target")
        lines += log_metrics("metrics")
    return lines


# Epoch means: Lightning weighs each batch by its size (which it reads off the batch), each
# process sums its own, and `sync_dist` syncs the sums once per epoch, never per step.
EPOCH_MEAN = (Arg("on_step", "False"), Arg("on_epoch", "True"), Arg("sync_dist", "True"))


def step_loss_lines(means: dict[str, str]) -> list[str]:
    """The step's loss for the progress bar (training), and the epoch mean of each loss in
    `means` (the expression of its logged name -> the loss's) in every stage."""
    step = (Arg(None, '"train_loss_step"'), Arg(None, "loss"), Arg("prog_bar", "True"))
    lines = [
        '        if stage == "train":  # every step, this process\'s value: no all-reduce per step',
        *statement("", Call("self.log", step), 3),
    ]
    if len(means) == 1:
        ((name, loss),) = means.items()
        call = Call("self.log", (Arg(None, name), Arg(None, loss), *EPOCH_MEAN))
        return lines + statement("", call, 2)
    table = Seq(tuple(Entry(name, loss) for name, loss in means.items()), "{}")
    lines += statement("means = ", table, 2)
    return lines + statement("", Call("self.log_dict", (Arg(None, "means"), *EPOCH_MEAN)), 2)


def update_lines(collection: str, head: HeadIR, preds: str, target: str) -> list[str]:
    scores = head.target.scores.format(preds=preds)
    return statement("", Call(f"{collection}.update", (Arg(None, scores), Arg(None, target))), 2)


# Logged once per epoch (Lightning's default in validation and test, not in training).
EPOCH = (Arg("on_step", "False"), Arg("on_epoch", "True"))


def log_metrics(collection: str) -> list[str]:
    """Log a MetricCollection as objects: Lightning computes each at the epoch's end (syncing
    its state across processes once) and resets it."""
    return statement("", Call("self.log_dict", (Arg(None, collection), *EPOCH)), 2)


def check_call(target: str, spec: Target, preds: str = "preds", doc: str | None = None) -> Call:
    """`_checked_target(...)`; `doc`: the expression of what the target must hold (its text)."""
    return Call(
        "_checked_target",
        (
            Arg(None, target),
            Arg(None, spec.shape.format(preds=preds)),
            Arg(None, spec.dtype.format(preds=preds)),
            Arg(None, doc or literal(spec.doc)),
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
