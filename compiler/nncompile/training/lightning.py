"""Task kinds: what the generated LightningModule does with the model's outputs.

One table maps each head kind to its default loss and metrics, the shape its output must have,
and the target convention (checked at run time by the generated `_checked_target`). Losses and
metrics are built and run once on dummy tensors at compile time, so a wrong argument, a class
weight of the wrong length or a loss that does not fit the kind fails here, at the spec's line.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from ..errors import SpecError, did_you_mean, first_line
from ..ops import TensorInfo
from ..pyfmt import (
    Arg,
    BinOp,
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
from ..spec.model import CallSpec, HeadSpec, MetricSpec, TaskSpec
from . import metrics as metric_lib
from .classargs import check_args, rendered_args, runtime_args, suggest
from .hparams import HParams
from .recipes import optim, unfreezing
from .recipes.ema import plan_ema
from .untrained import untrained_nodes

if TYPE_CHECKING:
    from ..shapes.propagate import Shaped

STAGES = ("train", "val", "test")
# The expression handed to `configure_optimizers`' optimizer; per-node parameter groups replace it.
ALL_PARAMETERS = "self.parameters()"


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
    sigmoid_outputs = _sigmoid_outputs(shaped)
    hparams = HParams()
    hparams.add("lr", float(task.optimizer.lr), task.optimizer.loc)
    heads = (
        segmentation.heads(task, outputs, hparams)
        if seg
        else [_plan_head(head, outputs, sigmoid_outputs, hparams, multi) for head in task.heads]
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
    logged = None if task.kind == "custom" else _logged_names(heads, multi)
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
        doc_lines=_wrap(docstring_text(doc)),
        custom=task.kind == "custom",
        input_names=literal(tuple(inputs)),
        target_names=literal(tuple(h.output for h in heads)) if multi else None,
        init_signature=signature("__init__", ["self", *hparams.params()], "None", 1),
        init_lines=init_lines,
        forward_signature=signature("forward", params, returns, 1),
        forward_lines=statement("return ", Call("self.model", tuple(Arg(None, n) for n in inputs)), 2),
        step_lines=segmentation.step_lines(heads) if seg else _step_lines(heads, multi),
        predict_returns=f" -> {returns}",
        optimizer_lines=optimizer_lines,
        predict_suffix=heads[0].target.suffix if len(heads) == 1 and len(outputs) == 1 else "",
        epoch_lines=_epoch_lines(heads, multi),
        imports=({"import torchmetrics"} if heads else set()) | recipe_imports,
        recipe_lines=recipe_lines,
        helpers=helpers,
    )


def recipes(task: TaskSpec, shaped: Shaped, model, optimizer_params: Expr, rates, logged, hparams: HParams):
    """configure_optimizers, the hyperparameters after the task's own, the fine-tuning recipes'
    methods (gradual unfreezing, EMA), their imports, and the module-level code they use."""
    schedules = unfreezing.schedules(shaped)
    if schedules:
        optimizer_params = unfreezing.split_groups(optimizer_params)
    code = optim.configure_optimizers(task.optimizer, task.scheduler, optimizer_params, logged, hparams)
    add_model_hparams(hparams, model, rates, task.loc)
    lines = unfreezing.methods(schedules, hparams)
    ema_lines, imports = plan_ema(task.ema, hparams)
    helpers = [line for name in sorted(code.helpers) for line in ["", "", *code.helpers[name].splitlines()]]
    return code.lines, lines + ema_lines, imports | code.imports, helpers


def model_call(model) -> Call:
    """`Model(pretrained=pretrained, <node>_weights=<node>_weights, ...)`: the LightningModule's
    arguments that the model takes."""
    passed = (["pretrained"] if model.pretrained else []) + [name for name, _, _ in model.path_args]
    return Call(model.name, tuple(Arg(n, n) for n in passed))


def add_model_hparams(hparams: HParams, model, rates, loc) -> None:
    """After the task's own: each node's learning rate, `pretrained`, and the weight-file paths."""
    for name, value, rate_loc in rates:
        hparams.add(name, value, rate_loc)
    if model.pretrained:
        hparams.add("pretrained", True, loc)
    for name, code, path_loc in model.path_args:
        hparams.add(name, "", path_loc, code=code)


def _sigmoid_outputs(shaped: Shaped) -> dict[str, object]:
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


def _plan_head(
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
    loss = _loss(
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


def _loss(
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
        loss = _loss(task.loss, "", None, None, "", hparams)
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


PRECISION = (
    "        # Losses and metrics in the module's dtype (float32 under mixed precision),",
    "        # never in the autocast dtype of the outputs.",
)


def _step_lines(heads: list[HeadIR], multi: bool) -> list[str]:
    """The shared train/val/test step: outputs, target checks, losses, and what is logged per step.

    One `self.log` per training step (the step's loss, unsynced: no all-reduce per step); the
    epoch means of the losses and the metrics are updated here and logged once per epoch."""
    if not heads:  # kind: custom
        return []
    if not multi:
        head = heads[0]
        lines = list(PRECISION)
        lines += statement("preds = ", f"self(**inputs){head.target.suffix}.to(self.dtype)", 2)
        lines += statement("target = ", _check_call("target", head.target), 2)
        lines += statement("loss = ", Call("self.loss_fn", (Arg(None, "preds"), Arg(None, "target"))), 2)
        lines += step_loss_lines("preds")
        if head.metrics:
            lines += statement("metrics = ", 'getattr(self, f"{stage}_metrics")', 2)
            lines += update_lines("metrics", head, "preds", "target")
        return lines
    lines = statement("outputs = ", "self(**inputs)", 2) + list(PRECISION)
    for head in heads:
        name = identifier(head.output)
        preds, target = f"preds_{name}", f"target_{name}"
        lines += statement(f"{preds} = ", f"outputs{head.target.suffix}.to(self.dtype)", 2)
        check = _check_call(f"target[{literal(head.output)}]", head.target, preds)
        lines += statement(f"{target} = ", check, 2)
        loss_fn = f"self.loss_fns[{literal(head.output)}]"
        lines += statement(f"loss_{name} = ", Call(loss_fn, (Arg(None, preds), Arg(None, target))), 2)
    total: Expr | None = None
    for head in heads:
        total = _term(head) if total is None else BinOp("+", total, _term(head))
    one_line = statement("loss = ", total, 2)
    if len(one_line) == 1 and len(one_line[0]) <= 88:
        lines += one_line
    else:  # too long for one line: accumulate term by term
        lines += statement("loss = ", _term(heads[0]), 2)
        for head in heads[1:]:
            lines += statement("loss = ", BinOp("+", "loss", _term(head)), 2)
    batch = f"preds_{identifier(heads[0].output)}"
    lines += step_loss_lines(batch)
    for head in heads:
        name = identifier(head.output)
        lines += statement("", mean_update(f'f"{{stage}}_{name}_loss"', f"loss_{name}", batch), 2)
    measured = [h for h in heads if h.metrics]
    if measured:
        lines += statement("metrics = ", 'getattr(self, f"{stage}_metrics")', 2)
    for head in measured:
        name = identifier(head.output)
        lines += update_lines(f"metrics[{literal(head.output)}]", head, f"preds_{name}", f"target_{name}")
    return lines


def step_loss_lines(batch: str) -> list[str]:
    step = (Arg(None, '"train_loss_step"'), Arg(None, "loss"), Arg("prog_bar", "True"))
    return [
        '        if stage == "train":  # every step, this process\'s value: no all-reduce per step',
        *statement("", Call("self.log", step), 3),
        *statement("", mean_update('f"{stage}_loss"', "loss", batch), 2),
    ]


def mean_update(key: str, loss: str, batch: str) -> Call:
    """Add a loss to its epoch mean, once per sample (the mean weighs batches by their size)."""
    return Call(f"self.loss_means[{key}].update", (Arg(None, f"{loss}.detach().expand({batch}.shape[0])"),))


def update_lines(collection: str, head: HeadIR, preds: str, target: str) -> list[str]:
    scores = head.target.scores.format(preds=preds)
    return statement("", Call(f"{collection}.update", (Arg(None, scores), Arg(None, target))), 2)


def _epoch_lines(heads: list[HeadIR], multi: bool) -> list[str]:
    if not any(h.metrics for h in heads):
        return []
    if not multi:
        return statement("", Call("self.log_dict", (Arg(None, 'getattr(self, f"{stage}_metrics")'),)), 2)
    return [
        '        for collection in getattr(self, f"{stage}_metrics").values():',
        "            self.log_dict(collection)",
    ]


def loss_names(heads: list[HeadIR], multi: bool) -> tuple[str, ...]:
    """The losses logged per stage: the total, and each head's in a multitask."""
    if not heads:
        return ()
    return ("loss", *(f"{identifier(h.output)}_loss" for h in heads)) if multi else ("loss",)


def loss_mean_lines(names: tuple[str, ...], stages: tuple[str, ...] = STAGES) -> list[str]:
    """One MeanMetric per logged loss and stage: each syncs across processes once, in compute()."""
    if not names:
        return []
    # nan_strategy="disable": the default checks for NaN with a device-to-host copy every step
    mean = Call("torchmetrics.MeanMetric", (Arg("nan_strategy", literal("disable")),))
    table = Seq(tuple(Entry(literal(f"{stage}_{name}"), mean) for stage in stages for name in names), "{}")
    return [
        "        # Epoch means of the losses, each step's loss added once per sample (so batches",
        "        # weigh by their size); synced across processes once per epoch, in compute().",
        *statement("self.loss_means = ", Call("nn.ModuleDict", (Arg(None, table),)), 2),
    ]


def _term(head: HeadIR) -> Expr:
    loss = f"loss_{identifier(head.output)}"
    return BinOp("*", head.weight, loss)


def _check_call(target: str, spec: Target, preds: str = "preds") -> Call:
    return Call(
        "_checked_target",
        (
            Arg(None, target),
            Arg(None, spec.shape.format(preds=preds)),
            Arg(None, spec.dtype.format(preds=preds)),
            Arg(None, literal(spec.doc)),
        ),
    )


def _logged_names(heads: list[HeadIR], multi: bool) -> set[str]:
    """Every name the module logs (what a scheduler's `monitor` may watch)."""
    names = set()
    for stage in ("train", "val"):
        names.add(f"{stage}_loss")
        for head in heads:
            prefix = f"{stage}_{head.output}_" if multi else f"{stage}_"
            names.update(prefix + m.log_name for m in head.metrics if m.streaming or stage != "train")
            if multi:
                names.add(f"{prefix}loss")
    return names


def _wrap(text: str, width: int = 84) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width, break_on_hyphens=False, break_long_words=False)
