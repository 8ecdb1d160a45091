"""Every argument of each task kind's default loss, with every task shape: one output, a
segmentation model's main and aux outputs, and multi-task heads. Each value the spec gives is
exactly one hyperparameter (setting it moves every loss that reads it), one training step runs,
and where the loss ignores a label the metrics ignore it too: a batch with ignored targets
scores what the batch without them scores, computed here by hand."""

import inspect
import warnings

import pytest
import torch
import torchmetrics
from load_generated import compile_and_load
from nncompile.training.classargs import accepted
from nncompile.training.heads import HEAD_KINDS
from task_helpers import trainer
from torch import nn

CLASSES = 3
IGNORED = 255


def loss_values(n: int) -> dict[str, tuple[object, object]]:
    """Every loss argument: (the spec's value, another one to set through the hyperparameter),
    for a head of `n` classes or labels."""
    return {
        "weight": ([2.0, 0.5, 1.5][:n], [1.0, 3.0, 0.25][:n]),
        "pos_weight": ([2.0, 0.5, 1.5][:n], [1.0, 3.0, 0.25][:n]),
        "ignore_index": (IGNORED, 7),
        "label_smoothing": (0.1, 0.2),
        "reduction": ("sum", "mean"),
        "size_average": (False, True),
        "reduce": (True, False),
    }


def loss_args(kind: str) -> list[str]:
    """The arguments of a kind's default loss, read off its signature."""
    return list(accepted(getattr(nn, HEAD_KINDS[kind].default_loss)))


HEAD = """\
nncompile: 1
name: Net
inputs:
  image: [3, 8, 8]
nodes:
  conv: {{op: Conv2d, out_channels: 3, kernel_size: 3, padding: 1}}
{nodes}
outputs: {outputs}
task:
{task}
"""
POOLED = "  pool: {op: AdaptiveAvgPool2d, output_size: 1, in: conv}\n  flat: {op: Flatten}\n"
# shape -> (head kind, number of classes or labels, spec nodes, outputs)
SINGLE = {
    "multiclass": ("multiclass", 3, POOLED + "  fc: {op: Linear, out_features: 3}", "{logits: fc}"),
    "multilabel": ("multilabel", 3, POOLED + "  fc: {op: Linear, out_features: 3}", "{logits: fc}"),
    "binary": ("binary", 1, POOLED + "  fc: {op: Linear, out_features: 1}", "{logits: fc}"),
    "regression": ("regression", 3, POOLED + "  fc: {op: Linear, out_features: 3}", "{values: fc}"),
    "segmentation": ("multiclass", 3, "", "{out: conv}"),
    "segmentation_aux": (
        "multiclass",
        3,
        "  aux_conv: {op: Conv2d, in: conv, out_channels: 3, kernel_size: 1}",
        "{out: conv, aux: aux_conv}",
    ),
}
# The multitask shape: one head of each kind but binary (whose loss is multilabel's).
MULTI_HEADS = {"label": "multiclass", "tags": "multilabel", "value": "regression"}
MULTI_NODES = POOLED + "".join(
    f"  {name}_fc: {{op: Linear, in: flat, out_features: 3}}\n" for name in MULTI_HEADS
)
MULTI_OUTPUTS = "{" + ", ".join(f"{name}: {name}_fc" for name in MULTI_HEADS) + "}"


def flow(value) -> str:
    """A YAML flow value."""
    return repr(value).replace("'", '"').replace("False", "false").replace("True", "true")


def single_spec(shape: str, arg: str) -> tuple[str, dict[str, object]]:
    """The spec text and {hyperparameter: the head whose loss reads it (None: the one loss)}."""
    kind, n, nodes, outputs = SINGLE[shape]
    task_kind = "segmentation" if shape.startswith("segmentation") else kind
    loss = f"{{name: {HEAD_KINDS[kind].default_loss}, {arg}: {flow(loss_values(n)[arg][0])}}}"
    task = f"  kind: {task_kind}\n  loss: {loss}"
    return HEAD.format(nodes=nodes, outputs=outputs, task=task), {f"loss_{arg}": None}


def multitask_spec(arg: str) -> tuple[str, dict[str, object]]:
    """`arg` on every head whose default loss takes it; returns as single_spec does."""
    lines, names = ["  kind: multitask", "  heads:"], {}
    for head, kind in MULTI_HEADS.items():
        loss = HEAD_KINDS[kind].default_loss
        if arg in loss_args(kind):
            lines.append(
                f"    {head}: {{kind: {kind}, loss: {{name: {loss}, {arg}: {flow(loss_values(3)[arg][0])}}}}}"
            )
            names[f"{head}_loss_{arg}"] = head
        else:
            lines.append(f"    {head}: {{kind: {kind}}}")
    return HEAD.format(nodes=MULTI_NODES, outputs=MULTI_OUTPUTS, task="\n".join(lines)), names


CASES = [(shape, arg) for shape, (kind, *_) in SINGLE.items() for arg in loss_args(kind)]
MULTI_ARGS = sorted({arg for kind in MULTI_HEADS.values() for arg in loss_args(kind)})


def test_the_values_cover_every_argument_of_every_default_loss():
    """A new argument in torch's losses fails here until it has values above."""
    for kind in HEAD_KINDS:
        assert set(loss_args(kind)) <= set(loss_values(3)), kind


def target_for(kind: str, n: int, shape: tuple, g, ignored: bool = False) -> torch.Tensor:
    if kind == "multiclass":
        target = torch.randint(0, n, shape, generator=g)
        if ignored:
            target.view(-1)[::3] = IGNORED  # every third target ignored
        return target
    if kind in ("multilabel", "binary"):
        return torch.randint(0, 2, (shape[0], n) if kind == "multilabel" else shape[:1], generator=g).float()
    return torch.randn(shape[0], n, generator=g)


def batch_for(shape: str, g, ignored: bool = False):
    """A batch of 4 images with 8x8 masks, or of 12 with one target each: with every third one
    ignored, 8 are kept, enough for the classes' accuracies to differ."""
    dims = (4, 8, 8) if shape.startswith("segmentation") else (12,)
    image = torch.rand(dims[0], 3, 8, 8, generator=g)
    if shape == "multitask":
        target = {
            head: target_for(kind, 3, dims, g, ignored and kind == "multiclass")
            for head, kind in MULTI_HEADS.items()
        }
        return image, target
    kind, n, *_ = SINGLE[shape]
    return image, target_for(kind, n, dims, g, ignored)


def loss_modules(lm) -> dict[str, nn.Module]:
    """The module's losses, by head (None for a single loss)."""
    if hasattr(lm, "loss_fns"):
        return dict(lm.loss_fns)
    return {None: lm.loss_fn}


def loss_settings(loss: nn.Module) -> dict:
    """What a loss does with its arguments (size_average and reduce become its reduction)."""
    names = ("reduction", "ignore_index", "label_smoothing", "weight", "pos_weight")
    return {
        n: getattr(loss, n).tolist() if isinstance(getattr(loss, n), torch.Tensor) else getattr(loss, n)
        for n in names
        if getattr(loss, n, None) is not None
    }


@pytest.mark.parametrize(("shape", "arg"), [*CASES, *(("multitask", arg) for arg in MULTI_ARGS)])
def test_every_loss_argument_is_one_hyperparameter_and_trains(shape, arg, tmp_path):
    """Compiles; each value is one `__init__` argument (the spec's value its default), and
    setting it sets every loss module that reads it (and, for ignore_index, every metric);
    the segmentation model's two outputs share one loss module; one training step runs (on
    ignored targets too, for ignore_index)."""
    text, hparams = multitask_spec(arg) if shape == "multitask" else single_spec(shape, arg)
    _, module = compile_and_load(text, tmp_path)
    cls = module.NetModule
    params = inspect.signature(cls.__init__).parameters
    assert [p for p in params if p.endswith(f"loss_{arg}")] == list(hparams)
    n = 1 if shape == "binary" else CLASSES
    given, other = loss_values(n)[arg]
    for name in hparams:
        assert params[name].default == (tuple(given) if isinstance(given, list) else given)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # size_average and reduce are deprecated
        lm = cls(**{name: tuple(other) if isinstance(other, list) else other for name in hparams})
        losses = loss_modules(lm)
        assert len([m for m in lm.modules() if isinstance(m, nn.modules.loss._Loss)]) == len(losses)
        for head in hparams.values():
            loss = losses[head]
            runtime = torch.tensor(other) if isinstance(other, list) else other
            assert loss_settings(loss) == loss_settings(type(loss)(**{arg: runtime}))
        if arg == "ignore_index":
            for head in hparams.values():
                collection = lm.val_metrics[head] if head else lm.val_metrics
                assert {m.ignore_index for m in collection.values()} == {other}

        lm = cls()
        g = torch.Generator().manual_seed(0)
        run = trainer(max_steps=1, limit_val_batches=0)
        batch = batch_for(shape, g, ignored=arg == "ignore_index")
        run.fit(lm, torch.utils.data.DataLoader([batch], batch_size=None))
    assert torch.isfinite(run.callback_metrics["train_loss"])


def kept_pixels(preds: torch.Tensor, target: torch.Tensor):
    """(N, C) predictions and (N,) targets of the targets not ignored, pixels flattened."""
    flat = preds.movedim(1, -1).reshape(-1, preds.shape[1])
    keep = target.reshape(-1) != IGNORED
    return flat[keep], target.reshape(-1)[keep]


@pytest.mark.parametrize("shape", ["multiclass", "segmentation", "segmentation_aux", "multitask"])
def test_metrics_ignore_what_the_loss_ignores(shape, tmp_path):
    """A batch in which every third target is ignored: each head's loss and its metrics (the
    default accuracy, and jaccard) equal those of the batch without those targets."""
    text, hparams = (
        multitask_spec("ignore_index") if shape == "multitask" else single_spec(shape, "ignore_index")
    )
    if shape != "multitask":  # the defaults of segmentation, and jaccard for the classifier
        text = text.replace("  loss:", "  metrics: [accuracy, jaccard]\n  loss:")
    else:
        text = text.replace(
            "label: {kind: multiclass,", "label: {kind: multiclass, metrics: [accuracy, jaccard],"
        )
    _, module = compile_and_load(text, tmp_path)
    torch.manual_seed(0)  # the predictions, and so how far micro and macro averages are apart
    lm = module.NetModule().eval()
    logged = {}  # what the step hands Lightning's epoch means (one batch: the means themselves)
    lm.log = lambda name, value, **kw: logged.__setitem__(name, value)
    lm.log_dict = lambda values, **kw: logged.update(values)
    g = torch.Generator().manual_seed(0)
    batch = batch_for(shape, g, ignored=True)
    with torch.no_grad():
        outputs = lm(batch[0])
        loss = lm._shared_step(batch, "val")
    if shape == "multitask":
        preds, target = outputs["label"], batch[1]["label"]
        metrics = {k.removeprefix("val_label_"): v for k, v in lm.val_metrics["label"].compute().items()}
        loss = logged["val_label_loss"]
    else:
        preds, target = outputs["out"] if isinstance(outputs, dict) else outputs, batch[1]
        metrics = {k.removeprefix("val_"): v for k, v in lm.val_metrics.compute().items()}
    assert (target == IGNORED).any() and (target != IGNORED).any()
    kept, kept_target = kept_pixels(preds, target)
    expected_loss = nn.functional.cross_entropy(kept, kept_target)
    if shape == "segmentation_aux":
        expected_loss = expected_loss + 0.5 * nn.functional.cross_entropy(
            *kept_pixels(outputs["aux"], target)
        )
    torch.testing.assert_close(loss, expected_loss)
    accuracy = (kept.argmax(1) == kept_target).float().mean()
    if not shape.startswith("segmentation"):  # 8 targets kept: enough to tell micro from macro
        per_class = [(kept.argmax(1)[kept_target == c] == c).float().mean() for c in kept_target.unique()]
        assert abs(accuracy - sum(per_class) / len(per_class)) > 0.1
    jaccard = torchmetrics.functional.classification.multiclass_jaccard_index(
        kept.softmax(1), kept_target, CLASSES
    )
    torch.testing.assert_close(metrics["accuracy"], accuracy)
    torch.testing.assert_close(metrics["jaccard"], jaccard)
