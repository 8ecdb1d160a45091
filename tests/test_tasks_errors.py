"""Task mistakes fail at compile time, at the offending spec line, with a hint."""

import pytest
from nncompile import compile_spec
from nncompile.errors import NncompileError

MODEL = """\
nncompile: 1
name: Net
inputs:
  x: [8]
nodes:
  fc: {op: Linear, out_features: 3}
  aux: {op: Linear, in: x, out_features: 1}
outputs: {logits: fc, score: aux}
task:
"""


def error_of(write_spec, task: str) -> tuple[str, int, str]:
    """(message, line, hint) of the one error compiling MODEL with this task body."""
    with pytest.raises(NncompileError) as info:
        compile_spec(write_spec(MODEL + task))
    (diag,) = info.value.diagnostics
    return diag.message, diag.loc.line if diag.loc else 0, diag.hint or ""


TASK_LINE = MODEL.count("\n") + 1  # the first line of the task body


@pytest.mark.parametrize(
    "task, message, line, hint",
    [
        ("  kind: multiclas\n", "unknown task kind 'multiclas'", 0, "did you mean 'multiclass'"),
        ("  kind: multiclass\n", "several outputs", 0, "output: <name>"),
        ("  kind: multiclass\n  output: logit\n", "'logit' is not an output", 1, "did you mean 'logits'"),
        (
            "  kind: multiclass\n  output: logits\n  metrics: [acuracy]\n",
            "unknown metric 'acuracy' for a multiclass head",
            2,
            "accuracy",
        ),
        (
            "  kind: multiclass\n  output: logits\n  metrics: [{name: f1, averge: macro}]\n",
            "torchmetrics.classification.MulticlassF1Score has no argument 'averge'",
            2,
            "did you mean 'average'",
        ),
        (
            "  kind: multiclass\n  output: logits\n  metrics: [{name: f1, average: bogus}]\n",
            "metric 'f1' (torchmetrics.classification.MulticlassF1Score) fails on this head",
            2,
            "",
        ),
        (
            "  kind: multiclass\n  output: logits\n  metrics: [{name: accuracy, average: none}]\n",
            "not one number",
            2,
            "average",
        ),
        ("  kind: multiclass\n  output: logits\n  metrics: [r2]\n", "unknown metric 'r2'", 2, "auroc"),
        ("  kind: regression\n  output: score\n  metrics: [fbeta]\n", "unknown metric 'fbeta'", 2, "r2"),
        (
            "  kind: multiclass\n  output: logits\n  metrics: [{name: fbeta}]\n",
            "needs the argument(s) beta",
            2,
            "`beta: ...`",
        ),
        (
            "  kind: multiclass\n  output: logits\n  metrics: [accuracy, accuracy]\n",
            "metric 'accuracy' is listed twice",
            2,
            "top5",
        ),
        (
            "  kind: multiclass\n  output: logits\n  loss: {name: CrossEntropyLoss, weight: [1, 2]}\n",
            "nn.CrossEntropyLoss fails on output 'logits' (B, 3)",
            2,
            "",
        ),
        (
            "  kind: multiclass\n  output: logits\n  loss: {name: CrossEntropyLoss, weight: [1, a, 2]}\n",
            "'weight' must be a non-empty list of numbers",
            2,
            "",
        ),
        (
            "  kind: multiclass\n  output: logits\n  loss: {name: CrossEntropyLoss, label_smothing: 0.1}\n",
            "nn.CrossEntropyLoss has no argument 'label_smothing'",
            2,
            "did you mean 'label_smoothing'",
        ),
        (
            "  kind: multiclass\n  output: logits\n  loss: CrossEntropyLos\n",
            "unknown loss",
            2,
            "CrossEntropyLoss",
        ),
        (
            "  kind: multiclass\n  output: logits\n  loss: {name: CrossEntropyLoss, reduction: none}\n",
            "does not reduce to one number",
            2,
            "reduction",
        ),
        (
            "  kind: multiclass\n  output: logits\n  loss: MSELoss\n",
            "nn.MSELoss fails on output 'logits'",
            2,
            "",
        ),
        (
            "  kind: binary\n  output: logits\n",
            "binary classification needs an output (B,) or (B, 1)",
            0,
            "out_features is 1",
        ),
        ("  kind: multiclass\n  output: score\n", "needs an output (B, num_classes, ...)", 0, ""),
        (
            "  kind: regression\n  output: score\n  optimizer: {name: AdamW, lr: 0.1, betas: [0.9]}\n",
            "torch.optim.AdamW rejects its arguments",
            2,
            "",
        ),
        (
            "  kind: regression\n  output: score\n  optimizer: {name: Adamw}\n",
            "unknown optimizer 'Adamw'",
            2,
            "did you mean 'AdamW'",
        ),
        (
            "  kind: regression\n  output: score\n  optimizer: {lr: -1}\n",
            "learning rate -1 must be positive",
            2,
            "",
        ),
        (
            "  kind: regression\n  output: score\n  scheduler: {name: StepLR}\n",
            "torch.optim.lr_scheduler.StepLR needs the argument(s) step_size",
            2,
            "",
        ),
        (
            "  kind: regression\n  output: score\n  scheduler: {name: StepLr, step_size: 2}\n",
            "'StepLr' is not a scheduler",
            2,
            "did you mean 'StepLR'",
        ),
        (
            "  kind: regression\n  output: score\n  scheduler: {name: LambdaLR}\n",
            "'LambdaLR' is not a scheduler",
            2,
            "",
        ),
        (
            "  kind: regression\n  output: score\n  scheduler: {name: ReduceLROnPlateau, monitor: val_los}\n",
            "monitors 'val_los', which the module does not log",
            2,
            "did you mean 'val_loss'",
        ),
        (
            "  kind: regression\n  output: score\n  scheduler: {name: StepLR, step_size: 1, interval: batch}\n",
            "unknown scheduler interval 'batch'",
            2,
            "",
        ),
        (
            "  kind: regression\n  output: score\n  scheduler: {name: cosine_with_warmup}\n",
            "needs `warmup_steps:` a positive integer",
            2,
            "",
        ),
        (
            "  kind: multitask\n  loss: MSELoss\n  heads: {score: {kind: regression}}\n",
            "`loss` does not apply to a task of kind 'multitask'",
            1,
            "heads",
        ),
        ("  kind: multitask\n", "a multitask task needs `heads:`", 0, ""),
        (
            "  kind: multitask\n  heads:\n    logits: {kind: multiclass}\n    score: {kind: regresion}\n",
            "unknown head kind 'regresion'",
            3,
            "did you mean 'regression'",
        ),
        (
            "  kind: multitask\n  heads:\n    logits: {kind: multiclass}\n    scores: {kind: regression}\n",
            "'scores' is not an output",
            3,
            "did you mean 'score'",
        ),
        (
            "  kind: custom\n  metrics: [accuracy]\n",
            "`metrics` does not apply to a task of kind 'custom'",
            1,
            "",
        ),
        ("  kind: regression\n  output: score\n  heads: {}\n", "`heads` does not apply", 2, "multitask"),
        (
            "  kind: binary\n  output: score\n  metrics: [balanced_accuracy]\n",
            "metric 'balanced_accuracy' is for multiclass heads, not binary",
            2,
            "accuracy",
        ),
        (
            "  kind: multiclass\n  output: logits\n  loss: {name: CrossEntropyLoss, ignore_index: -1}\n"
            "  metrics: [{name: accuracy, ignore_index: 0}]\n",
            "metric 'accuracy' ignores the target 0, and the loss -1",
            3,
            "it follows the loss's",
        ),
    ],
)
def test_task_error(write_spec, task, message, line, hint):
    got_message, got_line, got_hint = error_of(write_spec, task)
    assert message in got_message, got_message
    assert hint in got_hint, got_hint
    if line:
        assert got_line == TASK_LINE + line, (got_line, got_message)


def test_classification_is_multiclass(write_spec):
    source = compile_spec(write_spec(MODEL + "  kind: classification\n  output: logits\n")).source
    assert "multiclass classification of `logits`" in source
    assert 'MulticlassAccuracy(num_classes=3,average="micro")' in "".join(source.split())


def test_metric_mapping_names_what_is_logged(write_spec):
    task = "  kind: multiclass\n  output: logits\n  metrics: {top1: accuracy, top2: {name: accuracy, top_k: 2}, f1: {average: micro}}\n"
    source = "".join(compile_spec(write_spec(MODEL + task)).source.split())  # layout aside
    assert 'top1=torchmetrics.classification.MulticlassAccuracy(num_classes=3,average="micro")' in source
    assert (
        'top2=torchmetrics.classification.MulticlassAccuracy(num_classes=3,average="micro",top_k=2)' in source
    )
    assert 'f1=torchmetrics.classification.MulticlassF1Score(num_classes=3,average="micro")' in source
    assert 'MetricCollection({"top1":top1,"top2":top2,"f1":f1})' in source


def test_no_metrics_means_no_metric_collections(write_spec):
    source = compile_spec(write_spec(MODEL + "  kind: regression\n  output: score\n  metrics: []\n")).source
    assert "MetricCollection" not in source and "self.val_metrics" not in source
    assert 'self.log(f"{stage}_loss", loss, on_step=False' in source  # the loss's epoch mean, Lightning's
    assert "import torchmetrics" not in source  # nothing uses it


def test_metrics_read_the_losss_ignore_index(write_spec):
    """One hyperparameter: a metric that repeats the loss's ignore_index reads it too."""
    task = (
        "  kind: multiclass\n  output: logits\n  loss: {name: CrossEntropyLoss, ignore_index: -1}\n"
        "  metrics: [{name: accuracy, ignore_index: -1}, f1]\n"
    )
    source = "".join(compile_spec(write_spec(MODEL + task)).source.split())
    assert "loss_ignore_index:int=-1" in source
    assert source.count("ignore_index=self.hparams.loss_ignore_index") == 3  # the loss, 2 metrics
