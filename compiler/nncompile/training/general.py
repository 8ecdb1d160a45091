"""What the kinds that train tensors share (every kind but detection): the LightningIR, and its
assembly from a kind's parts: the model call, the frozen untrained nodes, the losses, the
metrics per stage, the epoch means, the example batch and the recipes."""

from __future__ import annotations

from collections.abc import Callable
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
from ..runtime.batches import _checked, _checked_target, _target_dict, _unpacked
from ..spec.model import TaskSpec
from . import metrics as metric_lib
from .configure import DOC_WIDTH, carried, model_call, recipes, wrap
from .heads import HeadIR
from .hparams import HParams
from .steps import STAGES
from .untrained import untrained_nodes

if TYPE_CHECKING:
    from ..shapes.propagate import Shaped


@dataclass
class LightningIR:
    """The LightningModule half of the emit IR: every field is rendered as is."""

    doc_lines: list[str]  # the class docstring: what it trains, and the batches it takes
    custom: bool  # `kind: custom`: the user's subclass writes training_step
    input_names: str
    target_names: str | None  # multitask: the keys of the target dict
    target_doc: str | None  # one head: what its target holds (the run-time check's message)
    init_signature: list[str]
    init_lines: list[str]
    forward_signature: list[str]
    forward_lines: list[str]
    step_lines: list[str]  # the body of _shared_step between unpacking the batch and `return loss`
    predict_returns: str
    predict_lines: list[str]  # the body of predict_step: the predictions training uses
    optimizer_lines: list[str]
    imports: set[str]
    recipe_lines: list[str]  # further methods: gradual unfreezing, the EMA callback
    helpers: list[str]  # module-level code it uses (batch checks, a per-group cosine schedule)
    template: str = "lightning_class.py.jinja"


@dataclass
class Parts:
    """What one kind contributes to its LightningModule."""

    heads: list[HeadIR]
    summary: str
    target_doc: str  # what a batch's target holds, for the docstring
    loss_lines: list[str]
    metric_lines: list[str]
    logged: set[str] | None  # every name logged (what a scheduler may monitor); None: the user's step
    step_lines: list[str]
    target_names: str | None = None
    custom: bool = False


# What a kind plans: its parts from the task, the shaped model, the hyperparameters and the
# model class's name.
PartsOf = Callable[[TaskSpec, "Shaped", HParams, str], Parts]


def plan(
    task: TaskSpec,
    shaped: Shaped,
    model,
    params: list[str],
    returns: str,
    optimizer_params: Expr,
    rates,
    parts_of: PartsOf,
    trained: list[str] | None,
) -> LightningIR:
    """The LightningModule of a kind whose parts `parts_of` plans; `trained`: the outputs it trains."""
    inputs = list(shaped.inputs)
    hparams = HParams()
    hparams.add("lr", float(task.optimizer.lr), task.optimizer.loc)
    parts = parts_of(task, shaped, hparams, model.name)
    heads = parts.heads
    init_lines = (
        statement("self.model = ", model_call(model), 2)
        + _untrained_lines(shaped, heads, trained)
        + parts.loss_lines
        + parts.metric_lines
        + _example_lines(shaped)
    )
    optimizer_lines, recipe_lines, recipe_imports, helpers = recipes(
        task, shaped, model, optimizer_params, rates, parts.logged, hparams
    )
    checks = [_checked, _unpacked] + ([] if parts.custom else [_checked_target])
    checks += [_target_dict] if parts.target_names else []
    unpacked = "self.unpack_batch(batch)" if parts.custom else "_unpacked(batch, self.input_names)"
    suffix = heads[0].target.suffix if len(heads) == 1 and len(shaped.outputs) == 1 else ""
    if len(inputs) == 1 and _one_target(parts):  # `input_names` and `target_doc` say it all
        doc = ""
    elif len(inputs) == 1:
        doc = f" Batches `({inputs[0]}, target)`; target: {parts.target_doc}."
    else:
        target_doc = "see `target_doc`" if _one_target(parts) else parts.target_doc
        keys = ", ".join(inputs)
        doc = f" Batches `(inputs, target)`, inputs a dict with keys {keys}; target: {target_doc}."
    return LightningIR(
        doc_lines=wrap(docstring_text(parts.summary + doc), DOC_WIDTH),
        custom=parts.custom,
        input_names=literal(tuple(inputs)),
        target_names=parts.target_names,
        target_doc=literal(heads[0].target.doc) if _one_target(parts) else None,
        init_signature=signature("__init__", ["self", *hparams.params()], "None", 1),
        init_lines=init_lines,
        forward_signature=signature("forward", params, returns, 1),
        forward_lines=statement("return ", Call("self.model", tuple(Arg(None, n) for n in inputs)), 2),
        step_lines=parts.step_lines,
        predict_returns=f" -> {returns}",
        predict_lines=statement("return ", f"self(**{unpacked}[0]){suffix}", 2),
        optimizer_lines=optimizer_lines,
        imports=({"import torchmetrics"} if any(h.metrics for h in heads) else set()) | recipe_imports,
        recipe_lines=recipe_lines,
        helpers=carried(checks) + helpers,
    )


def _one_target(parts: Parts) -> bool:
    """Whether the target is one tensor, its convention the module's `target_doc`."""
    return bool(parts.heads) and parts.target_names is None


def head_outputs(task: TaskSpec, outputs) -> list[str]:
    """The outputs the task's heads train (a head without `output:` trains the only one)."""
    names = list(outputs)
    return [head.output or names[0] for head in task.heads if (head.output or names[0]) in outputs]


def _untrained_lines(shaped: Shaped, heads: list[HeadIR], trained: list[str] | None) -> list[str]:
    """Freeze the layers that feed only outputs the task does not train: they never get a
    gradient, and DDP fails on trainable parameters without one."""
    untrained = untrained_nodes(shaped, trained)
    if not untrained:
        return []
    refs = {o.name: o.ref.node for o in shaped.graph.spec.outputs}
    others = ", ".join(sorted(set(refs) - {h.output for h in heads}))
    lines = [
        f"        # Not trained by this task (they feed only: {docstring_text(others)}): frozen, so",
        "        # DDP does not wait for their gradients. `kind: multitask` trains every output.",
    ]
    return lines + [f"        self.model.{identifier(node)}.requires_grad_(False)" for node in untrained]


def loss_fn_lines(attr: str, loss: Call) -> list[str]:
    """`<attr> = nn.<Loss>(...)` and its settings' buffers."""
    return statement(f"{attr} = ", loss, 2) + settings_lines(attr, loss)


def settings_lines(attr: str, loss: Call) -> list[str]:
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


def unstreamed_note(names: list[str]) -> list[str]:
    """Training leaves out the metrics whose state keeps every prediction of the epoch (AUROC and
    average precision without `thresholds:`, Spearman, calibration error): validation and test
    compute them, and the training epoch does not hold its predictions in memory."""
    if not names:
        return []
    return ["        # Not in training (their state keeps every prediction of an epoch): " + ", ".join(names)]


# What `__init__` reads after the metrics' locals: a metric logged under one of these names
# gets a longer local name.
READ_AFTER_METRICS = ("self", "metrics", "torch", "torchmetrics", "nn")


def metric_lines(head: HeadIR) -> list[str]:
    """One head's metrics, each built into a local named after it, in a MetricCollection
    cloned once per stage so train/val/test never share state."""
    if not head.metrics:
        return []
    built = {m.log_name: _metric_local(m.log_name) for m in head.metrics}
    lines = []
    for metric in head.metrics:
        lines += statement(f"{built[metric.log_name]} = ", metric.call, 2)
    lines += statement("metrics = ", collection(head.metrics, built), 2)
    for stage in STAGES:
        if stage == "train":
            lines += unstreamed_note([m.log_name for m in head.metrics if not m.streaming])
        lines += statement(f"self.{stage}_metrics = ", stage_metrics(head, stage, "metrics", "", built), 2)
    return lines


def _metric_local(name: str) -> str:
    """The local a metric is built into: its logged name, longer where `__init__` reads that."""
    return identifier(name + ("_metric" if name in READ_AFTER_METRICS else ""))


def collection(metrics: list[metric_lib.Metric], built: dict[str, str] | None = None, *args: Arg) -> Call:
    """A MetricCollection of `metrics`: their calls, or the locals `built` holds them in."""
    table = Seq(
        tuple(Entry(literal(m.log_name), built[m.log_name] if built else m.call) for m in metrics), "{}"
    )
    return Call("torchmetrics.MetricCollection", (Arg(None, table), *args))


def stage_metrics(
    head: HeadIR, stage: str, source: str, prefix: str, built: dict[str, str] | None = None
) -> Call:
    """A stage's clone of the collection `source` (training's without unstreamed metrics, from
    the metrics' calls or the locals `built` holds them in)."""
    arg = Arg("prefix", literal(f"{stage}_{prefix}"))
    if stage == "train" and not all(m.streaming for m in head.metrics):
        return collection([m for m in head.metrics if m.streaming], built, arg)
    return Call(f"{source}.clone", (arg,))


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
