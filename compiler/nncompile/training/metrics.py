"""torchmetrics by name: `accuracy`, `f1`, `auroc`, `mae`, `r2`, ... resolved to the class that fits
the head's kind (MulticlassAccuracy for a multiclass head), checked against its signature, built
and run once on a dummy batch at compile time, so a bad argument fails here and not after an epoch.
"""

from __future__ import annotations

import inspect
import warnings
from dataclasses import dataclass

from ..errors import SpecError, first_line
from ..pyfmt import Arg, Call, literal
from ..spec.model import MetricSpec
from .classargs import check_args, rendered_args, runtime_args

# Short names -> the torchmetrics base name and preset arguments. A preset applies where the
# class takes it (BinaryAccuracy has no `average`). What each name means is in docs/training.md.
MICRO = {"average": "micro"}
ALIASES: dict[str, tuple[str, dict]] = {
    "accuracy": ("Accuracy", MICRO),  # the fraction correct, not torchmetrics' macro default
    "balanced_accuracy": ("Accuracy", {"average": "macro"}),  # the mean of per-class recalls
    "f1": ("F1Score", {}),
    "fbeta": ("FBetaScore", {}),
    "precision": ("Precision", {}),
    "recall": ("Recall", {}),
    "auroc": ("AUROC", {}),
    "average_precision": ("AveragePrecision", {}),
    "specificity": ("Specificity", {}),
    "jaccard": ("JaccardIndex", {}),
    "mcc": ("MatthewsCorrCoef", {}),
    "cohen_kappa": ("CohenKappa", {}),
    "hamming": ("HammingDistance", MICRO),  # the fraction wrong: 1 - accuracy
    "calibration_error": ("CalibrationError", {}),
    "exact_match": ("ExactMatch", {}),
    "mae": ("MeanAbsoluteError", {}),
    "mse": ("MeanSquaredError", {}),
    "rmse": ("MeanSquaredError", {"squared": False}),
    "msle": ("MeanSquaredLogError", {}),
    "mape": ("MeanAbsolutePercentageError", {}),
    "r2": ("R2Score", {}),
    "pearson": ("PearsonCorrCoef", {}),
    "spearman": ("SpearmanCorrCoef", {}),
    "explained_variance": ("ExplainedVariance", {}),
    "cosine_similarity": ("CosineSimilarity", {"reduction": "mean"}),  # torchmetrics sums over samples
}
# Names whose meaning holds for some kinds only: balanced accuracy of one 0/1 output or of
# independent labels is not what torchmetrics' macro average computes there.
ONLY_FOR = {"balanced_accuracy": ("multiclass",)}
CLASS_PREFIX = {"multiclass": "Multiclass", "multilabel": "Multilabel", "binary": "Binary"}
# Arguments every torchmetrics Metric takes through **kwargs (torchmetrics.Metric.__init__).
METRIC_BASE_ARGS = ("compute_on_cpu", "dist_sync_on_step", "sync_on_compute", "compute_with_cache")


@dataclass(frozen=True)
class Metric:
    log_name: str
    call: Call
    streaming: bool  # its state has a fixed size (False: it keeps every prediction until compute)
    contiguous: bool = False  # it fails on predictions that are not contiguous (_needs_contiguous)


@dataclass(frozen=True)
class Ignored:
    """The target value the head's loss ignores (its `ignore_index`), and the code that reads it."""

    value: int
    code: str


@dataclass(frozen=True)
class Known:
    """What building a metric at compile time would find, for a default metric with no arguments."""

    qualname: str
    presets: tuple[str, ...]  # the ALIASES presets the class takes
    views_flat: bool = False  # fails on predictions sliced from a wider tensor (_needs_contiguous)


# The default metrics of each head kind, answered without importing torchmetrics: its package
# init imports transformers where installed (about 1.6 s of every compile). Every entry is
# checked against torchmetrics itself, over the shapes a head can have, in tests/test_compile_imports.py.
KNOWN = {
    ("multiclass", "accuracy"): Known("torchmetrics.classification.MulticlassAccuracy", ("average",)),
    ("multiclass", "jaccard"): Known("torchmetrics.classification.MulticlassJaccardIndex", ()),
    ("multilabel", "accuracy"): Known("torchmetrics.classification.MultilabelAccuracy", ("average",)),
    ("binary", "accuracy"): Known("torchmetrics.classification.BinaryAccuracy", ()),
    ("regression", "mae"): Known("torchmetrics.regression.MeanAbsoluteError", (), views_flat=True),
}
AUTO_COUNT = {"multiclass": "num_classes", "multilabel": "num_labels"}


def resolve(metric: MetricSpec, kind: str, preds, target, ignored: Ignored | None = None) -> Metric:
    """The torchmetrics call for one metric of a head of `kind`; `preds`/`target` are dummy tensors
    shaped as the generated step passes them. Where the loss ignores a label (`ignored`), the
    metric ignores it too, reading the same hyperparameter."""
    spec = metric.call
    known = KNOWN.get((kind, spec.name))
    # torchmetrics refuses fewer than two classes or labels: there, it says why
    counted = kind not in AUTO_COUNT or preds.shape[1] >= 2
    if known is not None and not spec.args and ignored is None and counted:
        return _known(metric, kind, known, preds)
    import torchmetrics

    base, preset = ALIASES.get(spec.name, (spec.name, {}))
    if kind not in ONLY_FOR.get(spec.name, (kind,)):
        raise SpecError(
            f"metric '{spec.name}' is for {' and '.join(ONLY_FOR[spec.name])} heads, not {kind}",
            spec.loc,
            hint="use one of: " + ", ".join(sorted(available(kind))),
        )
    if kind in CLASS_PREFIX:
        module, qual = torchmetrics.classification, "torchmetrics.classification"
        names = (CLASS_PREFIX[kind] + base, base)
    else:
        module, qual = torchmetrics.regression, "torchmetrics.regression"
        names = (base,)
    name = next((n for n in names if isinstance(getattr(module, n, None), type)), None)
    if name is None:
        raise SpecError(
            f"unknown metric '{spec.name}' for a {kind} head",
            spec.loc,
            hint="use one of: " + ", ".join(sorted(available(kind))) + ", or a torchmetrics class name",
        )
    cls = getattr(module, name)
    takes = inspect.signature(cls.__init__).parameters
    args = {**{k: v for k, v in preset.items() if k in takes}, **spec.args}
    auto = {}  # arguments filled in: name -> (value, code)
    if kind == "multiclass" and "num_classes" not in args:
        auto["num_classes"] = (preds.shape[1], str(preds.shape[1]))
    if kind == "multilabel" and "num_labels" not in args:
        auto["num_labels"] = (preds.shape[1], str(preds.shape[1]))
    qualname = f"{qual}.{name}"
    if ignored is not None:  # read from the loss's hyperparameter, even where the spec repeats it
        _check_same_ignored(metric, args.pop("ignore_index", ignored.value), ignored)
        auto["ignore_index"] = (ignored.value, ignored.code)
    check_args(cls, spec, args, qualname, extra=METRIC_BASE_ARGS, given=tuple(auto))
    values = {k: value for k, (value, _) in auto.items()}
    instance = _try(cls, {**values, **runtime_args(cls, spec, args)}, preds, target, metric, qualname)
    auto_args = tuple(Arg(k, code) for k, (_, code) in auto.items())
    streaming = not any(isinstance(v, list) for v in instance._defaults.values())
    call = Call(qualname, auto_args + rendered_args(cls, spec, args))
    return Metric(metric.log_name, call, streaming, _needs_contiguous(instance, preds, target))


def _known(metric: MetricSpec, kind: str, known: Known, preds) -> Metric:
    """The Metric that building `known` at compile time gives (see KNOWN)."""
    preset = ALIASES.get(metric.call.name, (metric.call.name, {}))[1]
    args = tuple(Arg(AUTO_COUNT[kind], str(preds.shape[1])) for _ in [1] if kind in AUTO_COUNT)
    args += tuple(Arg(k, literal(preset[k])) for k in known.presets)
    # a slice of the last dim views flat only where that dim has one element
    contiguous = known.views_flat and preds.dim() >= 2 and preds.shape[-1] > 1
    return Metric(metric.log_name, Call(known.qualname, args), True, contiguous)


def _check_same_ignored(metric: MetricSpec, value, ignored: Ignored) -> None:
    """A metric that counted the targets the loss ignores would score labels the model is not
    trained on (every Multiclass* metric takes `ignore_index`)."""
    if value != ignored.value:
        raise SpecError(
            f"metric '{metric.log_name}' ignores the target {value}, and the loss {ignored.value}",
            metric.call.arg_loc("ignore_index"),
            hint="remove the metric's `ignore_index`: it follows the loss's",
        )


def available(kind: str) -> list[str]:
    import torchmetrics

    names = [a for a in ALIASES if kind in ONLY_FOR.get(a, (kind,))]
    if kind in CLASS_PREFIX:
        return [a for a in names if hasattr(torchmetrics.classification, CLASS_PREFIX[kind] + ALIASES[a][0])]
    return [a for a in names if hasattr(torchmetrics.regression, ALIASES[a][0])]


def _needs_contiguous(instance, preds, target) -> bool:
    """Whether the metric fails on `preds` laid out as a slice of a wider tensor (a split
    output), as MeanAbsoluteError does: it views them flat."""
    import torch

    if preds.dim() < 2:
        return False  # a strided 1-D tensor views flat
    sliced = torch.cat([preds, preds], dim=-1)[..., : preds.shape[-1]]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            instance.reset()
            instance.update(sliced, target)
    except RuntimeError:
        return True
    return False


def _try(cls, kwargs: dict, preds, target, metric: MetricSpec, qualname: str):
    """Build the metric and compute it on a dummy batch: it must give one number to log. Returns
    the metric built."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            instance = cls(**kwargs)
            instance.update(preds, target)
            value = instance.compute()
    except Exception as exc:  # any failure of the library on these arguments is the spec's
        raise SpecError(
            f"metric '{metric.log_name}' ({qualname}) fails on this head: {first_line(exc)}",
            metric.call.loc,
            hint="check its arguments against the torchmetrics documentation",
        ) from None
    if not hasattr(value, "numel") or value.numel() != 1:
        shape = tuple(value.shape) if hasattr(value, "shape") else type(value).__name__
        raise SpecError(
            f"metric '{metric.log_name}' ({qualname}) gives {shape}, not one number, so it cannot be logged",
            metric.call.loc,
            hint="average it (for example `average: macro`), or compute it outside training",
        )
    return instance
