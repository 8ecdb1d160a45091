"""`nncompile plan`: the optimizer's parameter groups as one table, read off a compiled spec.

One row per group that `configure_optimizers` hands the optimizer, in its order: the groups of
`param_groups()` (freezing.py plans them, with their rates, no-decay twins and the part of the
gradual-unfreezing schedule each holds). Per row: the parameters (by node and submodule), their count,
the rate (base x lr_mult x decay^depth) at the start and at each unfreeze boundary, the weight
decay and the rule that set it, the BatchNorm mode, EMA membership and the LoRA adapters whose
parameters it holds.
"""

from __future__ import annotations

import inspect
from dataclasses import asdict, dataclass

from ..training.lightning import untrained_nodes
from ..training.recipes import optim, unfreezing
from ..training.recipes.freezing import parameter_names
from .summary import human, table_lines

# Scheduler arguments that do not shape the schedule.
NOT_SHAPE = ("optimizer", "last_epoch", "verbose")


@dataclass(frozen=True)
class AdapterShare:
    """The layers of one `adapters:` entry whose adapter parameters a group holds."""

    node: str
    adapter: int  # the entry's position in the node's `adapters:`, from 1
    r: int
    alpha: float
    layers: int


@dataclass(frozen=True)
class PlanRow:
    label: str  # what param_groups() calls the group: "resnet depth 5: conv1, bn1", "the rest"
    holds: str  # its parameters by node and submodule: "resnet: layer4, fc"
    members: tuple[str, ...]  # every parameter's name in the model, in the optimizer's order
    params: int
    rate: str  # the rate in param_groups' terms: "lr * lr_decay_resnet**5"
    lr: float
    weight_decay: float | None  # None: the optimizer takes none
    decay_rule: str  # why it is that weight decay
    unfreeze: str | None  # the gradual-unfreezing part it holds ("resnet.layer4"), None: none
    at: tuple[str, ...]  # its rate at each boundary of `TrainingPlan.boundaries`, or "frozen"
    batchnorm: str  # what its BatchNorm layers do: "train", "eval until epoch 2", "-" (none)
    adapters: tuple[AdapterShare, ...]  # the LoRA adapters among its parameters


@dataclass(frozen=True)
class TrainingPlan:
    name: str
    spec_path: str
    optimizer: str  # "AdamW, lr 0.001"
    schedule: str  # the scheduler's shape, "constant" without one
    schedule_args: dict  # every argument that shapes it: the spec's, the class's defaults, the run's
    boundaries: tuple[str, ...]  # "start", then "epoch 2", ... where a part starts training
    rows: tuple[PlanRow, ...]
    frozen: tuple[tuple[str, int], ...]  # (node, parameters without a gradient: never updated)
    ema: str | None  # "decay 0.999: every weight is averaged", None without EMA

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "spec": self.spec_path,
            "optimizer": self.optimizer,
            "schedule": self.schedule,
            "schedule_args": self.schedule_args,
            "boundaries": list(self.boundaries),
            "groups": [asdict(row) for row in self.rows],
            "frozen": dict(self.frozen),
            "ema": self.ema,
        }

    def text(self) -> str:
        header = ("#", "parameters", "count", "rate", *(f"lr @ {b}" for b in self.boundaries))
        header += ("weight decay", "BatchNorm")
        with_adapters = any(row.adapters for row in self.rows)  # a column only for a model with adapters
        header += ("adapters",) if with_adapters else ()
        lines = [
            (
                str(i),
                row.holds,
                f"{row.params:,}",
                row.rate,
                *row.at,
                "-" if row.weight_decay is None else f"{row.weight_decay:g} ({row.decay_rule})",
                row.batchnorm,
                *([adapters_text(row.adapters)] if with_adapters else []),
            )
            for i, row in enumerate(self.rows)
        ]
        frozen = sum(count for _, count in self.frozen)
        out = [
            f"{self.name} (from {self.spec_path}): training plan",
            f"optimizer: {self.optimizer}",
            f"schedule: {self.schedule}",
            f"EMA: {self.ema or 'none'}",
            *table_lines(header, lines, {0, 2}),
        ]
        if frozen:
            nodes = ", ".join(f"{node} {human(count)}" for node, count in self.frozen)
            out.append(f"frozen (no gradient, never updated): {frozen:,} parameters ({nodes})")
        return "\n".join(out) + "\n"


def adapters_text(shares: tuple[AdapterShare, ...]) -> str:
    """`vit: 24 layers (r=8, alpha=16)`: the entries of one node with the same r and alpha as one."""
    layers: dict[tuple[str, int, float], int] = {}
    for share in shares:
        key = share.node, share.r, share.alpha
        layers[key] = layers.get(key, 0) + share.layers
    by_node: dict[str, list[str]] = {}
    for (node, r, alpha), count in layers.items():
        by_node.setdefault(node, []).append(
            f"{count} layer{'' if count == 1 else 's'} (r={r}, alpha={alpha:g})"
        )
    return "; ".join(f"{node}: {', '.join(parts)}" for node, parts in by_node.items()) or "-"


def training_plan(compiled) -> TrainingPlan:
    """The training plan of a `pipeline.Compiled`."""
    spec, shaped, model = compiled.spec, compiled.shaped, compiled.ir.model
    task = spec.task
    names = parameter_names(shaped)
    untrained = {f"{node}." for node in untrained_nodes(shaped)}

    def held(name: str) -> bool:  # frozen by the LightningModule: param_groups() leaves it out
        return any(name.startswith(n) for n in untrained)

    if model.methods:  # param_groups(): its groups keep the parameters that require a gradient
        groups = [
            (g.label, g.rate, g.lr, g.decays, g.unfreeze, tuple(m for m in g.members if not held(m)))
            for g in model.param_groups
        ]
    else:  # self.parameters(): one group of every parameter
        groups = [("every parameter", "lr", task.optimizer.lr, True, None, tuple(names.values()))]
    sizes = {
        names[id(p)]: p.numel()
        for r in shaped.nodes.values()
        if r.built.module is not None
        for p in r.built.module.parameters()
    }
    schedules = unfreezing.schedules(shaped)
    boundaries = _boundaries(schedules)
    default_decay, rule = optim.weight_decay(task.optimizer)
    adapter_of = adapter_parameters(shaped)
    schedule_args = _schedule_args(task.scheduler)
    rows = []
    for label, rate, lr, decays, part, members in groups:
        start = _start(part, schedules)
        rows.append(
            PlanRow(
                label=label,
                holds=_holds(members, shaped),
                members=members,
                params=sum(sizes[m] for m in members),
                rate=rate,
                lr=lr,
                weight_decay=default_decay if decays or default_decay is None else 0.0,
                decay_rule=rule if decays else "norm, bias, token: no decay",
                unfreeze=part,
                at=tuple(_rate_at(lr, start, b) for b in boundaries),
                batchnorm=_batchnorm(members, shaped, start),
                adapters=_adapter_shares(members, adapter_of),
            )
        )
    rows = [row for row in rows if row.members]
    frozen = [(node, count) for node, count in model.frozen_by_node.items() if count]
    return TrainingPlan(
        name=spec.name,
        spec_path=spec.path,
        optimizer=_optimizer_text(task.optimizer),
        schedule=_schedule_text(task.scheduler, schedule_args),
        schedule_args=schedule_args,
        boundaries=boundaries,
        rows=tuple(rows),
        frozen=tuple(frozen),
        ema=f"decay {task.ema.decay:g}: every weight is averaged" if task.ema is not None else None,
    )


def adapter_parameters(shaped) -> dict[str, tuple[str, object, str]]:
    """Each LoRA parameter's name in the model -> (its node, its `adapters:` entry, the adapted
    layer's path in the node: "" the node itself)."""
    out = {}
    for node_id, result in shaped.nodes.items():
        for found in result.built.adapters:
            for path in found.paths:
                layer = f"{node_id}.{path}." if path else f"{node_id}."
                for name in ("lora_A", "lora_B"):
                    out[layer + name] = (node_id, found.adapter, path)
    return out


def _adapter_shares(members: tuple[str, ...], adapter_of: dict) -> tuple[AdapterShare, ...]:
    """The adapted layers among `members`, by `adapters:` entry, in the order they come."""
    layers: dict[tuple[str, int], set[str]] = {}
    entries = {}
    for name in members:
        if name in adapter_of:
            node, adapter, path = adapter_of[name]
            entries[node, adapter.index] = adapter
            layers.setdefault((node, adapter.index), set()).add(path)
    return tuple(
        AdapterShare(node, index, entries[node, index].r, entries[node, index].alpha, len(paths))
        for (node, index), paths in layers.items()
    )


def _boundaries(schedules) -> tuple[str, ...]:
    starts = sorted({(s.unfreeze.unit, start) for s in schedules for start in s.unfreeze.starts.values()})
    return ("start", *(f"{unit} {start}" for unit, start in starts if start > 0))


def _start(part: str | None, schedules) -> tuple[str, int, float] | None:
    """(unit, start, warm-up) of the part, None for parameters outside the schedule."""
    for s in schedules:
        for path, start in s.unfreeze.starts.items():
            if part == f"{s.node}.{path}":
                return s.unfreeze.unit, start, s.unfreeze.warmup
    return None


def _rate_at(lr: float, start, boundary: str) -> str:
    """The group's rate from `boundary` on, before the scheduler's factor: 0 while its part is
    frozen, rising over the warm-up once it trains. A boundary in the other unit (steps against
    epochs) cannot be placed: the part counts as frozen there unless it trains from the start."""
    rate = f"{lr:.4g}"
    if start is None:
        return rate
    unit, begins, warmup = start
    at_unit, _, at = boundary.partition(" ")
    at = int(at) if at_unit == unit else 0  # "start", or a boundary in the other unit
    if at < begins:
        return "frozen"
    length = f"{warmup:g} {unit}{'' if warmup == 1 else 's'}"
    return f"{rate} (warm-up {length})" if warmup and at == begins else rate


def _holds(members: tuple[str, ...], shaped) -> str:
    """The parameters by node and submodule: a whole node by its name, else its first-level
    submodules (and own parameters) the group holds some of."""
    by_node: dict[str, list[str]] = {}
    for name in members:
        node, _, path = name.partition(".")
        by_node.setdefault(node, []).append(path)
    out = []
    for node, paths in by_node.items():
        module = shaped.nodes[node].built.module
        if len(paths) == sum(1 for _ in module.parameters()):
            out.append(node)
            continue
        subs = list(dict.fromkeys(p.split(".")[0] for p in paths))
        shown = ", ".join(subs[:4]) + (f" +{len(subs) - 4}" if len(subs) > 4 else "")
        out.append(f"{node}: {shown}")
    return "; ".join(out)


def _batchnorm(members: tuple[str, ...], shaped, start) -> str:
    """What the BatchNorm layers whose parameters the group holds do in training."""
    import torch.nn as nn  # the meta modules are torch's

    found = set()
    for name in members:
        node, _, path = name.partition(".")
        owner = shaped.nodes[node].built.module.get_submodule(path.rpartition(".")[0])
        if isinstance(owner, nn.modules.batchnorm._BatchNorm):
            found.add(node)
    if not found:
        return "-"
    if start is not None and start[1] > 0:
        return f"eval until {start[0]} {start[1]}"
    if any(shaped.nodes[n].spec.tuning.train_bn for n in found):
        return "affine trains, statistics fixed (train_bn)"
    return "train"


def _optimizer_text(opt) -> str:
    args = "".join(f", {k} {v}" for k, v in opt.args.items())
    return f"{opt.name}, lr {opt.lr:g}{args}"


def _schedule_text(sched, args: dict) -> str:
    if sched is None:
        return "constant (no scheduler)"
    call = sched.call
    interval = sched.interval or ("step" if call.name in optim.PER_STEP else "epoch")
    every = f"per {interval}" if sched.frequency == 1 else f"every {sched.frequency} {interval}s"
    shown = ", ".join(f"{k}={v}" if str(v).startswith("<") else f"{k}={v!r}" for k, v in args.items())
    monitor = f" on {sched.monitor or 'val_loss'}" if call.name == "ReduceLROnPlateau" else ""
    scaled = optim.FLOOR_ARG.get(call.name) in call.args or call.name == optim.COSINE_WITH_WARMUP
    floor = " (each group's floor scaled by its rate)" if scaled else ""
    return f"{call.name}({shown}) {every}{monitor}{floor}, times each rate below"


def _schedule_args(sched) -> dict:
    """The arguments that shape the schedule, in the class's order: the spec's, those the generated
    code fills from the run ("<the run's steps>", "<each group's rate>") and the class's defaults
    (those that are None, left unused, are left out)."""
    if sched is None:
        return {}
    call = sched.call
    interval = sched.interval or ("step" if call.name in optim.PER_STEP else "epoch")
    run = f"<the run's {interval}s{'' if sched.frequency == 1 else f' / {sched.frequency}'}>"
    if call.name == optim.COSINE_WITH_WARMUP:
        return {"warmup_steps": call.args["warmup_steps"], **optim.COSINE_WITH_WARMUP_DEFAULTS, **call.args}
    import torch  # the scheduler's class and its defaults

    cls = getattr(torch.optim.lr_scheduler, call.name)
    auto = {}
    if total := optim.length_arg(call):
        auto[total] = run
    if call.name in optim.PEAK_ARG:
        auto[optim.PEAK_ARG[call.name]] = "<each group's rate>"
    out = {}
    for name, param in inspect.signature(cls).parameters.items():
        if name in NOT_SHAPE:
            continue
        if name in auto or name in call.args:
            out[name] = auto.get(name, call.args.get(name))
        elif param.default not in (None, inspect.Parameter.empty):
            out[name] = param.default
    return out
