"""`task: {kind: detection}`: a LightningModule that trains a whole torchvision detection model
the way torchvision's own reference and tutorial do. Batches are `(images, targets)`: a list of
image tensors (each of its own size) and a list of target dicts. In training the model returns
its loss dict, summed into the loss and each logged; in eval mode it returns one dict of
predictions per image, and validation and test compute mAP with torchmetrics'
MeanAveragePrecision (pycocotools: the `detection` extra). Rendered by lightning_detection.py.jinja.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ...errors import SpecError
from ...pyfmt import Arg, Call, signature, statement
from ...runtime.batches import _checked
from ...runtime.detection import _map_values
from ..configure import DOC_WIDTH, carried, model_call, recipes, wrap
from ..general import head_outputs
from ..hparams import HParams

if TYPE_CHECKING:
    from ...shapes.propagate import Shaped
    from ...spec.model import TaskSpec

METRIC = "torchmetrics.detection.MeanAveragePrecision"
# What the metric's compute() gives that is one number to log (its per-class entries are not).
LOGGED = (
    "map",
    "map_50",
    "map_75",
    "map_small",
    "map_medium",
    "map_large",
    "mar_1",
    "mar_10",
    "mar_100",
    "mar_small",
    "mar_medium",
    "mar_large",
)
# The entries of each detection model's training loss dict, by its class (torchvision's names;
# tests/test_whole_detection.py checks them against each class's training step).
RCNN_LOSSES = ("loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg")
LOSS_KEYS = {
    "FasterRCNN": RCNN_LOSSES,
    "MaskRCNN": (*RCNN_LOSSES[:2], "loss_mask", *RCNN_LOSSES[2:]),
    "KeypointRCNN": (*RCNN_LOSSES[:2], "loss_keypoint", *RCNN_LOSSES[2:]),
    "RetinaNet": ("classification", "bbox_regression"),
    "FCOS": ("classification", "bbox_regression", "bbox_ctrness"),
    "SSD": ("bbox_regression", "classification"),
}
# Target keys the models' losses read besides boxes and labels, by what they predict.
TARGET_EXTRAS = {
    "masks": "masks (N, H, W) uint8, one per box",
    "keypoints": "keypoints (N, K, 3) float (x, y, visibility)",
}


@dataclass
class DetectionIR:
    """The LightningModule half of the emit IR for a detection model."""

    doc_lines: list[str]
    init_signature: list[str]
    init_lines: list[str]
    optimizer_lines: list[str]
    imports: set[str]
    recipe_lines: list[str]  # further methods: gradual unfreezing, the EMA callback
    helpers: list[str]  # module-level code it uses (batch checks, a per-group cosine schedule)
    template: str = "lightning_detection.py.jinja"


def plan(task: TaskSpec, shaped: Shaped, model, params, returns, optimizer_params, rates) -> DetectionIR:
    """The LightningModule of a whole torchvision detection model (`params`, `returns`: its own)."""
    outputs = shaped.outputs
    head = task.heads[0]
    name = head.output or (next(iter(outputs)) if len(outputs) == 1 else None)
    info = outputs.get(name) if name else None
    if info is None or info.items is None or not info.items.startswith("dicts"):
        raise SpecError(
            "a detection task trains a whole detection model, the model's only output",
            head.output_loc if head.output else task.loc,
            hint="make the output a node `op: torchvision.detection.<builder>` without `output:`, "
            "fed by an input with `list: true`",
        )
    _check_metric(task)
    predicted = info.items.removeprefix("dicts {").removesuffix("}")
    extras = "".join(f"; {doc}" for key, doc in TARGET_EXTRAS.items() if key in predicted.split(", "))
    inputs = next(iter(shaped.inputs.values()))
    channels = inputs.shape[1]
    doc = (
        f"Batches are `(images, targets)`: images is a list of ({channels}, H, W) float tensors with values "
        "in [0, 1], each of any size (the model resizes them); targets is a list of dicts, one per "
        "image: boxes (N, 4) float (x1, y1, x2, y2) in pixels; labels (N,) int64, 0 being the "
        f"background{extras}. In eval mode the model predicts {predicted} per image."
    )
    hparams = HParams()
    hparams.add("lr", float(task.optimizer.lr), task.optimizer.loc)
    node = next(o.ref.node for o in shaped.graph.spec.outputs if o.name == name)
    losses = LOSS_KEYS[type(shaped.nodes[node].built.module).__name__]
    init_lines = statement("self.model = ", model_call(model), 2)
    for stage in ("val", "test"):
        init_lines += statement(f"self.{stage}_map = ", Call(METRIC, (Arg("iou_type", '"bbox"'),)), 2)
    logged = {f"train_{key}" for key in ("loss", *losses)} | {f"val_{key}" for key in LOGGED}
    optimizer_lines, recipe_lines, recipe_imports, helpers = recipes(
        task, shaped, model, optimizer_params, rates, logged, hparams
    )
    return DetectionIR(
        doc_lines=wrap(
            f"Trains {model.name}: object detection, the model's own losses; mAP on validation. {doc}",
            DOC_WIDTH,
        ),
        init_signature=signature("__init__", ["self", *hparams.params()], "None", 1),
        init_lines=init_lines,
        optimizer_lines=optimizer_lines,
        imports={"import torchmetrics"} | recipe_imports,
        recipe_lines=recipe_lines,
        helpers=carried([_checked, _map_values]) + helpers,
    )


def trained_outputs(task: TaskSpec, outputs) -> list[str]:
    return head_outputs(task, outputs)


def _check_metric(task: TaskSpec) -> None:
    """MeanAveragePrecision needs pycocotools: fail at compile time, not after an epoch."""
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from torchmetrics.detection import MeanAveragePrecision

            MeanAveragePrecision(iou_type="bbox")
    except (ImportError, ModuleNotFoundError) as exc:
        raise SpecError(
            f"a detection task's mAP needs torchmetrics' MeanAveragePrecision backend: {exc}",
            task.loc,
            hint="pip install 'nncompile[detection]' (pycocotools)",
        ) from None
