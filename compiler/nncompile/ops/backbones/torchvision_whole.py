"""`torchvision.segmentation.<builder>` and `torchvision.detection.<builder>` without `output:`:
the whole model as a node, pretrained, with its class-dependent layers replaced for
`num_classes: N` the way torchvision's fine-tuning tutorial writes it:

    seg:
      op: torchvision.segmentation.deeplabv3_resnet50
      weights: DEFAULT
      head: replace
      num_classes: 3          # self.seg.classifier[4] = nn.Conv2d(256, 3, kernel_size=1)
      aux: true               # and aux_classifier[4]; ports seg.out and seg.aux

    detector:
      op: torchvision.detection.maskrcnn_resnet50_fpn
      weights: DEFAULT
      head: replace
      num_classes: 2          # roi_heads.box_predictor = FastRCNNPredictor(1024, 2), mask_predictor ...

A segmentation model maps an image batch to the dict {"out", "aux"}: ports, as for any module
returning a dict. A detection model takes a list of images (an input with `list: true`) and, in
training, their targets, returning its loss dict; in eval mode, one dict of predictions per
image. It is the model's output, trained by `task: {kind: detection}`.

As for their parts (torchvision_parts.py), the model is built as torchvision builds it for the
weights too, on the meta device, and every difference is made explicit, so that `pretrained=False`
builds the same modules with the same state-dict keys. Detection builders freeze the first
backbone layers for weights (`trainable_backbone_layers`): that is the node's default freezing,
written as `requires_grad_(False)` lines, where the spec sets neither `freeze` nor `trainable`.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass

from ...errors import SpecError
from ...pyfmt import Arg, Call, Input, literal
from ..base import Built, TensorInfo, expect_arity, op_failed, reject_unknown, set_outputs
from . import backbone_options, surgery, weights_file
from .torchvision_models import replace_head
from .torchvision_parts import builder_of, match_pretrained
from .torchvision_weights import FILE_CHOICES, build_as_with_weights, weights_member

SEGMENTATION_KEYS = ("weights", "head", "num_classes", "aux", "strict")
DETECTION_KEYS = ("weights", "head", "num_classes", "num_keypoints", "strict")
# What each detection model's predictions hold per image, for comments and docstrings.
PREDICTION_KEYS = {
    "MaskRCNN": "boxes, labels, scores, masks",
    "KeypointRCNN": "boxes, labels, scores, keypoints, keypoints_scores",
}
DETECTION_MODULE = "torchvision.models.detection"


@dataclass(frozen=True)
class Predictor:
    """How to build a fresh class-dependent head of a detection model from the pretrained one:
    the constructor (under torchvision.models.detection) and its arguments read off the old one."""

    ctor: str
    args: object  # (old module, num_classes) -> {argument: (value, code)}


def _norm(old, kind) -> tuple[object, str] | None:
    """`norm_layer` for a head whose convolutions are followed by this kind of norm layer."""
    import functools

    import torch.nn as nn

    norm = next((m for m in old.modules() if isinstance(m, kind)), None)
    if norm is None:
        return None
    if isinstance(norm, nn.GroupNorm):
        value = functools.partial(nn.GroupNorm, norm.num_groups)
        return value, f"functools.partial(nn.GroupNorm, {norm.num_groups})"
    value = functools.partial(nn.BatchNorm2d, eps=norm.eps, momentum=norm.momentum)
    return (
        value,
        f"functools.partial(nn.BatchNorm2d, eps={literal(norm.eps)}, momentum={literal(norm.momentum)})",
    )


def _value(v) -> tuple[object, str]:
    return v, literal(v)


def _list(values: list[int]) -> tuple[object, str]:
    return values, literal(values)


def _retinanet_args(old, n):
    import torch.nn as nn

    args = {
        "in_channels": _value(old.cls_logits.in_channels),
        "num_anchors": _value(old.num_anchors),
        "num_classes": _value(n),
    }
    norm = _norm(old, nn.GroupNorm)
    return args | ({"norm_layer": norm} if norm else {})


def _ssd_args(old, n):
    convs = [m if not hasattr(m, "__getitem__") else m[-1] for m in old.module_list]
    first = [m if not hasattr(m, "__getitem__") else m[0][0] for m in old.module_list]
    return {
        "in_channels": _list([c.in_channels for c in first]),
        "num_anchors": _list([c.out_channels // old.num_columns for c in convs]),
        "num_classes": _value(n),
    }


def _ssdlite_args(old, n):
    import torch.nn as nn

    return _ssd_args(old, n) | {"norm_layer": _norm(old, nn.BatchNorm2d)}


PREDICTORS = {
    "FastRCNNPredictor": Predictor(
        "faster_rcnn.FastRCNNPredictor",
        lambda old, n: {"in_channels": _value(old.cls_score.in_features), "num_classes": _value(n)},
    ),
    "MaskRCNNPredictor": Predictor(
        "mask_rcnn.MaskRCNNPredictor",
        lambda old, n: {
            "in_channels": _value(old.conv5_mask.in_channels),
            "dim_reduced": _value(old.conv5_mask.out_channels),
            "num_classes": _value(n),
        },
    ),
    "RetinaNetClassificationHead": Predictor("retinanet.RetinaNetClassificationHead", _retinanet_args),
    "FCOSClassificationHead": Predictor(
        "fcos.FCOSClassificationHead",
        lambda old, n: {
            "in_channels": _value(old.cls_logits.in_channels),
            "num_anchors": _value(old.num_anchors),
            "num_classes": _value(n),
        },
    ),
    "SSDClassificationHead": Predictor("ssd.SSDClassificationHead", _ssd_args),
    "SSDLiteClassificationHead": Predictor("ssdlite.SSDLiteClassificationHead", _ssdlite_args),
}
KEYPOINTS = Predictor(
    "keypoint_rcnn.KeypointRCNNPredictor",
    lambda old, n: {"in_channels": _value(old.kps_score_lowres.in_channels), "num_keypoints": _value(n)},
)


@dataclass
class TorchvisionWhole:
    family: str  # "segmentation" or "detection"
    builder: str

    @property
    def takes_lists(self) -> bool:
        """A detection model takes a list of images (shapes.check_lists)."""
        return self.family == "detection"

    def build(self, node, inputs: list[TensorInfo], sources: list[str]) -> Built:
        import torchvision

        what = f"torchvision.{self.family}.{self.builder}"
        builder = builder_of(node, self.family, self.builder)
        reject_unknown(node, SEGMENTATION_KEYS if self.family == "segmentation" else DETECTION_KEYS, what)
        expect_arity(node, inputs, 1)
        opts = backbone_options.parse(node, what)
        if opts.head == "remove":
            raise SpecError(
                f"a whole {self.family} model keeps its head or replaces it",
                node.param_loc("head"),
                node=node.id,
                hint="use `head: replace` with `num_classes: N`, or `output: backbone` for its features",
            )
        fixed: dict[str, object] = {"weights_backbone": None}
        aux = self.aux(node, builder)
        if aux or (aux is False and opts.weights is not None):
            fixed["aux_loss"] = True  # the weights' own layout: an aux: false model drops it below
        model = surgery.build_meta(lambda: builder(weights=None, **fixed))
        attr = f"self.{node.id}"
        ctor = f"torchvision.models.{self.family}.{self.builder}"
        weights = "None"
        if opts.weights is not None and not opts.weights_file:
            weights = weights_member(
                node, self.builder, f"torchvision.models.{self.family}", opts.weights, FILE_CHOICES
            )
        args = (Arg("weights", weights), *(Arg(k, literal(v)) for k, v in fixed.items()))
        built = Built(
            init=[(f"{attr} = ", Call(ctor, args), None)],
            call=Call(attr, (Arg(None, Input(0)),)),
            out=None,
            imports={"import torchvision"},
            module=model,
            uses_pretrained=opts.weights is not None,
        )
        if opts.weights_file:  # a state dict of the whole model, as built without weights
            loc = node.param_loc("weights")
            built.notes += weights_file.read_and_check(model, opts.weights_file, opts.strict, loc, node.id)
            weights_file.emit_loading(node, opts.weights_file, opts.strict, built)
        elif built.uses_pretrained:
            from . import download  # imports torch

            download.guard(built, weights.body)
            member = torchvision.models.get_model_weights(self.builder)[opts.weights]
            trained = build_as_with_weights(lambda: builder(weights=member, **fixed))
            match_pretrained(node, what, model, trained, built)
            if self.family == "detection" and not node.tuning.given("freeze", "trainable"):
                self.default_freezing(node, trained, built)
        if aux is False and "aux_loss" in fixed:
            model.aux_classifier = None
            built.init.append((f"{attr}.aux_classifier = ", "None", "`aux: false`: no auxiliary classifier"))
        if self.family == "segmentation":
            return self.segmentation(node, builder, fixed, model, opts, inputs, sources, built)
        return self.detection(node, builder, fixed, model, opts, inputs, sources, built)

    def aux(self, node, builder) -> bool | None:
        """`aux:` of a segmentation model (None where the builder has no auxiliary classifier)."""
        takes = "aux_loss" in inspect.signature(builder).parameters
        value = node.params.get("aux", False if takes else None)
        if "aux" in node.params and not takes:
            raise SpecError(
                f"torchvision.segmentation.{self.builder} has no auxiliary classifier",
                node.param_loc("aux"),
                node=node.id,
                hint="remove `aux:`",
            )
        if takes and not isinstance(value, bool):
            raise SpecError("`aux` must be true or false", node.param_loc("aux"), node=node.id)
        return value

    def segmentation(self, node, builder, fixed, model, opts, inputs, sources, built) -> Built:
        import torch

        if opts.head == "replace":
            probe = surgery.build_meta(
                lambda: builder(weights=None, num_classes=surgery.PROBE_CLASSES, **fixed)
            )
            for path in surgery.changed_layers(model, probe):
                replace_head(node, model, path, opts, built)
            self.check_like_built_for(node, builder, fixed, model, built.new_layers, opts.num_classes)
        try:
            with torch.no_grad():
                out = model(inputs[0].meta())
        except Exception as exc:  # noqa: BLE001 - reported at the node with the incoming shape
            raise op_failed(
                node, exc, inputs, sources, hint="segmentation models take images (B, 3, H, W)"
            ) from None
        set_outputs(built, out, node, f"torchvision.segmentation.{self.builder}")
        return built

    def detection(self, node, builder, fixed, model, opts, inputs, sources, built) -> Built:
        import torch

        info = inputs[0]
        if info.items != "tensors" or len(info.shape) != 4:
            raise SpecError(
                f"a whole detection model takes a list of images (C, H, W), not {sources[0]} {info.comment()}",
                node.op_loc(),
                node=node.id,
                hint="declare the input `images: {shape: [3, 512, 512], list: true}` (any size per image), "
                "or take a part of the model with `output: backbone`",
            )
        keypoints = node.params.get("num_keypoints")
        if keypoints is not None:
            backbone_options._positive(node, "num_keypoints")
            if not hasattr(getattr(model, "roi_heads", None), "keypoint_predictor") or opts.head != "replace":
                raise SpecError(
                    "`num_keypoints` applies to keypointrcnn models with `head: replace`",
                    node.param_loc("num_keypoints"),
                    node=node.id,
                )
        if opts.head == "replace":
            self.replace_predictors(node, builder, fixed, model, opts.num_classes, keypoints, built)
        try:  # the images must suit the detector's own resizing and its backbone
            model.eval()
            with torch.no_grad():
                images = [torch.empty(info.shape[1:], device="meta")] * info.shape[0]
                model.backbone(model.transform(images)[0].tensors)
        except Exception as exc:  # noqa: BLE001 - reported at the node with the incoming shape
            raise op_failed(
                node, exc, inputs, sources, hint="detection models take RGB images (3, H, W)"
            ) from None
        finally:
            model.train()
        kind = PREDICTION_KEYS.get(type(model).__name__, "boxes, labels, scores")
        built.out = TensorInfo(info.shape[:1], "float32", items=f"dicts {{{kind}}}")
        built.call = Call(f"self.{node.id}", (Arg(None, Input(0)), Arg(None, "targets")))
        built.forward_params = ["targets: list[dict[str, torch.Tensor]] | None = None"]
        built.returns = "dict[str, torch.Tensor] | list[dict[str, torch.Tensor]]"
        return built

    def replace_predictors(self, node, builder, fixed, model, num_classes, keypoints, built) -> None:
        """Each class-dependent head (found by building with another class count) rebuilt for
        `num_classes` with its own constructor, and the keypoint predictor for `keypoints`."""
        import torch

        probe = surgery.build_meta(lambda: builder(weights=None, num_classes=surgery.PROBE_CLASSES, **fixed))
        owners: list[tuple[str, Predictor, int]] = []
        for layer in surgery.changed_layers(model, probe):
            path = _owner(model, layer)
            if path is None:
                raise SpecError(
                    f"cannot rebuild {layer} of torchvision.detection.{self.builder} for another class count",
                    node.param_loc("head"),
                    node=node.id,
                    hint="keep the head (`head: keep`) and map your classes onto its own",
                )
            if all(p != path for p, _, _ in owners):
                owners.append((path, PREDICTORS[type(model.get_submodule(path)).__name__], num_classes))
        if keypoints is not None:
            owners.append(("roi_heads.keypoint_predictor", KEYPOINTS, keypoints))
        for path, predictor, count in owners:
            old = model.get_submodule(path)
            args = predictor.args(old, count)
            module_name, _, cls_name = predictor.ctor.partition(".")
            cls = getattr(importlib.import_module(f"{DETECTION_MODULE}.{module_name}"), cls_name)
            with torch.device("meta"):
                new = cls(**{k: v for k, (v, _) in args.items()})
            surgery.set_submodule(model, path, new)
            built.new_layers.append(path)
            if any("functools" in code for _, code in args.values()):
                built.imports.add("import functools")
            built.imports.add(f"from {DETECTION_MODULE}.{module_name} import {cls_name}")
            call = Call(cls_name, tuple(Arg(k, code) for k, (_, code) in args.items()))
            what = f"{count} keypoints" if predictor is KEYPOINTS else f"{count} classes"
            built.init.append(
                (f"self.{node.id}{surgery.module_path_code(path)} = ", call, f"new: {what}, not pretrained")
            )
        extra = {"num_keypoints": keypoints} if keypoints is not None else {}
        self.check_like_built_for(node, builder, fixed, model, built.new_layers, num_classes, extra)

    def check_like_built_for(self, node, builder, fixed, model, paths, num_classes, extra=None) -> None:
        """Each new head must be the one the builder makes for `num_classes` (its layers, their
        state-dict keys and shapes): the new heads are torchvision's own for N classes."""
        reference = surgery.build_meta(
            lambda: builder(weights=None, num_classes=num_classes, **fixed, **(extra or {}))
        )
        for path in paths:
            mine, theirs = model.get_submodule(path), reference.get_submodule(path)
            if [type(m) for m in mine.modules()] != [
                type(m) for m in theirs.modules()
            ] or surgery.state_shapes(mine) != surgery.state_shapes(theirs):
                raise SpecError(
                    f"the new {path} of torchvision.{self.family}.{self.builder} differs from its build for "
                    f"{num_classes} classes",
                    node.param_loc("head"),
                    node=node.id,
                    hint="keep the head (`head: keep`)",
                )

    def default_freezing(self, node, trained, built) -> None:
        """What torchvision freezes for the weights (`trainable_backbone_layers`), as module paths."""
        frozen = {n for n, p in trained.named_parameters() if not p.requires_grad}
        if not frozen:
            return
        paths = []
        for name, module in trained.named_modules():
            names = {f"{name}.{n}" if name else n for n, _ in module.named_parameters()}
            if names and names <= frozen and not any(name.startswith(p + ".") for p in paths):
                paths.append(name)
        built.default_frozen = paths
        built.notes.append(
            "frozen as torchvision freezes them for the weights (trainable_backbone_layers): "
            + ", ".join(paths)
            + "; `freeze:` or `trainable:` chooses otherwise"
        )


def _owner(model, layer: str) -> str | None:
    """The closest module above `layer` that PREDICTORS knows how to rebuild."""
    parts = layer.split(".")
    for i in range(len(parts), 0, -1):
        path = ".".join(parts[:i])
        if type(model.get_submodule(path)).__name__ in PREDICTORS:
            return path
    return None
