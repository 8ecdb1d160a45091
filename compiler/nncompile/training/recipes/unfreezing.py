"""Gradual unfreezing (`unfreeze:` on a node): parts of a node that start training at an epoch
(or an optimizer step), each with an optional learning-rate warm-up.

The node is frozen but for its listed parts (freezing.py freezes the rest for good, and keeps a
replaced head trainable). The generated LightningModule's configure_callbacks builds the
schedule from its hyperparameters and returns the callback that applies it
(runtime/unfreezing.py, copied into the file): the parts keep `requires_grad=True` from the
start, so DDP's reducer and the optimizer's groups never change; until a part unfreezes its
gradients are dropped before each optimizer step and its BatchNorm layers stay in eval mode;
during its warm-up it steps at a fraction of the scheduled rate. All of it is computed from the
trainer's epoch and step, so every rank agrees and a resumed run continues the schedule.
param_groups() gives each part groups of its own (freezing.py plans them); on a node with LoRA
adapters the parts are its base weights: the adapters train from the start, kept out of every
part's groups.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

from ...pyfmt import Arg, Call, Entry, Seq, identifier, literal, statement, table_statement
from ...spec.tuning import Unfreeze
from ..hparams import HParams
from .submodules import nameable, no_submodule


@dataclass(frozen=True)
class Schedule:
    """One node's `unfreeze:`, as the spec loaded it (spec/tuning.py parses it once)."""

    node: str
    unfreeze: Unfreeze


def check_parts(node, module) -> None:
    """Every part the node's `unfreeze:` names is a submodule of its module (not of its adapters)."""
    names = nameable(module, parameters=False) if module is not None else set()
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


def schedule_lines(found: list[Schedule], hparams: HParams) -> list[str]:
    """The statements of configure_callbacks that build the callback's `schedule` (none without
    one): each start, and each node's warm-up (a local `warmup`, `warmup_<node>` for several
    nodes), is a hyperparameter."""
    if not found:
        return []
    lines: list[str] = []
    entries: list[Entry] = []
    for sched in found:
        plan = sched.unfreeze
        warmup = "warmup" if len(found) == 1 else f"warmup_{sched.node}"
        value = float(plan.warmup) if plan.unit == "epoch" else plan.warmup
        expr = hparams.add(f"unfreeze_{sched.node}_warmup", value, plan.warmup_loc)
        lines += statement(f"{warmup} = ", expr, 2)
        for part, start in plan.starts.items():
            name = f"unfreeze_{sched.node}_{identifier(part.replace('.', '_'))}"
            expr = hparams.add(name, start, plan.locs[part])
            entries.append(
                Entry(literal(f"{sched.node}.{part}"), Seq((literal(plan.unit), expr, warmup), "()"))
            )
    comment = "gradual unfreezing: part -> (unit, its start, its warm-up)"
    return lines + table_statement("schedule = ", Seq(tuple(entries), "{}"), 2, comment)


def callback(found: list[Schedule]) -> Call | None:
    """The callback that applies the schedule (runtime/unfreezing.py), where there is one."""
    return Call("GradualUnfreezing", (Arg(None, "schedule"),)) if found else None


def carried() -> dict[str, str]:
    """The source the generated file carries for a schedule: the callback."""
    from ...runtime.unfreezing import GradualUnfreezing  # imports pytorch_lightning: only to unfreeze

    return {"GradualUnfreezing": inspect.getsource(GradualUnfreezing)}
