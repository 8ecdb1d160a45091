"""Optimizers and learning-rate schedulers: any torch.optim class by name, checked and built once at
compile time on a dummy parameter, and rendered as the body of `configure_optimizers`."""

from __future__ import annotations

import inspect
import warnings
from dataclasses import dataclass, field

from ...errors import SpecError, did_you_mean, first_line
from ...pyfmt import Arg, BinOp, Call, Entry, Expr, Seq, literal, signature, statement
from ...runtime import schedules
from ...spec.model import CallSpec, OptimizerSpec, SchedulerSpec
from ..classargs import check_args, rendered_args, runtime_args, suggest
from ..hparams import HParams

COSINE_WITH_WARMUP = "cosine_with_warmup"  # LinearLR warm-up, then CosineAnnealingLR, in SequentialLR
COSINE_WITH_WARMUP_DEFAULTS = {"start_factor": 0.01, "eta_min": 0.0}
# The argument that holds the schedule's length, filled with the trainer's count when not given:
# torch's defaults (`total_iters=5`) know nothing of the run, and would end it at a rate of 0.
TOTAL_ARG = {
    "OneCycleLR": "total_steps",
    "CosineAnnealingLR": "T_max",
    "PolynomialLR": "total_iters",
    "LinearLR": "total_iters",
    "ConstantLR": "total_iters",
}
# Schedules defined over optimizer steps (PolynomialLR: the "poly" schedule of segmentation,
# per iteration as in torchvision's reference).
PER_STEP = ("OneCycleLR", "CyclicLR", "PolynomialLR", COSINE_WITH_WARMUP)
NOT_IN_A_SPEC = ("LambdaLR", "MultiplicativeLR", "SequentialLR", "ChainedScheduler", "LRScheduler")
# What the trainer knows about the run's length, per interval.
TOTAL = {"step": "self.trainer.estimated_stepping_batches", "epoch": "self.trainer.max_epochs"}
EMPTY = "optimizer got an empty parameter list"  # torch.optim.Optimizer's refusal of no parameters
DUMMY_TOTAL = 100  # stands in for the trainer's count when the scheduler is built at compile time
# Schedulers that set the learning rate themselves, and the argument holding their peak: it is each
# parameter group's own rate (the `lr` hyperparameter, and each node's rate), so `XModule(lr=...)`,
# `--model.lr` and Lightning's learning-rate finder change the schedule.
PEAK_ARG = {"OneCycleLR": "max_lr", "CyclicLR": "max_lr"}
GROUP_RATES = '[group["lr"] for group in optimizer.param_groups]'
# The argument holding a schedule's floor. The spec gives the floor at `lr`; each group's floor
# scales with its rate as its peak does (as MAE's and BEiT's layer-wise decay scale theirs), so a
# group whose peak is below the spec's floor is not driven upwards.
FLOOR_ARG = {
    "CyclicLR": "base_lr",
    "CosineAnnealingLR": "eta_min",
    "CosineAnnealingWarmRestarts": "eta_min",
    "ReduceLROnPlateau": "min_lr",
    COSINE_WITH_WARMUP: "eta_min",
}
GROUP_SCALES = '[group["lr"] / self.hparams.lr for group in optimizer.param_groups]'
SCALES_COMMENT = "Each group's floor scales with its rate, as its peak does."
# torch's cosine classes take one floor for every group: the generated file carries forms that
# take one per group (schedules.py).
PER_GROUP_CLASS = {
    "CosineAnnealingLR": schedules.CosineAnnealingPerGroupLR,
    "CosineAnnealingWarmRestarts": schedules.CosineWarmRestartsPerGroup,
}


@dataclass
class OptimizerCode:
    """`configure_optimizers`, with the module-level code it uses."""

    lines: list[str]
    helpers: dict[str, str] = field(default_factory=dict)  # class name -> source
    imports: set[str] = field(default_factory=set)


def spec_schedulers() -> list[str]:
    """Every scheduler name a spec may give: torch.optim.lr_scheduler's classes, but those that take
    functions or other schedulers, and cosine_with_warmup."""
    import torch

    module = torch.optim.lr_scheduler
    names = [
        n
        for n, c in vars(module).items()
        if isinstance(c, type)
        and n[0] != "_"
        and n not in NOT_IN_A_SPEC
        and c.__module__ == module.__name__
        and (issubclass(c, module.LRScheduler) or c is module.ReduceLROnPlateau)
    ]
    return [*names, COSINE_WITH_WARMUP]


def optimizer_call(opt: OptimizerSpec, params: Expr, hparams: HParams, rated: bool = False) -> Call:
    """`torch.optim.<name>(params, lr=self.hparams.lr, ...)`, after building it once; `rated`:
    every parameter group in `params` carries its rate, so the optimizer's own is not given."""
    import torch

    cls = getattr(torch.optim, opt.name, None)
    if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)) or cls is torch.optim.Optimizer:
        choices = [n for n, c in vars(torch.optim).items() if isinstance(c, type) and n != "Optimizer"]
        raise SpecError(
            f"unknown optimizer '{opt.name}' (not in torch.optim)",
            opt.loc,
            hint=suggest(opt.name, choices) or "for example AdamW, SGD or Adam",
        )
    spec = CallSpec(opt.name, opt.args, opt.loc, opt.arg_locs)
    check_args(cls, spec, opt.args, f"torch.optim.{opt.name}", given=("lr",))
    try:
        # Built without parameters: each optimizer checks its values before torch.optim.Optimizer
        # refuses the empty list, whereas adding a parameter group imports torch._dynamo (about 1 s).
        cls([], lr=opt.lr, **runtime_args(cls, spec, opt.args))
    except Exception as exc:  # the library rejects these values: the spec's error
        if not (isinstance(exc, ValueError) and str(exc) == EMPTY):
            raise SpecError(
                f"torch.optim.{opt.name} rejects its arguments: {first_line(exc)}", opt.loc
            ) from None
    leading = (Arg(None, params),) + (() if rated else (Arg("lr", "self.hparams.lr"),))
    return Call(f"torch.optim.{opt.name}", leading + rendered_args(cls, spec, opt.args, hparams))


def splits_weight_decay(opt: OptimizerSpec | None) -> bool:
    """Whether the optimizer's parameter groups each get a no-decay twin (norm layers, biases,
    tokens): it decays weights (the spec sets `weight_decay`, a tunable hyperparameter even at 0,
    or the class's default is not 0, as AdamW's 0.01) and the spec does not say
    `decay_norm_and_bias: true`."""
    if opt is None or opt.decay_norm_and_bias:
        return False
    value, _ = weight_decay(opt)
    return value is not None and ("weight_decay" in opt.args or value not in (0, None))


def weight_decay(opt: OptimizerSpec) -> tuple[float | None, str]:
    """The weight decay the optimizer applies to a group that sets none, and where it comes from:
    the spec's `weight_decay`, or the class's default (None: the optimizer takes no weight decay)."""
    import torch

    cls = getattr(torch.optim, opt.name, None)
    param = inspect.signature(cls).parameters.get("weight_decay") if isinstance(cls, type) else None
    if param is None:
        return None, f"{opt.name} has no weight decay"
    if "weight_decay" in opt.args:
        return opt.args["weight_decay"], "the spec's weight_decay"
    return param.default, f"{opt.name}'s default"


def configure_optimizers(
    opt: OptimizerSpec,
    sched: SchedulerSpec | None,
    params: Expr,
    logged: set[str] | None,
    hparams: HParams,
    rated: bool = False,
) -> OptimizerCode:
    """The whole `configure_optimizers` method. `logged`: the names the module logs (None: unknown),
    which a scheduler's `monitor` must be one of. Tunable arguments are added to `hparams`;
    `rated`: see `optimizer_call`."""
    optimizer = optimizer_call(opt, params, hparams, rated)
    if sched is None:
        return OptimizerCode(
            signature("configure_optimizers", ["self"], "torch.optim.Optimizer", 1)
            + statement("return ", optimizer, 2)
        )
    name = sched.call.name
    interval = sched.interval or ("step" if name in PER_STEP else "epoch")
    code = OptimizerCode(signature("configure_optimizers", ["self"], "dict", 1))
    code.lines += statement("optimizer = ", optimizer, 2)
    if name == COSINE_WITH_WARMUP:
        scaled, body = True, _cosine_with_warmup(sched, interval, opt.lr, hparams, code)
    else:
        scheduler, scaled = _scheduler_call(sched, interval, opt.lr, hparams, code)
        body = statement("scheduler = ", scheduler, 2)
    if scaled:
        code.lines += statement("scales = ", GROUP_SCALES, 2, SCALES_COMMENT)
    code.lines += body
    config = [Entry('"scheduler"', "scheduler"), Entry('"interval"', literal(interval))]
    config.append(Entry('"frequency"', literal(sched.frequency)))
    monitor = sched.monitor or ("val_loss" if name == "ReduceLROnPlateau" else None)
    if monitor is not None:
        if logged is not None and monitor not in logged:
            raise SpecError(
                f"the scheduler monitors '{monitor}', which the module does not log",
                sched.loc,
                hint=did_you_mean(monitor, logged) or "it logs: " + ", ".join(sorted(logged)),
            )
        config.append(Entry('"monitor"', literal(monitor)))
    code.lines += statement("lr_scheduler = ", Seq(tuple(config), "{}"), 2)
    code.lines.append('        return {"optimizer": optimizer, "lr_scheduler": lr_scheduler}')
    return code


def _length(interval: str, frequency: int, code: OptimizerCode) -> Expr:
    """How many times the scheduler steps in the run: the trainer's count of `interval`s, divided by
    `frequency` (rounded up, so the schedule does not end before the run does)."""
    if frequency == 1:
        return TOTAL[interval]
    code.imports.add("import math")
    return Call("math.ceil", (Arg(None, BinOp("/", TOTAL[interval], literal(frequency))),))


def _floor(call: CallSpec, lr: float) -> str | None:
    """The argument holding the schedule's floor when the spec gives one (cosine_with_warmup's
    always: 0 by default). It must be one number, at most `lr`: the floor of a group at `lr`."""
    key = FLOOR_ARG.get(call.name)
    if key is None or (key not in call.args and call.name != COSINE_WITH_WARMUP):
        return None
    value = call.args.get(key, 0.0)
    if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
        raise SpecError(
            f"{call.name}'s `{key}` must be one number >= 0, not {value!r}",
            call.arg_loc(key),
            hint="the floor of a group at the optimizer's `lr`: each group's floor scales with its rate",
        )
    if value > lr:
        raise SpecError(
            f"{call.name}'s `{key}` ({value}) is above the optimizer's `lr` ({lr}): the rate would rise"
            " from its peak to it",
            call.arg_loc(key),
            hint=f"`{key}` is the floor of a group at `lr`: give at most {lr}",
        )
    return key


def _scheduler_call(
    sched: SchedulerSpec, interval: str, lr: float, hparams: HParams, code: OptimizerCode
) -> tuple[Call, bool]:
    """The scheduler's constructor call, and whether it reads each group's `scales` (its floor)."""
    import torch

    call = sched.call

    cls = getattr(torch.optim.lr_scheduler, call.name or "", None)
    if call.name not in spec_schedulers():
        raise SpecError(
            f"'{call.name}' is not a scheduler a spec can name",
            call.loc,
            hint=suggest(str(call.name), spec_schedulers())
            or "one of: " + ", ".join(sorted(spec_schedulers())),
        )
    qualname = f"torch.optim.lr_scheduler.{call.name}"
    total = length_arg(call)
    auto = {}
    if total:
        auto[total] = _length(interval, sched.frequency, code)
    peak = PEAK_ARG.get(call.name)
    if peak in call.args:
        raise SpecError(
            f"{call.name}'s `{peak}` is the optimizer's learning rate: it reads it from the `lr` hyperparameter",
            call.arg_loc(peak),
            hint=f"remove `{peak}` and give the optimizer `lr: {call.args[peak]}`",
        )
    if peak:
        auto[peak] = GROUP_RATES
    check_args(cls, call, call.args, qualname, given=tuple(auto))
    floor = _floor(call, lr)
    dummy = {k: 0.1 if k == peak else DUMMY_TOTAL for k in auto}
    _try(cls, call, {**dummy, **runtime_args(cls, call, call.args)}, qualname)
    auto_args = tuple(Arg(k, v) for k, v in auto.items())
    rendered = rendered_args(cls, call, call.args, hparams, "scheduler_")
    if floor is not None:
        rendered = tuple(Arg(a.name, _per_group(a.value)) if a.name == floor else a for a in rendered)
        if call.name in PER_GROUP_CLASS:
            qualname = _carry(PER_GROUP_CLASS[call.name], code)
    return Call(qualname, (Arg(None, "optimizer"), *auto_args, *rendered)), floor is not None


def length_arg(call: CallSpec) -> str | None:
    """The argument the generated code fills with the run's length; None where the spec sets it
    (OneCycleLR's `epochs` sets it too) or the class has none."""
    total = TOTAL_ARG.get(call.name)
    if total in call.args or (call.name == "OneCycleLR" and "epochs" in call.args):
        return None
    return total


def _per_group(floor: str) -> str:
    """Each group's floor: the spec's (the floor at `lr`) times the group's scale."""
    return f"[{floor} * scale for scale in scales]"


def _carry(cls: type, code: OptimizerCode) -> str:
    """Copy a runtime/schedules class into the generated file; returns its name."""
    code.helpers[cls.__name__] = inspect.getsource(cls)
    code.imports.add("import math")
    return cls.__name__


def _cosine_with_warmup(
    sched: SchedulerSpec, interval: str, lr: float, hparams: HParams, code: OptimizerCode
) -> list[str]:
    """A linear warm-up over `warmup_steps`, then a cosine decay to each group's floor over the rest
    of the run."""
    call = sched.call
    allowed = ("warmup_steps", "start_factor", "eta_min")
    for key in call.args:
        if key not in allowed:
            raise SpecError(
                f"{COSINE_WITH_WARMUP} has no argument '{key}'",
                call.arg_loc(key),
                hint=did_you_mean(key, allowed) or "it takes: " + ", ".join(allowed),
            )
    warmup = call.args.get("warmup_steps")
    if not isinstance(warmup, int) or isinstance(warmup, bool) or warmup < 1:
        raise SpecError(
            f"{COSINE_WITH_WARMUP} needs `warmup_steps:` a positive integer, not {warmup!r}",
            call.arg_loc("warmup_steps"),
            hint=f"the number of {interval}s over which the learning rate rises to `lr`",
        )
    start = call.args.get("start_factor", COSINE_WITH_WARMUP_DEFAULTS["start_factor"])
    if not isinstance(start, int | float) or isinstance(start, bool) or not 0 < start <= 1:
        raise SpecError(f"start_factor must be in (0, 1], not {start!r}", call.arg_loc("start_factor"))
    _floor(call, lr)
    eta_min = call.args.get("eta_min", COSINE_WITH_WARMUP_DEFAULTS["eta_min"])
    module = "torch.optim.lr_scheduler"
    steps = hparams.add("scheduler_warmup_steps", warmup, call.arg_loc("warmup_steps"))
    warmup = "warmup_steps"
    start = hparams.add("scheduler_start_factor", float(start), call.arg_loc("start_factor"))
    eta_min = hparams.add("scheduler_eta_min", float(eta_min), call.arg_loc("eta_min"))
    linear = Call(
        f"{module}.LinearLR",
        (Arg(None, "optimizer"), Arg("start_factor", start), Arg("total_iters", warmup)),
    )
    rest = Call(
        "max", (Arg(None, "1"), Arg(None, BinOp("-", _length(interval, sched.frequency, code), warmup)))
    )
    cosine = Call(
        _carry(schedules.CosineAnnealingPerGroupLR, code),
        (Arg(None, "optimizer"), Arg("T_max", rest), Arg("eta_min", _per_group(eta_min))),
    )
    sequential = Call(
        f"{module}.SequentialLR",
        (
            Arg(None, "optimizer"),
            Arg("schedulers", Seq(("warmup", "cosine"))),
            Arg("milestones", Seq((warmup,))),
        ),
    )
    return (
        statement(f"{warmup} = ", steps, 2)
        + statement("warmup = ", linear, 2)
        + statement("cosine = ", cosine, 2)
        + statement("scheduler = ", sequential, 2)
    )


def _try(cls, call: CallSpec, kwargs: dict, qualname: str) -> None:
    import torch

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cls(optimizer, **kwargs)
    except Exception as exc:  # the library rejects these values: the spec's error
        raise SpecError(f"{qualname} rejects its arguments: {first_line(exc)}", call.loc) from None
