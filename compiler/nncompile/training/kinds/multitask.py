"""`task: {kind: multitask}`: one head per output (its own kind, loss, weight and metrics), trained
on a weighted sum of the heads' losses; the target is a dict with one entry per head."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...pyfmt import Arg, BinOp, Call, Entry, Expr, Seq, identifier, literal, statement
from ...spec.model import TaskSpec
from .. import general
from ..general import Parts
from ..heads import HeadIR, plan_head, sigmoid_outputs
from ..hparams import HParams
from ..steps import PRECISION, STAGES, check_call, log_metrics, step_loss_lines, update_lines

if TYPE_CHECKING:
    from ...shapes.propagate import Shaped


def plan(task: TaskSpec, shaped: Shaped, model, params, returns, optimizer_params, rates):
    trained = trained_outputs(task, shaped.outputs)
    return general.plan(task, shaped, model, params, returns, optimizer_params, rates, parts, trained)


trained_outputs = general.head_outputs


def parts(task: TaskSpec, shaped: Shaped, hparams: HParams, model_name: str) -> Parts:
    sigmoids = sigmoid_outputs(shaped)
    heads = [plan_head(head, shaped.outputs, sigmoids, hparams, True) for head in task.heads]
    return Parts(
        heads=heads,
        summary=f"Trains {model_name}: a weighted sum of per-output losses.",
        target_doc="a dict: " + "; ".join(f"{h.output}: {h.target.doc}" for h in heads),
        loss_lines=_loss_lines(heads),
        metric_lines=_metric_lines(heads),
        logged=_logged_names(heads),
        step_lines=_step_lines(heads),
        target_names=literal(tuple(h.output for h in heads)),
    )


def _loss_lines(heads: list[HeadIR]) -> list[str]:
    table = Seq(tuple(Entry(literal(h.output), h.loss) for h in heads), "{}")
    lines = statement("self.loss_fns = ", Call("nn.ModuleDict", (Arg(None, table),)), 2)
    for head in heads:
        lines += general.settings_lines(f"self.loss_fns[{literal(head.output)}]", head.loss)
    return lines


def _metric_lines(heads: list[HeadIR]) -> list[str]:
    """A MetricCollection per head, cloned once per stage into a ModuleDict keyed by output."""
    lines: list[str] = []
    measured = [h for h in heads if h.metrics]
    for head in measured:
        lines += statement(f"{identifier(head.output)}_metrics = ", general.collection(head.metrics), 2)
    if not measured:
        return lines
    for stage in STAGES:
        if stage == "train":
            lines += general.unstreamed_note(
                [f"{h.output}_{m.log_name}" for h in measured for m in h.metrics if not m.streaming]
            )
        clones = Seq(
            tuple(
                Entry(
                    literal(h.output),
                    general.stage_metrics(h, stage, f"{identifier(h.output)}_metrics", f"{h.output}_"),
                )
                for h in measured
            ),
            "{}",
        )
        lines += statement(f"self.{stage}_metrics = ", Call("nn.ModuleDict", (Arg(None, clones),)), 2)
    return lines


def _step_lines(heads: list[HeadIR]) -> list[str]:
    """Each head's predictions, target check and loss; the weighted total; what is logged."""
    lines = statement("target = ", "_target_dict(target, self.target_names)", 2)
    lines += statement("outputs = ", "self(**inputs)", 2) + list(PRECISION)
    for head in heads:
        name = identifier(head.output)
        preds, target = f"preds_{name}", f"target_{name}"
        lines += statement(f"{preds} = ", f"outputs{head.target.suffix}.to(self.dtype)", 2)
        check = check_call(f"target[{literal(head.output)}]", head.target, preds)
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
    means = {'f"{stage}_loss"': "loss"}
    for head in heads:
        name = identifier(head.output)
        means[f'f"{{stage}}_{name}_loss"'] = f"loss_{name}"
    lines += step_loss_lines(means)
    measured = [h for h in heads if h.metrics]
    if measured:
        lines += statement("metrics = ", 'getattr(self, f"{stage}_metrics")', 2)
    for head in measured:
        name = identifier(head.output)
        lines += update_lines(f"metrics[{literal(head.output)}]", head, f"preds_{name}", f"target_{name}")
    if measured:
        lines.append("        for collection in metrics.values():")
        lines += ["    " + line for line in log_metrics("collection")]
    return lines


def _term(head: HeadIR) -> Expr:
    return BinOp("*", head.weight, f"loss_{identifier(head.output)}")


def _logged_names(heads: list[HeadIR]) -> set[str]:
    """Every name the module logs (what a scheduler's `monitor` may watch)."""
    names = set()
    for stage in ("train", "val"):
        names.add(f"{stage}_loss")
        for head in heads:
            prefix = f"{stage}_{head.output}_"
            names.update(prefix + m.log_name for m in head.metrics if m.streaming or stage != "train")
            names.add(f"{prefix}loss")
    return names
