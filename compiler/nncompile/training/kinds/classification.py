"""`task: {kind: multiclass | multilabel | binary | regression}` (`classification` is multiclass):
one head on one output, its kind's loss and metrics (heads.py holds each kind's defaults and
target convention)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...spec.model import TaskSpec
from .. import general, steps
from ..general import Parts
from ..heads import HEAD_KINDS, plan_head, sigmoid_outputs
from ..hparams import HParams

if TYPE_CHECKING:
    from ...shapes.propagate import Shaped


def plan(task: TaskSpec, shaped: Shaped, model, params, returns, optimizer_params, rates):
    trained = trained_outputs(task, shaped.outputs)
    return general.plan(task, shaped, model, params, returns, optimizer_params, rates, parts, trained)


trained_outputs = general.head_outputs


def parts(task: TaskSpec, shaped: Shaped, hparams: HParams, model_name: str) -> Parts:
    head = plan_head(task.heads[0], shaped.outputs, sigmoid_outputs(shaped), hparams, False)
    return Parts(
        heads=[head],
        summary=f"Trains {model_name}: {HEAD_KINDS[head.kind].title} of `{head.output}`.",
        target_doc=head.target.doc,
        loss_lines=general.loss_fn_lines("self.loss_fn", head.loss),
        metric_lines=general.metric_lines(head),
        logged=steps.logged_names(head),
        step_lines=steps.step_lines(head),
    )
