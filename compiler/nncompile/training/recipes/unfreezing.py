"""Gradual unfreezing (`unfreeze:` on a node): parts of a node that start training at an epoch
(or an optimizer step), each with an optional learning-rate warm-up.

The node is frozen but for its listed parts (freezing.py freezes the rest for good, and keeps a
replaced head trainable). The parts keep `requires_grad=True` from the start, so DDP's reducer
and the optimizer's parameter groups are the same from the first step to the last (a checkpoint
resumes into the same groups, no rank waits for a gradient another does not compute). Until a
part unfreezes, the generated LightningModule drops its gradients before each optimizer step (no
update, no weight decay, no optimizer state) and keeps its BatchNorm layers in eval mode; during
its warm-up it steps at a fraction of the scheduled rate, the scheduler's own rate being put back
after each step. All of it is computed from the trainer's epoch and step, never from stored
flags, so every rank agrees and a resumed run continues the schedule.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

from ...pyfmt import Arg, Call, Entry, Expr, Seq, docstring_text, identifier, literal, statement
from ...spec.tuning import Unfreeze
from ..hparams import HParams
from .submodules import no_submodule


@dataclass(frozen=True)
class Schedule:
    """One node's `unfreeze:`, as the spec loaded it (spec/tuning.py parses it once)."""

    node: str
    unfreeze: Unfreeze


def check_parts(node, module) -> None:
    """Every part the node's `unfreeze:` names is a submodule of its module."""
    names = {n for n, _ in module.named_modules() if n} if module is not None else set()
    for part in node.tuning.unfreeze.starts:
        if part not in names:
            raise no_submodule(node, part, names, node.tuning.unfreeze.key_locs[part])


def schedules(shaped) -> list[Schedule]:
    """Every node's `unfreeze:`, in node order."""
    return [
        Schedule(r.spec.id, u) for r in shaped.nodes.values() if (u := r.spec.tuning.unfreeze) is not None
    ]


def header_note(found: list[Schedule]) -> str | None:
    """One line for the file's header: when each part starts training."""
    if not found:
        return None
    parts = ", ".join(
        f"{s.node}.{part} from {s.unfreeze.unit} {start}"
        for s in found
        for part, start in s.unfreeze.starts.items()
    )
    return f"Gradual unfreezing: {parts} (counted as trainable; until then frozen)."


def split_groups(params: Expr) -> Call:
    """What configure_optimizers hands the optimizer: its parameter groups split by part
    (`self.parameters()` being one group)."""
    if params == "self.parameters()":
        params = Seq((Seq((Entry('"params"', Call("list", (Arg(None, params),))),), "{}"),))
    return Call("self.unfreezing_groups", (Arg(None, params),))


def methods(found: list[Schedule], hparams: HParams) -> list[str]:
    """The LightningModule's unfreezing methods (none without a schedule); each start, and each
    node's warm-up, becomes a hyperparameter."""
    if not found:
        return []
    entries: list[Entry] = []
    doc: list[str] = []
    for sched in found:
        plan = sched.unfreeze
        warmup = hparams.add(
            f"unfreeze_{sched.node}_warmup",
            float(plan.warmup) if plan.unit == "epoch" else plan.warmup,
            plan.warmup_loc,
        )
        for part, start in plan.starts.items():
            name = f"unfreeze_{sched.node}_{identifier(part.replace('.', '_'))}"
            expr = hparams.add(name, start, plan.locs[part])
            path = f"{sched.node}.{part}"
            entries.append(Entry(literal(path), Seq((literal(plan.unit), expr, warmup), "()")))
            doc.append(_when(path, plan.unit, start, name, plan.warmup, warmup.removeprefix("self.hparams.")))
    lines = ["", "    def unfreeze_schedule(self) -> dict[str, tuple[str, int, float]]:"]
    lines.append('        """Gradual unfreezing: each part -> (unit, the epoch or step it starts training,')
    lines.append("        its learning-rate warm-up in that unit). By default (hyperparameters set them):")
    lines.append("")
    for text in doc:
        lines += textwrap.wrap(
            docstring_text(text), 88, initial_indent="        - ", subsequent_indent="          "
        )
    lines.append('        """')
    lines += statement("return ", Seq(tuple(entries), "{}"), 2)
    return lines + HOOKS


def _when(path: str, unit: str, start: int, name: str, warmup: float, warmup_name: str) -> str:
    text = f"{path} trains from {unit} {start} (`{name}`)"
    if warmup:
        length = f"{warmup:g} {unit}{'' if warmup == 1 else 's'}"
        text += f", its learning rate rising linearly to the scheduled rate over {length} (`{warmup_name}`)"
    return text + "; frozen until then, its BatchNorm statistics fixed."


# The LightningModule's hooks that apply the schedule (the same for every spec).
HOOKS = '''
    def unfreezing_groups(self, groups: list[dict]) -> list[dict]:
        """The optimizer's parameter groups, each split by the part of the schedule its
        parameters are in (the group's "unfreeze": that part, or None), so each part's rate is
        held at 0, then warmed up, alone. Every group exists from the first step on: a
        checkpoint saved at any epoch resumes into the same groups."""
        part_of = {
            id(param): part
            for part in self.unfreeze_schedule()
            for param in self.model.get_submodule(part).parameters()
        }
        split = []
        for group in groups:
            parts: dict[str | None, list] = {}
            for param in group["params"]:
                parts.setdefault(part_of.get(id(param)), []).append(param)
            split += [{**group, "params": p, "unfreeze": k} for k, p in parts.items()]
        return split

    def unfrozen_fraction(self, part: str, batch_idx: int) -> float:
        """How far `part` is unfrozen at this batch: 0 frozen, 1 training at the scheduled
        rate, in between during its warm-up. It is read from the trainer's epoch and step
        alone, so every DDP rank agrees and a resumed run continues the schedule."""
        unit, start, warmup = self.unfreeze_schedule()[part]
        if unit == "step":
            # steps trained, this one included
            done = self.trainer.global_step - start + 1
        else:
            batches = self.trainer.num_training_batches
            within = (batch_idx + 1) / batches if batches != float("inf") else 1.0
            # epochs trained, this batch included
            done = self.current_epoch - start + within
        if done <= 0:
            return 0.0
        return min(1.0, done / warmup) if warmup > 0 else 1.0

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        # Each part's state for this batch. A part still frozen keeps its BatchNorm layers
        # in eval mode: their running statistics stay fixed.
        self.unfrozen = {}
        for part in self.unfreeze_schedule():
            self.unfrozen[part] = self.unfrozen_fraction(part, batch_idx)
        for part, fraction in self.unfrozen.items():
            for layer in self.model.get_submodule(part).modules():
                if isinstance(layer, nn.modules.batchnorm._BatchNorm):
                    layer.train(fraction > 0)

    def on_before_optimizer_step(self, optimizer) -> None:
        # A part still frozen gets gradients like every other (DDP reduces them), so DDP and
        # the groups never change; they are dropped here: the optimizer skips parameters
        # without one, so it neither moves nor decays them, nor keeps state for them.
        for group in optimizer.param_groups:
            if self.unfrozen.get(group.get("unfreeze"), 1.0) == 0.0:
                for param in group["params"]:
                    param.grad = None

    def optimizer_step(self, epoch, batch_idx, optimizer, closure=None) -> None:
        # Each part steps at its fraction of the scheduled rate; the scheduled rates are put
        # back after the step, so the scheduler never sees the change.
        scheduled = [group["lr"] for group in optimizer.param_groups]
        for group in optimizer.param_groups:
            group["lr"] = group["lr"] * self.unfrozen.get(group.get("unfreeze"), 1.0)
        try:
            super().optimizer_step(epoch, batch_idx, optimizer, closure)
        finally:
            for group, lr in zip(optimizer.param_groups, scheduled, strict=True):
                group["lr"] = lr'''.splitlines()
