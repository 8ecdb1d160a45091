"""The lines of the generated shared step and epoch end: outputs, target checks, losses, what is
logged per step, and the epoch means of the losses."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..pyfmt import (
    Arg,
    BinOp,
    Call,
    Entry,
    Expr,
    Seq,
    identifier,
    literal,
    statement,
)
from .heads import HeadIR, Target

if TYPE_CHECKING:
    pass


STAGES = ("train", "val", "test")


PRECISION = (
    "        # Losses and metrics in the module's dtype (float32 under mixed precision),",
    "        # never in the autocast dtype of the outputs.",
)


def step_lines(heads: list[HeadIR], multi: bool) -> list[str]:
    """The shared train/val/test step: outputs, target checks, losses, and what is logged per step.

    One `self.log` per training step (the step's loss, unsynced: no all-reduce per step); the
    epoch means of the losses and the metrics are updated here and logged once per epoch."""
    if not heads:  # kind: custom
        return []
    if not multi:
        head = heads[0]
        lines = list(PRECISION)
        lines += statement("preds = ", f"self(**inputs){head.target.suffix}.to(self.dtype)", 2)
        lines += statement("target = ", check_call("target", head.target), 2)
        lines += statement("loss = ", Call("self.loss_fn", (Arg(None, "preds"), Arg(None, "target"))), 2)
        lines += step_loss_lines("preds")
        if head.metrics:
            lines += statement("metrics = ", 'getattr(self, f"{stage}_metrics")', 2)
            lines += update_lines("metrics", head, "preds", "target")
        return lines
    lines = statement("outputs = ", "self(**inputs)", 2) + list(PRECISION)
    for head in heads:
        name = identifier(head.output)
        preds, target = f"preds_{name}", f"target_{name}"
        lines += statement(f"{preds} = ", f"outputs{head.target.suffix}.to(self.dtype)", 2)
        check = check_call(f"target[{literal(head.output)}]", head.target, preds)
        lines += statement(f"{target} = ", check, 2)
        loss_fn = f"self.loss_fns[{literal(head.output)}]"
        lines += statement(f"loss_{name} = ", Call(loss_fn, (Arg(None, preds), Arg(None, target))), 2)
    total: Expr | None = None
    for head in heads:
        total = _term(head) if total is None else BinOp("+", total, _term(head))
    one_line = statement("loss = ", total, 2)
    if len(one_line) == 1 and len(one_line[0]) <= 88:
        lines += one_line
    else:  # too long for one line: accumulate term by term
        lines += statement("loss = ", _term(heads[0]), 2)
        for head in heads[1:]:
            lines += statement("loss = ", BinOp("+", "loss", _term(head)), 2)
    batch = f"preds_{identifier(heads[0].output)}"
    lines += step_loss_lines(batch)
    for head in heads:
        name = identifier(head.output)
        lines += statement("", mean_update(f'f"{{stage}}_{name}_loss"', f"loss_{name}", batch), 2)
    measured = [h for h in heads if h.metrics]
    if measured:
        lines += statement("metrics = ", 'getattr(self, f"{stage}_metrics")', 2)
    for head in measured:
        name = identifier(head.output)
        lines += update_lines(f"metrics[{literal(head.output)}]", head, f"preds_{name}", f"target_{name}")
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


def epoch_lines(heads: list[HeadIR], multi: bool) -> list[str]:
    if not any(h.metrics for h in heads):
        return []
    if not multi:
        return statement("", Call("self.log_dict", (Arg(None, 'getattr(self, f"{stage}_metrics")'),)), 2)
    return [
        '        for collection in getattr(self, f"{stage}_metrics").values():',
        "            self.log_dict(collection)",
    ]


def loss_names(heads: list[HeadIR], multi: bool) -> tuple[str, ...]:
    """The losses logged per stage: the total, and each head's in a multitask."""
    if not heads:
        return ()
    return ("loss", *(f"{identifier(h.output)}_loss" for h in heads)) if multi else ("loss",)


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


def _term(head: HeadIR) -> Expr:
    loss = f"loss_{identifier(head.output)}"
    return BinOp("*", head.weight, loss)


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


def logged_names(heads: list[HeadIR], multi: bool) -> set[str]:
    """Every name the module logs (what a scheduler's `monitor` may watch)."""
    names = set()
    for stage in ("train", "val"):
        names.add(f"{stage}_loss")
        for head in heads:
            prefix = f"{stage}_{head.output}_" if multi else f"{stage}_"
            names.update(prefix + m.log_name for m in head.metrics if m.streaming or stage != "train")
            if multi:
                names.add(f"{prefix}loss")
    return names
