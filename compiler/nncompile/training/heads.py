"""One head of a task: its kind's defaults, its target convention (checked at run time by the
generated `_checked_target`), and its loss and metrics, built and run once on dummy tensors at
compile time, so a wrong argument or a loss that does not fit the kind fails at the spec's line.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from ..errors import SpecError, did_you_mean, first_line
from ..ops import TensorInfo
from ..pyfmt import (
    Call,
    identifier,
    literal,
)
from ..spec.model import CallSpec, HeadSpec, MetricSpec
from . import metrics as metric_lib
from .classargs import check_args, rendered_args, runtime_args, suggest
from .hparams import HParams

if TYPE_CHECKING:
    from ..shapes.propagate import Shaped


@dataclass(frozen=True)
class HeadKind:
    title: str  # for the docstring: "multiclass classification"
    default_loss: str
    default_metrics: tuple[str, ...]


HEAD_KINDS = {
    "multiclass": HeadKind("multiclass classification", "CrossEntropyLoss", ("accuracy",)),
    "multilabel": HeadKind("multilabel classification", "BCEWithLogitsLoss", ("accuracy",)),
    "binary": HeadKind("binary classification", "BCEWithLogitsLoss", ("accuracy",)),
    "regression": HeadKind("regression", "MSELoss", ("mae",)),
}


ALIASES = {"classification": "multiclass"}


@dataclass(frozen=True)
class Target:
    """How one head's predictions and target look in the generated training step."""

    suffix: str  # turns the model's return value into the predictions: '["logits"]', '.squeeze(1)'
    shape: str  # the target's required shape, a format string over {preds}
    dtype: str  # the target's dtype after the check, a format string over {preds}
    doc: str  # what the target must hold, for docstrings and the run-time error
    # What the metrics receive, a format string over {preds}: probabilities for classification,
    # since torchmetrics reads float predictions that all fall in [0, 1] as probabilities.
    scores: str = "{preds}"


@dataclass
class HeadIR:
    output: str
    kind: str
    target: Target
    loss: Call
    weight: str | None  # the expression of its weight in a multitask's total loss
    metrics: list[metric_lib.Metric]


def sigmoid_outputs(shaped: Shaped) -> dict[str, object]:
    """The outputs that end in a Sigmoid (probabilities, not logits) -> that node's spec."""
    ends = {}
    for out in shaped.graph.spec.outputs:
        node = shaped.graph.spec.node(out.ref.node) if out.ref.node in shaped.nodes else None
        if node is not None and node.op.removeprefix("torch.").removeprefix("nn.") == "Sigmoid":
            ends[out.name] = node
    return ends


def _check_probabilities(head: HeadSpec, kind: str, output: str, sigmoid) -> None:
    """BCEWithLogitsLoss (the default of binary and multilabel heads) after a Sigmoid applies the
    sigmoid twice: it trains, badly, with no error anywhere."""
    loss = head.loss.name or HEAD_KINDS[kind].default_loss
    if loss == "BCEWithLogitsLoss":
        raise SpecError(
            f"output '{output}' ends in a Sigmoid, and the loss {loss} applies a sigmoid itself"
            + ("" if head.loss.name else f" (the default loss of a {kind} head)")
            + ": training would apply it twice",
            sigmoid.op_loc(),
            node=sigmoid.id,
            hint=f"remove node '{sigmoid.id}' (the loss takes logits), or set `loss: BCELoss` to train on "
            "the probabilities",
        )


def plan_head(
    head: HeadSpec, outputs: dict[str, TensorInfo], sigmoid_outputs: dict, hparams: HParams, multi: bool
) -> HeadIR:
    """One head; its loss settings (and, in a multitask, its weight) become hyperparameters."""
    kind = ALIASES.get(head.kind, head.kind)
    if head.output is None:
        if len(outputs) != 1:
            raise SpecError(
                "the model has several outputs; say which one the task trains",
                head.loc,
                hint="add `output: <name>` (one of: "
                + ", ".join(outputs)
                + "), or use `kind: multitask` to train several",
            )
        output = next(iter(outputs))
    elif head.output not in outputs:
        raise SpecError(
            f"'{head.output}' is not an output of the model",
            head.output_loc,
            hint=did_you_mean(head.output, outputs) or "outputs: " + ", ".join(outputs),
        )
    else:
        output = head.output
    info = outputs[output]
    if info.items is not None:
        raise SpecError(
            f"a {kind} task trains tensors, but '{output}' is a {info.comment()}",
            head.loc,
            hint="a whole detection model is trained by `kind: detection`",
        )
    access = f"[{literal(output)}]" if len(outputs) > 1 else ""
    target, preds, dummy_target = _target(kind, info, output, access, head)
    if output in sigmoid_outputs:  # the losses and metrics are tried on probabilities, in (0, 1)
        _check_probabilities(head, kind, output, sigmoid_outputs[output])
        preds = preds.sigmoid()
    prefix = f"{identifier(output)}_" if multi else ""
    ignore = _ignored_label(head.loss, kind)
    if ignore is not None:  # the loss and the metrics are tried on a target holding it
        dummy_target.view(-1)[-1] = ignore
    loss = build_loss(
        head.loss, HEAD_KINDS[kind].default_loss, preds, dummy_target, output, hparams, prefix + "loss_"
    )
    ignored = None if ignore is None else metric_lib.Ignored(ignore, _arg_code(loss, "ignore_index"))
    weight = hparams.add(f"{prefix}weight", float(head.weight), head.loc) if multi else None
    wanted = head.metrics
    if wanted is None:
        wanted = [MetricSpec(n, CallSpec(n, {}, head.loc)) for n in HEAD_KINDS[kind].default_metrics]
    # the metrics are tried on what the generated step gives them (Target.scores)
    scores = preds.softmax(1) if kind == "multiclass" else preds if kind == "regression" else preds.sigmoid()
    metrics = [metric_lib.resolve(m, kind, scores, dummy_target, ignored) for m in wanted]
    if kind == "regression" and any(m.contiguous for m in metrics):
        target = replace(target, scores="{preds}.contiguous()")
    return HeadIR(output, kind, target, loss, weight, metrics)


def _ignored_label(loss: CallSpec, kind: str) -> int | None:
    """The class index a multiclass head's loss ignores (`ignore_index`), where the spec sets one
    (a value of another type fails the loss's own argument check)."""
    value = loss.args.get("ignore_index") if kind == "multiclass" else None
    return value if isinstance(value, int) else None


def _arg_code(call: Call, name: str) -> str:
    """The code a rendered call passes as its argument `name`."""
    return next(a.value for a in call.args if a.name == name)


def _target(kind: str, info: TensorInfo, output: str, access: str, head: HeadSpec):
    """The head's target convention, plus dummy predictions and target to try losses and metrics on."""
    import torch

    # Seeded: whether a loss accepts the dummies must not depend on the global random state.
    g = torch.Generator().manual_seed(0)
    shape = info.shape
    batch = shape[0]
    found = f"'{output}' is {info.comment()} of {info.dtype}"
    if not info.dtype.startswith(("float", "bfloat")):
        raise SpecError(f"a {kind} head needs floating-point outputs; {found}", head.loc)
    if kind == "multiclass":
        if len(shape) < 2 or shape[1] < 2:
            raise SpecError(
                f"multiclass classification needs an output (B, num_classes, ...); {found}",
                head.loc,
                hint="end the model with a Linear whose out_features is the number of classes",
            )
        rest = shape[:1] + shape[2:]
        target_info = TensorInfo(rest, "int64")
        spec = Target(
            access,
            "{preds}.shape[:1]" if len(shape) == 2 else "{preds}.shape[:1] + {preds}.shape[2:]",
            "torch.long",
            f"class indices {target_info.comment()} of an integer dtype",
            "{preds}.softmax(1)",
        )
        preds = torch.randn(shape, generator=g)
        dummy = torch.randint(0, shape[1], rest, generator=g)
        dummy[0] = shape[1] - 1  # every class index must be valid
    elif kind == "multilabel":
        if len(shape) != 2:
            raise SpecError(
                f"multilabel classification needs an output (B, num_labels); {found}",
                head.loc,
                hint="end the model with a Linear whose out_features is the number of labels",
            )
        spec = Target(
            access, "{preds}.shape", "{preds}.dtype", f"0/1 labels {info.comment()}", "{preds}.sigmoid()"
        )
        preds, dummy = torch.randn(shape, generator=g), torch.randint(0, 2, shape, generator=g).float()
    elif kind == "binary":
        if shape not in ((batch,), (batch, 1)):
            raise SpecError(
                f"binary classification needs an output (B,) or (B, 1) of logits; {found}",
                head.loc,
                hint="end the model with a Linear whose out_features is 1",
            )
        squeezed = access + (".squeeze(1)" if len(shape) == 2 else "")
        spec = Target(squeezed, "{preds}.shape", "{preds}.dtype", "0/1 labels (B,)", "{preds}.sigmoid()")
        preds, dummy = torch.randn(batch, generator=g), torch.randint(0, 2, (batch,), generator=g).float()
        dummy[0], dummy[1] = 0.0, 1.0  # AUROC needs both classes
    else:
        spec = Target(access, "{preds}.shape", "{preds}.dtype", f"values {info.comment()}")
        preds, dummy = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
    if kind != "regression":  # logits: one surely outside [0, 1], which a probability loss refuses
        preds.view(-1)[0] = -1.0
    return spec, preds, dummy


def build_loss(
    call: CallSpec, default: str, preds, target, output: str, hparams: HParams, prefix: str = "loss_"
) -> Call:
    """`nn.<Loss>(...)` after checking its arguments and that it gives one number on this head."""
    import torch

    name = call.name or default
    cls = getattr(torch.nn, name, None)
    if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)):
        choices = [n for n, c in vars(torch.nn).items() if isinstance(c, type) and n.endswith("Loss")]
        raise SpecError(
            f"unknown loss '{name}' (not in torch.nn)",
            call.loc,
            hint=suggest(name, choices) or "for example CrossEntropyLoss, BCEWithLogitsLoss, MSELoss",
        )
    check_args(cls, call, call.args, f"nn.{name}")
    if preds is not None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                value = cls(**runtime_args(cls, call, call.args))(preds, target)
        except Exception as exc:  # the loss does not fit this head: the spec's error
            raise SpecError(
                f"nn.{name} fails on output '{output}' {TensorInfo.of(preds).comment()} with its target: "
                + first_line(exc),
                call.loc,
                hint="check the loss fits the head's kind and its arguments the output's size",
            ) from None
        if not isinstance(value, torch.Tensor) or value.numel() != 1:
            raise SpecError(
                f"nn.{name} does not reduce to one number here",
                call.loc,
                hint="leave `reduction` at its default (mean) or set it to sum",
            )
    return Call(f"nn.{name}", rendered_args(cls, call, call.args, hparams, prefix))
