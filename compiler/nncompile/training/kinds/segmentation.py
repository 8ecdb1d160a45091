"""`task: {kind: segmentation}`: per-pixel multiclass classification of the model's `out` logits
(B, C, H, W) against class indices (B, H, W), plus the auxiliary classifier's loss on the same
target weighted by `aux_weight` (torchvision's reference training uses 0.5), as torchvision's
segmentation models return them: `{"out": ..., "aux": ...}`.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from ...errors import SpecError, did_you_mean
from ...ops import TensorInfo
from ...pyfmt import Arg, BinOp, Call, statement
from ...spec.model import CallSpec, MetricSpec, TaskSpec
from .. import general, steps
from ..general import Parts
from ..heads import HeadIR, plan_head
from ..hparams import HParams
from ..steps import PRECISION, check_call, log_metrics, step_loss_lines, update_lines

if TYPE_CHECKING:
    from ...shapes.propagate import Shaped

DEFAULT_METRICS = ("accuracy", "jaccard")  # pixel accuracy and mean IoU
MAIN = "out"  # torchvision's name of the main output, the default where the model has several


def plan(task: TaskSpec, shaped: Shaped, model, params, returns, optimizer_params, rates):
    trained = trained_outputs(task, shaped.outputs)
    return general.plan(task, shaped, model, params, returns, optimizer_params, rates, parts, trained)


def parts(task: TaskSpec, shaped: Shaped, hparams: HParams, model_name: str) -> Parts:
    planned = heads(task, shaped.outputs, hparams)
    main = planned[0]
    return Parts(
        heads=planned,
        summary=summary(model_name, planned),
        target_doc=main.target.doc,
        loss_lines=general.loss_fn_lines("self.loss_fn", main.loss),
        metric_lines=general.metric_lines(main),
        logged=steps.logged_names(main) | logged_names(planned),
        step_lines=step_lines(planned),
    )


def heads(task: TaskSpec, outputs: dict[str, TensorInfo], hparams: HParams) -> list[HeadIR]:
    """The main head and, where the model has an auxiliary output, the aux head: the same loss
    and target, weighted by the hyperparameter `aux_weight`, and no metrics."""
    spec = task.heads[0]
    output = main_output(task, outputs)
    metrics = spec.metrics
    if metrics is None:
        metrics = [MetricSpec(n, CallSpec(n, {}, spec.loc)) for n in DEFAULT_METRICS]
    main = plan_head(
        dataclasses.replace(spec, output=output, kind="multiclass", metrics=metrics),
        outputs,
        {},
        hparams,
        False,
    )
    aux = aux_output(task, outputs, main.output)
    if task.aux is not None and (aux not in outputs or aux == main.output):
        raise SpecError(
            f"'{aux}' is not an auxiliary output of the model",
            task.loc,
            hint=did_you_mean(aux, outputs) or "outputs: " + ", ".join(outputs),
        )
    if aux is None:
        return [main]
    if outputs[aux].shape != outputs[main.output].shape:
        raise SpecError(
            f"the aux output '{aux}' is {outputs[aux].comment()} and '{main.output}' "
            f"{outputs[main.output].comment()}: both losses read the same target",
            task.loc,
            hint="upsample the aux output to the main output's size, as torchvision's models do",
        )
    aux_spec = dataclasses.replace(spec, output=aux, kind="multiclass", metrics=[])
    # Planned only to check that the loss fits the aux output (its hyperparameters dropped):
    # the main head's loss, one module whose settings are one hyperparameter each, serves both.
    aux_head = plan_head(aux_spec, outputs, {}, HParams(), False)
    weight = hparams.add("aux_weight", float(task.aux_weight), task.loc)
    return [main, dataclasses.replace(aux_head, loss=main.loss, weight=weight)]


def main_output(task: TaskSpec, outputs) -> str | None:
    """`output:`, else `out` where the model has several outputs (None: its only one)."""
    output = task.heads[0].output
    if output is None and len(outputs) > 1 and MAIN in outputs:
        return MAIN
    return output


def aux_output(task: TaskSpec, outputs, main: str | None) -> str | None:
    """`aux:`, else the output `aux` where there is one besides the main output."""
    if task.aux is not None:
        return task.aux
    return "aux" if "aux" in outputs and main != "aux" else None


def trained_outputs(task: TaskSpec, outputs) -> list[str]:
    """The outputs the loss reads: the main one and the aux one."""
    main = main_output(task, outputs) or next(iter(outputs))
    return [name for name in (main, aux_output(task, outputs, main)) if name in outputs]


def step_lines(heads: list[HeadIR]) -> list[str]:
    """The shared step: the main loss plus the weighted aux loss, each added to its epoch mean,
    metrics on `out`."""
    main, aux = heads[0], heads[1] if len(heads) > 1 else None
    if aux is None:
        return steps.step_lines(main)
    lines = statement("outputs = ", "self(**inputs)", 2) + list(PRECISION)
    lines += statement("preds = ", f"outputs{main.target.suffix}.to(self.dtype)", 2)
    lines += statement("target = ", check_call("target", main.target, doc="self.target_doc"), 2)
    lines += statement("loss_out = ", Call("self.loss_fn", (Arg(None, "preds"), Arg(None, "target"))), 2)
    aux_preds = Arg(None, f"outputs{aux.target.suffix}.to(self.dtype)")
    lines += statement("loss_aux = ", Call("self.loss_fn", (aux_preds, Arg(None, "target"))), 2)
    lines += statement("loss = ", BinOp("+", "loss_out", BinOp("*", aux.weight, "loss_aux")), 2)
    names = {"loss": "loss", "out_loss": "loss_out", "aux_loss": "loss_aux"}
    lines += step_loss_lines({f'f"{{stage}}_{name}"': loss for name, loss in names.items()})
    if main.metrics:
        lines += statement("metrics = ", 'getattr(self, f"{stage}_metrics")', 2)
        lines += update_lines("metrics", main, "preds", "target")
        lines += log_metrics("metrics")
    return lines


def summary(model_name: str, heads: list[HeadIR]) -> str:
    text = f"Trains {model_name}: per-pixel classes of `{heads[0].output}`"
    if len(heads) > 1:
        return text + f", plus the `{heads[1].output}` loss weighted by `aux_weight`."
    return text + "."


def loss_names(heads: list[HeadIR]) -> tuple[str, ...]:
    """The losses logged per stage: the total and, with an aux output, each part."""
    return ("loss", "out_loss", "aux_loss") if len(heads) > 1 else ("loss",)


def logged_names(heads: list[HeadIR]) -> set[str]:
    return {f"{stage}_{name}" for stage in ("train", "val") for name in loss_names(heads)[1:]}
