"""Task kinds: what the generated LightningModule does with the model's output.

One table maps each kind to its default loss, its metrics and the target convention; planning
reads it to fill the training half of the emit IR.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

from .errors import SpecError, did_you_mean
from .ops import TensorInfo
from .pyfmt import Arg, Call, Entry, Seq, UnsafeValue, literal, signature, statement
from .spec import TaskSpec


@dataclass(frozen=True)
class TaskKind:
    default_loss: str
    target: str  # documented target convention, shown in the generated docstring


TASK_KINDS = {
    "classification": TaskKind("CrossEntropyLoss", "class indices (B,) of dtype long"),
    "regression": TaskKind("MSELoss", "float targets shaped like the output"),
}


@dataclass
class TrainingIR:
    """The training half of the generated file, ready to render."""

    kind: str
    target: str
    output_name: str
    output_access: str  # '' for a single-output model, '["name"]' for a dict of outputs
    loss: Call
    metrics: list[tuple[str, Call]]
    optimizer: Call
    lr: str


def plan_training(
    task: TaskSpec, outputs: dict[str, TensorInfo], params: str = "self.parameters()"
) -> TrainingIR:
    kind = TASK_KINDS[task.kind]
    if task.output is None:
        if len(outputs) != 1:
            raise SpecError(
                "the model has several outputs; say which one the task trains",
                task.loc,
                hint="add `output: <name>` to the task, one of: " + ", ".join(outputs),
            )
        output_name = next(iter(outputs))
    elif task.output not in outputs:
        raise SpecError(
            f"task output '{task.output}' is not an output of the model",
            task.loc,
            hint=did_you_mean(task.output, outputs) or "outputs: " + ", ".join(outputs),
        )
    else:
        output_name = task.output
    info = outputs[output_name]
    metrics = []
    if task.kind == "classification":
        if len(info.shape) != 2 or info.shape[1] < 2:
            raise SpecError(
                f"classification needs an output (B, num_classes), '{output_name}' is {info.comment()}",
                task.loc,
                hint="end the model with a Linear whose out_features is the number of classes",
            )
        metrics.append(
            (
                "acc",
                Call(
                    "torchmetrics.Accuracy",
                    (Arg("task", '"multiclass"'), Arg("num_classes", str(info.shape[1]))),
                ),
            )
        )
    else:
        metrics.append(("mae", Call("torchmetrics.MeanAbsoluteError")))
    loss_name = task.loss.name or kind.default_loss
    loss = _class_call("nn", loss_name, task.loss.args, task.loss.loc, "loss", lambda n: n.endswith("Loss"))
    optimizer = _class_call(
        "torch.optim",
        task.optimizer.name,
        task.optimizer.args,
        task.optimizer.loc,
        "optimizer",
        lambda n: n[0].isupper() and n != "Optimizer",
        leading=(Arg(None, params), Arg("lr", "self.hparams.lr")),
    )
    if (
        not isinstance(task.optimizer.lr, int | float)
        or isinstance(task.optimizer.lr, bool)
        or task.optimizer.lr <= 0
    ):
        raise SpecError(f"learning rate {task.optimizer.lr!r} must be a positive number", task.optimizer.loc)
    return TrainingIR(
        task.kind,
        kind.target,
        output_name,
        "" if len(outputs) == 1 else f"[{literal(output_name)}]",
        loss,
        metrics,
        optimizer,
        literal(float(task.optimizer.lr)),
    )


@dataclass
class LightningIR:
    kind: str
    output_name: str
    output_access: str
    target: str
    inputs_doc: str
    input_names: str
    init_signature: list[str]
    init_lines: list[str]
    forward_signature: list[str]
    forward_lines: list[str]
    predict_returns: str
    optimizer_lines: list[str]


def plan_lightning(
    task_spec: TaskSpec,
    outputs: dict[str, TensorInfo],
    model,
    inputs: list[str],
    params: list[str],
    returns: str,
) -> LightningIR:
    """The LightningModule half of the emit IR (`model` is the planned nn.Module, a plan.ModelIR)."""
    task = plan_training(task_spec, outputs, model.optimizer_params)
    hparams = [f"lr: float = {task.lr}"] + (["pretrained: bool = True"] if model.pretrained else [])
    metrics = Seq(tuple(Entry(literal(name), call) for name, call in task.metrics), "{}")
    init_lines = (
        statement(
            "self.model = ",
            Call(model.name, (Arg("pretrained", "pretrained"),) if model.pretrained else ()),
            2,
        )
        + statement("self.loss_fn = ", task.loss, 2)
        + statement("metrics = ", Call("torchmetrics.MetricCollection", (Arg(None, metrics),)), 2)
    )
    call = Call("self.model", tuple(Arg(None, name) for name in inputs))
    single = len(inputs) == 1
    return LightningIR(
        kind=task.kind,
        output_name=task.output_name,
        output_access=task.output_access,
        target=task.target,
        inputs_doc=f"the `{inputs[0]}` tensor" if single else "a dict with keys " + ", ".join(inputs),
        input_names=literal(tuple(inputs)),
        init_signature=signature("__init__", ["self", *hparams], "None", 1),
        init_lines=init_lines,
        forward_signature=signature("forward", params, returns, 1),
        forward_lines=statement("return ", call, 2),
        predict_returns=f" -> {returns}",
        optimizer_lines=signature("configure_optimizers", ["self"], "torch.optim.Optimizer", 1)
        + statement("return ", task.optimizer, 2),
    )


def _class_call(module: str, name: str, args: dict, loc, what: str, is_candidate, leading=()) -> Call:
    """`<module>.<name>(**args)` after checking the class exists and takes those arguments."""
    import importlib

    namespace = importlib.import_module(module.replace("nn", "torch.nn") if module == "nn" else module)
    cls = getattr(namespace, name, None)
    if not isinstance(cls, type):
        choices = [n for n, c in vars(namespace).items() if isinstance(c, type) and is_candidate(n)]
        raise SpecError(
            f"unknown {what} '{name}' (not in {module})",
            loc,
            hint=did_you_mean(name, choices) or f"use a class from {module}",
        )
    accepted = inspect.signature(cls.__init__).parameters
    call_args = list(leading)
    for key, value in args.items():
        if key not in accepted or key in ("self", "params"):
            raise SpecError(
                f"{module}.{name} has no argument '{key}'",
                loc,
                hint=did_you_mean(key, accepted)
                or "it takes: " + ", ".join(k for k in accepted if k not in ("self", "params")),
            )
        try:
            call_args.append(Arg(key, literal(value)))
        except UnsafeValue as exc:
            raise SpecError(f"{what} argument '{key}': {exc}", loc) from None
    return Call(f"{module}.{name}", tuple(call_args))
