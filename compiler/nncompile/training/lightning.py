"""Task kinds: what the generated LightningModule does with the model's outputs.

One table maps each head kind to its default loss and metrics, the shape its output must have,
and the target convention (checked at run time by the generated `_checked_target`). Losses and
metrics are built and run once on dummy tensors at compile time, so a wrong argument, a class
weight of the wrong length or a loss that does not fit the kind fails here, at the spec's line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..pyfmt import (
    Arg,
    Call,
    Entry,
    Expr,
    Seq,
    docstring_text,
    identifier,
    literal,
    signature,
    statement,
)
from ..spec.model import TaskSpec
from . import metrics as metric_lib
from .configure import model_call, recipes, wrap
from .heads import HEAD_KINDS, HeadIR, build_loss, plan_head, sigmoid_outputs
from .hparams import HParams
from .steps import STAGES, epoch_lines, logged_names, loss_mean_lines, loss_names, step_lines
from .untrained import untrained_nodes

if TYPE_CHECKING:
    from ..shapes.propagate import Shaped


# The expression handed to `configure_optimizers`' optimizer; per-node parameter groups replace it.
ALL_PARAMETERS = "self.parameters()"


@dataclass
class LightningIR:
    """The LightningModule half of the emit IR: every field is rendered as is."""

    summary: str  # the class docstring's first line
    doc_lines: list[str]  # the rest of the docstring
    custom: bool  # `kind: custom`: the user's subclass writes training_step
    input_names: str
    target_names: str | None  # multitask: the keys of the target dict
    init_signature: list[str]
    init_lines: list[str]
    forward_signature: list[str]
    forward_lines: list[str]
    step_lines: list[str]  # the body of _shared_step between unpacking the batch and `return loss`
    epoch_lines: list[str]  # the end of _log_epoch: the metrics logged once per epoch
    predict_returns: str
    predict_suffix: str  # applied to the model's return value in predict_step: what training uses
    optimizer_lines: list[str]
    imports: set[str]
    recipe_lines: list[str]  # further methods: gradual unfreezing, the EMA callback
    helpers: list[str]  # module-level code configure_optimizers uses (a per-group cosine schedule)
    template: str = "lightning_class.py.jinja"


def plan_lightning(
    task: TaskSpec,
    shaped: Shaped,
    model,
    params: list[str],
    returns: str,
    optimizer_params: Expr = ALL_PARAMETERS,
    rates: list[tuple[str, float, object]] = (),
) -> LightningIR:
    """The LightningModule half of the emit IR (`model` is the planned nn.Module, a plan.ModelIR).

    `optimizer_params` is what configure_optimizers hands the optimizer: the trainable
    parameters, or per-node parameter groups, when the plan computes them; `rates`: the
    hyperparameters those groups read (name, default, spec location).
    """
    if task.kind == "detection":
        from .kinds.detection import plan_detection

        return plan_detection(task, shaped, model, optimizer_params, rates)
    from .kinds import segmentation as segmentation

    outputs, inputs = shaped.outputs, list(shaped.inputs)
    multi = task.kind == "multitask"
    seg = task.kind == "segmentation"
    sigmoids = sigmoid_outputs(shaped)
    hparams = HParams()
    hparams.add("lr", float(task.optimizer.lr), task.optimizer.loc)
    heads = (
        segmentation.heads(task, outputs, hparams)
        if seg
        else [plan_head(head, outputs, sigmoids, hparams, multi) for head in task.heads]
    )
    build_model = model_call(model)
    init_lines = (
        statement("self.model = ", build_model, 2)
        + _untrained_lines(shaped, heads)
        + _loss_lines(task, heads, hparams)
        + _metric_lines(heads, multi)
        + loss_mean_lines(segmentation.loss_names(heads) if seg else loss_names(heads, multi))
        + _example_lines(shaped)
    )
    logged = None if task.kind == "custom" else logged_names(heads, multi)
    logged = logged | segmentation.logged_names(heads) if seg else logged
    optimizer_lines, recipe_lines, recipe_imports, helpers = recipes(
        task, shaped, model, optimizer_params, rates, logged, hparams
    )
    single = len(inputs) == 1
    inputs_doc = f"the `{inputs[0]}` tensor" if single else "a dict with keys " + ", ".join(inputs)
    if task.kind == "custom":
        summary = f"Wraps {model.name} for a training step you write: subclass it, override training_step."
        target_doc = "whatever your training_step expects"
    elif multi:
        summary = f"Trains {model.name}: a weighted sum of per-output losses."
        target_doc = "a dict: " + "; ".join(f"{h.output}: {h.target.doc}" for h in heads)
    elif seg:
        summary = segmentation.summary(model.name, heads)
        target_doc = heads[0].target.doc
    else:
        summary = f"Trains {model.name}: {HEAD_KINDS[heads[0].kind].title} of its `{heads[0].output}` output."
        target_doc = heads[0].target.doc
    doc = f"Batches are `(inputs, target)`: inputs is {inputs_doc}; target is {target_doc}."
    return LightningIR(
        summary=summary,
        doc_lines=wrap(docstring_text(doc)),
        custom=task.kind == "custom",
        input_names=literal(tuple(inputs)),
        target_names=literal(tuple(h.output for h in heads)) if multi else None,
        init_signature=signature("__init__", ["self", *hparams.params()], "None", 1),
        init_lines=init_lines,
        forward_signature=signature("forward", params, returns, 1),
        forward_lines=statement("return ", Call("self.model", tuple(Arg(None, n) for n in inputs)), 2),
        step_lines=segmentation.step_lines(heads) if seg else step_lines(heads, multi),
        predict_returns=f" -> {returns}",
        optimizer_lines=optimizer_lines,
        predict_suffix=heads[0].target.suffix if len(heads) == 1 and len(outputs) == 1 else "",
        epoch_lines=epoch_lines(heads, multi),
        imports=({"import torchmetrics"} if heads else set()) | recipe_imports,
        recipe_lines=recipe_lines,
        helpers=helpers,
    )


def _untrained_lines(shaped: Shaped, heads: list[HeadIR]) -> list[str]:
    """Freeze the layers that feed only outputs the task does not train: they never get a
    gradient, and DDP fails on trainable parameters without one."""
    untrained = untrained_nodes(shaped)
    if not untrained:
        return []
    refs = {o.name: o.ref.node for o in shaped.graph.spec.outputs}
    others = ", ".join(sorted(set(refs) - {h.output for h in heads}))
    lines = [
        f"        # Not trained by this task (they feed only: {docstring_text(others)}): frozen, so",
        "        # DDP does not wait for their gradients. `kind: multitask` trains every output.",
    ]
    return lines + [f"        self.model.{identifier(node)}.requires_grad_(False)" for node in untrained]


def _loss_lines(task: TaskSpec, heads: list[HeadIR], hparams: HParams) -> list[str]:
    if task.kind == "custom":
        if not task.loss:
            return []
        loss = build_loss(task.loss, "", None, None, "", hparams)
        return statement("self.loss_fn = ", loss, 2) + _settings_lines("self.loss_fn", loss)
    if task.kind != "multitask":
        return statement("self.loss_fn = ", heads[0].loss, 2) + _settings_lines("self.loss_fn", heads[0].loss)
    table = Seq(tuple(Entry(literal(h.output), h.loss) for h in heads), "{}")
    lines = statement("self.loss_fns = ", Call("nn.ModuleDict", (Arg(None, table),)), 2)
    for head in heads:
        lines += _settings_lines(f"self.loss_fns[{literal(head.output)}]", head.loss)
    return lines


def _settings_lines(attr: str, loss: Call) -> list[str]:
    """A loss registers its tensor settings (class weights, pos_weight) as buffers: made
    non-persistent, they come from the hyperparameters, never from a checkpoint's state dict
    (which would restore old values, or fail a strict load once the spec drops them)."""
    tensors = [a.name for a in loss.args if isinstance(a.value, Call) and a.value.func == "torch.tensor"]
    lines = []
    for i, name in enumerate(tensors):
        buffer = Call(
            f"{attr}.register_buffer",
            (Arg(None, literal(name)), Arg(None, f"{attr}.{name}"), Arg("persistent", "False")),
        )
        comment = "settings from the hyperparameters, not from checkpoints" if i == 0 else None
        lines += statement("", buffer, 2, comment)
    return lines


def _metric_lines(heads: list[HeadIR], multi: bool) -> list[str]:
    """A MetricCollection per head, cloned once per stage so train/val/test never share state.

    Training leaves out the metrics whose state keeps every prediction of the epoch (AUROC and
    average precision without `thresholds:`, Spearman, calibration error): validation and test
    compute them, and the training epoch does not hold its predictions in memory.
    """
    lines: list[str] = []
    measured = [h for h in heads if h.metrics]
    for head in measured:
        name = f"{identifier(head.output)}_metrics" if multi else "metrics"
        lines += statement(f"{name} = ", _collection(head.metrics), 2)
    if not measured:
        return lines
    unstreamed = [f"{_prefix(h, multi)}{m.log_name}" for h in measured for m in h.metrics if not m.streaming]
    for stage in STAGES:
        if stage == "train" and unstreamed:
            lines.append(
                "        # Not in training (their state keeps every prediction of an epoch): "
                + ", ".join(unstreamed)
            )
        if multi:
            clones = Seq(
                tuple(Entry(literal(h.output), _stage_metrics(h, stage, multi)) for h in measured), "{}"
            )
            lines += statement(f"self.{stage}_metrics = ", Call("nn.ModuleDict", (Arg(None, clones),)), 2)
        else:
            lines += statement(f"self.{stage}_metrics = ", _stage_metrics(measured[0], stage, multi), 2)
    return lines


def _collection(metrics: list[metric_lib.Metric], *args: Arg) -> Call:
    table = Seq(tuple(Entry(literal(m.log_name), m.call) for m in metrics), "{}")
    return Call("torchmetrics.MetricCollection", (Arg(None, table), *args))


def _prefix(head: HeadIR, multi: bool) -> str:
    return f"{head.output}_" if multi else ""


def _stage_metrics(head: HeadIR, stage: str, multi: bool) -> Call:
    prefix = Arg("prefix", literal(f"{stage}_{_prefix(head, multi)}"))
    if stage == "train" and not all(m.streaming for m in head.metrics):
        return _collection([m for m in head.metrics if m.streaming], prefix)
    return Call(f"{identifier(head.output)}_metrics.clone" if multi else "metrics.clone", (prefix,))


def _example_lines(shaped: Shaped) -> list[str]:
    """An example batch of 2 at the spec's shapes: Lightning's model summary then shows each
    layer's input and output sizes (a dict is passed to forward as keyword arguments)."""
    tensors = {
        name: Call(
            "torch.zeros",
            tuple(Arg(None, str(d)) for d in (2, *info.shape[1:]))
            + (() if info.dtype == "float32" else (Arg("dtype", f"torch.{info.dtype}"),)),
        )
        for name, info in shaped.inputs.items()
    }
    if len(tensors) == 1:
        return statement("self.example_input_array = ", next(iter(tensors.values())), 2)
    table = Seq(tuple(Entry(literal(n), t) for n, t in tensors.items()), "{}")
    return statement("self.example_input_array = ", table, 2)
