"""Optimizers and learning-rate schedulers: any torch.optim class by name, checked and built once at
compile time on a dummy parameter, and rendered as the body of `configure_optimizers`."""

from __future__ import annotations

import warnings

from ...errors import SpecError, did_you_mean, first_line
from ...pyfmt import Arg, BinOp, Call, Entry, Expr, Seq, literal, signature, statement
from ...spec.model import CallSpec, OptimizerSpec, SchedulerSpec
from ..classargs import check_args, rendered_args, runtime_args, suggest
from ..hparams import HParams

COSINE_WITH_WARMUP = "cosine_with_warmup"  # LinearLR warm-up, then CosineAnnealingLR, in SequentialLR
# The argument that holds the schedule's length, filled with the trainer's count when not given.
TOTAL_ARG = {"OneCycleLR": "total_steps", "CosineAnnealingLR": "T_max"}
PER_STEP = ("OneCycleLR", "CyclicLR", COSINE_WITH_WARMUP)  # schedules defined over optimizer steps
NOT_IN_A_SPEC = ("LambdaLR", "MultiplicativeLR", "SequentialLR", "ChainedScheduler", "LRScheduler")
# What the trainer knows about the run's length, per interval.
TOTAL = {"step": "self.trainer.estimated_stepping_batches", "epoch": "self.trainer.max_epochs"}
DUMMY_TOTAL = 100  # stands in for the trainer's count when the scheduler is built at compile time
# Schedulers that set the learning rate themselves, and the argument holding their peak: it is each
# parameter group's own rate (the `lr` hyperparameter, and each node's rate), so `XModule(lr=...)`,
# `--model.lr` and Lightning's learning-rate finder change the schedule.
PEAK_ARG = {"OneCycleLR": "max_lr", "CyclicLR": "max_lr"}
GROUP_RATES = '[group["lr"] for group in optimizer.param_groups]'


def optimizer_call(opt: OptimizerSpec, params: Expr, hparams: HParams) -> Call:
    """`torch.optim.<name>(params, lr=self.hparams.lr, ...)`, after building it once."""
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
        cls([torch.nn.Parameter(torch.zeros(1))], lr=opt.lr, **runtime_args(cls, spec, opt.args))
    except Exception as exc:  # the library rejects these values: the spec's error
        raise SpecError(f"torch.optim.{opt.name} rejects its arguments: {first_line(exc)}", opt.loc) from None
    leading = (Arg(None, params), Arg("lr", "self.hparams.lr"))
    return Call(f"torch.optim.{opt.name}", leading + rendered_args(cls, spec, opt.args, hparams))


def splits_weight_decay(opt: OptimizerSpec | None) -> bool:
    """Whether the optimizer's parameter groups each get a no-decay twin (norm layers, biases,
    tokens): it decays weights (the spec sets `weight_decay`, a tunable hyperparameter even at 0,
    or the class's default is not 0, as AdamW's 0.01) and the spec does not say
    `decay_norm_and_bias: true`."""
    import inspect

    import torch

    cls = getattr(torch.optim, opt.name, None) if opt is not None else None
    if opt is None or opt.decay_norm_and_bias or not isinstance(cls, type):
        return False
    param = inspect.signature(cls).parameters.get("weight_decay")
    return param is not None and ("weight_decay" in opt.args or param.default not in (0, None))


def configure_optimizers(
    opt: OptimizerSpec, sched: SchedulerSpec | None, params: Expr, logged: set[str] | None, hparams: HParams
) -> list[str]:
    """The whole `configure_optimizers` method. `logged`: the names the module logs (None: unknown),
    which a scheduler's `monitor` must be one of. Tunable arguments are added to `hparams`."""
    optimizer = optimizer_call(opt, params, hparams)
    if sched is None:
        return signature("configure_optimizers", ["self"], "torch.optim.Optimizer", 1) + statement(
            "return ", optimizer, 2
        )
    name = sched.call.name
    interval = sched.interval or ("step" if name in PER_STEP else "epoch")
    lines = signature("configure_optimizers", ["self"], "dict", 1) + statement("optimizer = ", optimizer, 2)
    if name == COSINE_WITH_WARMUP:
        lines += _cosine_with_warmup(sched.call, interval, hparams)
    else:
        lines += statement("scheduler = ", _scheduler_call(sched.call, interval, hparams), 2)
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
    lines += statement("lr_scheduler = ", Seq(tuple(config), "{}"), 2)
    return lines + ['        return {"optimizer": optimizer, "lr_scheduler": lr_scheduler}']


def _scheduler_call(call: CallSpec, interval: str, hparams: HParams) -> Call:
    import torch

    module = torch.optim.lr_scheduler
    cls = getattr(module, call.name or "", None)
    if call.name in NOT_IN_A_SPEC or not (
        isinstance(cls, type) and (issubclass(cls, module.LRScheduler) or cls is module.ReduceLROnPlateau)
    ):
        choices = [
            n
            for n, c in vars(module).items()
            if isinstance(c, type)
            and n[0] != "_"
            and n not in NOT_IN_A_SPEC
            and c.__module__ == module.__name__
        ]
        raise SpecError(
            f"'{call.name}' is not a scheduler a spec can name",
            call.loc,
            hint=suggest(str(call.name), [*choices, COSINE_WITH_WARMUP])
            or "one of: " + ", ".join(sorted([*choices, COSINE_WITH_WARMUP])),
        )
    qualname = f"torch.optim.lr_scheduler.{call.name}"
    total = TOTAL_ARG.get(call.name)
    auto = {}
    if total and total not in call.args and not (call.name == "OneCycleLR" and "epochs" in call.args):
        auto[total] = TOTAL[interval]
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
    dummy = {k: 0.1 if k == peak else DUMMY_TOTAL for k in auto}
    _try(cls, call, {**dummy, **runtime_args(cls, call, call.args)}, qualname)
    auto_args = tuple(Arg(k, v) for k, v in auto.items())
    rendered = rendered_args(cls, call, call.args, hparams, "scheduler_")
    return Call(qualname, (Arg(None, "optimizer"), *auto_args, *rendered))


def _cosine_with_warmup(call: CallSpec, interval: str, hparams: HParams) -> list[str]:
    """A linear warm-up over `warmup_steps`, then a cosine decay over the rest of the run."""
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
    start = call.args.get("start_factor", 0.01)
    eta_min = call.args.get("eta_min", 0.0)
    if not isinstance(start, int | float) or isinstance(start, bool) or not 0 < start <= 1:
        raise SpecError(f"start_factor must be in (0, 1], not {start!r}", call.arg_loc("start_factor"))
    if not isinstance(eta_min, int | float) or isinstance(eta_min, bool) or eta_min < 0:
        raise SpecError(f"eta_min must be a number >= 0, not {eta_min!r}", call.arg_loc("eta_min"))
    module = "torch.optim.lr_scheduler"
    steps = hparams.add("scheduler_warmup_steps", warmup, call.arg_loc("warmup_steps"))
    warmup = "warmup_steps"
    start = hparams.add("scheduler_start_factor", float(start), call.arg_loc("start_factor"))
    eta_min = hparams.add("scheduler_eta_min", float(eta_min), call.arg_loc("eta_min"))
    linear = Call(
        f"{module}.LinearLR",
        (Arg(None, "optimizer"), Arg("start_factor", start), Arg("total_iters", warmup)),
    )
    rest = Call("max", (Arg(None, "1"), Arg(None, BinOp("-", TOTAL[interval], warmup))))
    cosine = Call(
        f"{module}.CosineAnnealingLR",
        (Arg(None, "optimizer"), Arg("T_max", rest), Arg("eta_min", eta_min)),
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
