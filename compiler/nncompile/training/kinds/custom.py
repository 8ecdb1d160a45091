"""`task: {kind: custom}`: the model wrapped for a training step the user writes in a subclass;
the optional `loss:` becomes `self.loss_fn`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...spec.model import TaskSpec
from .. import general
from ..general import Parts
from ..heads import build_loss
from ..hparams import HParams

if TYPE_CHECKING:
    from ...shapes.propagate import Shaped


def plan(task: TaskSpec, shaped: Shaped, model, params, returns, optimizer_params, rates):
    return general.plan(task, shaped, model, params, returns, optimizer_params, rates, parts, None)


def trained_outputs(task: TaskSpec, outputs) -> None:
    """None: the user's step decides what trains, so no node is frozen as untrained."""
    return None


def parts(task: TaskSpec, shaped: Shaped, hparams: HParams, model_name: str) -> Parts:
    loss_lines = []
    if task.loss:
        loss_lines = general.loss_fn_lines("self.loss_fn", build_loss(task.loss, "", None, None, "", hparams))
    return Parts(
        heads=[],
        summary=f"Wraps {model_name} for a training step you write: subclass it, override training_step.",
        target_doc="whatever your training_step expects",
        loss_lines=loss_lines,
        metric_lines=[],
        logged=None,
        step_lines=[],
        custom=True,
    )
