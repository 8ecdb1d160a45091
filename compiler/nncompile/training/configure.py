"""What every task kind's LightningModule shares: the model call, configure_optimizers with the
fine-tuning recipes' methods, and the hyperparameters after the task's own."""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING

from ..pyfmt import Arg, Call, Expr, Seq, statement, table_statement
from ..spec.model import TaskSpec
from .hparams import HParams
from .recipes import optim, unfreezing
from .recipes.ema import COMMENT, plan_ema

if TYPE_CHECKING:
    from ..shapes.propagate import Shaped


def recipes(task: TaskSpec, shaped: Shaped, model, optimizer_params: Expr, rates, logged, hparams: HParams):
    """configure_optimizers, the hyperparameters after the task's own, the fine-tuning recipes'
    methods (gradual unfreezing, EMA), their imports, and the module-level code they use."""
    schedules = unfreezing.schedules(shaped)
    rated = isinstance(optimizer_params, Call)  # the model's param_groups(): each group has its rate
    code = optim.configure_optimizers(
        task.optimizer, task.scheduler, optimizer_params, logged, hparams, rated
    )
    add_model_hparams(hparams, model, rates, task.loc)
    schedule = unfreezing.schedule_lines(schedules, hparams)
    ema, imports = plan_ema(task.ema, hparams)
    lines = _callbacks_lines(schedule, unfreezing.callback(schedules), ema)
    sources = dict(code.helpers)
    if schedules:
        sources |= unfreezing.carried()
    helpers = [line for name in sorted(sources) for line in ["", "", *sources[name].splitlines()]]
    return code.lines, lines, imports | code.imports, helpers


def _callbacks_lines(schedule: list[str], unfreeze: Call | None, ema: Call | None) -> list[str]:
    """`configure_callbacks`, returning the recipes' callbacks (a plain Trainer gets them);
    `schedule`: the statements that build gradual unfreezing's."""
    if unfreeze is None and ema is None:
        return []
    lines = ["", "    def configure_callbacks(self) -> list[pl.Callback]:", *schedule]
    callbacks = Seq(tuple(c for c in (unfreeze, ema) if c is not None))
    if ema is not None:
        return lines + table_statement("return ", callbacks, 2, COMMENT)
    return lines + statement("return ", callbacks, 2)


def carried(functions: list) -> list[str]:
    """The lines of runtime/ functions and classes the generated file carries, as they are."""
    return [line for function in functions for line in ["", "", *inspect.getsource(function).splitlines()]]


def model_call(model) -> Call:
    """`Model(pretrained=pretrained, <node>_weights=<node>_weights, ...)`: the LightningModule's
    arguments that the model takes."""
    passed = ["pretrained"] if model.pretrained else []
    passed += [name for name, _, _ in model.path_args] + [name for name, _, _ in model.hparams]
    return Call(model.name, tuple(Arg(n, n) for n in passed))


def add_model_hparams(hparams: HParams, model, rates, loc) -> None:
    """After the task's own: each node's learning rate, `pretrained`, the weight-file paths, and
    the model's other arguments (the adapters' r, alpha and dropout)."""
    for name, value, rate_loc in rates:
        hparams.add(name, value, rate_loc)
    if model.pretrained:
        hparams.add("pretrained", True, loc)
    for name, code, path_loc in model.path_args:
        hparams.add(name, "", path_loc, code=code)
    for name, value, arg_loc in model.hparams:
        hparams.add(name, value, arg_loc)


# a class docstring's text: `    """` before its first line and `"""` after its last keep 88 columns
DOC_WIDTH = 81


def wrap(text: str, width: int = 84) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width, break_on_hyphens=False, break_long_words=False)
