"""`torchgeo.<builder>`: torchgeo's pretrained remote-sensing models (`torchgeo.resnet50` with
`weights: SENTINEL2_ALL_MOCO`), which build timm models with as many input channels as their
weights saw. Their band list and normalisation come from the weights' metadata; the stem is built
by band name from the input's `bands:`.

torchgeo is optional (the `geo` extra): it is imported only when a spec uses it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...errors import SpecError, did_you_mean, first_line
from ...pyfmt import Arg, Call, Cond, Input, literal
from ..base import Built, TensorInfo, WeightsInput, expect_arity, op_failed, reject_unknown
from . import backbone_options, bands, surgery
from .torchvision_models import adapt_stem

# What a torchgeo op takes: no `output:`, `in_channels` or local weight files (yet).
UNSUPPORTED = ("output", "in_channels", "strict")


@dataclass
class TorchgeoModel:
    builder: str

    def check_args(self, node) -> None:
        keys = [k for k in (*backbone_options.KEYS, *bands.KEYS) if k not in UNSUPPORTED]
        reject_unknown(node, keys, f"torchgeo.{self.builder}")

    def build(self, node, inputs: list[TensorInfo], sources: list[str]) -> Built:
        import torch

        models = import_torchgeo(node)
        available = models.list_models()
        if self.builder not in available:
            raise SpecError(
                f"unknown torchgeo model '{self.builder}'",
                node.op_loc(),
                node=node.id,
                hint=did_you_mean(self.builder, available) or "see torchgeo.models.list_models()",
            )
        what = f"torchgeo.{self.builder}"
        self.check_args(node)
        expect_arity(node, inputs, 1)
        opts = backbone_options.parse(node, what)
        band_opts = bands.parse(node)
        member = self.weights(node, models, opts.weights)
        channels = member.meta.get("in_chans", 3) if member is not None else 3
        builder = getattr(models, self.builder)
        kwargs = {"in_chans": channels, **({"num_classes": 0} if opts.head != "keep" else {})}
        model = surgery.build_meta(lambda: builder(weights=None, **kwargs))
        attr = f"self.{node.id}"
        weights_code = (
            Cond(f"torchgeo.models.{type(member).__name__}.{member.name}", "pretrained", "None")
            if member is not None
            else "None"
        )
        args = (Arg("weights", weights_code), *(Arg(k, literal(v)) for k, v in kwargs.items()))
        built = Built(
            init=[(f"{attr} = ", Call(f"torchgeo.models.{self.builder}", args), None)],
            call=Call(attr, (Arg(None, Input(0)),)),
            out=None,
            imports={"import torchgeo.models"},
            uses_pretrained=member is not None,
        )
        from . import download  # imports torch

        if member is not None:
            download.guard(built, weights_code.body)
        if opts.head == "replace":
            self.new_head(node, model, opts.num_classes, built)
        known = tuple(member.meta["bands"]) if member is not None and "bands" in member.meta else None
        mapped = adapt_stem(node, model, opts, band_opts, inputs[0], built, what, known, channels)
        if member is not None:
            built.weights_input = bands.remap(weights_input(member), mapped)
        built.module = model
        try:
            with torch.no_grad():
                out = model(inputs[0].meta())
        except Exception as exc:  # noqa: BLE001 - reported at the node with the incoming shape
            hint = f"its weights take {channels} bands: {', '.join(known)}" if known else None
            raise op_failed(node, exc, inputs, sources, hint=hint) from None
        built.out = TensorInfo.of(out)
        return built

    def weights(self, node, models, value):
        """The weights enum member `value` names, or None for `weights: null`."""
        if value is None:
            return None
        enum = models.get_model_weights(self.builder)
        if value not in enum.__members__:
            raise SpecError(
                f"unknown weights {value!r} for torchgeo.{self.builder}",
                node.param_loc("weights"),
                node=node.id,
                hint=did_you_mean(str(value), list(enum.__members__))
                or "one of: " + ", ".join(enum.__members__) + ", or null",
            )
        return enum[value]

    def new_head(self, node, model, num_classes: int, built: Built) -> None:
        """A fresh Linear classifier where timm's (built with num_classes=0) is an Identity."""
        import torch
        import torch.nn as nn

        path = (getattr(model, "pretrained_cfg", {}) or {}).get("classifier", "fc")
        code = Call("nn.Linear", (Arg(None, str(model.num_features)), Arg(None, literal(num_classes))))
        with torch.device("meta"):
            surgery.set_submodule(model, path, nn.Linear(model.num_features, num_classes))
        built.new_layers.append(path)
        target = f"self.{node.id}{surgery.module_path_code(path)} = "
        built.init.append((target, code, f"new head: {num_classes} classes, not pretrained"))


def import_torchgeo(node):
    """torchgeo.models, imported only for a spec that uses it (it is slow to import and optional)."""
    try:
        import torchgeo.models
    except ImportError as exc:
        raise SpecError(
            f"{node.op} needs torchgeo, which cannot be imported: {first_line(exc)}",
            node.op_loc(),
            node=node.id,
            hint="pip install 'nncompile[geo]' (or pip install torchgeo requests)",
        ) from None
    return torchgeo.models


def weights_input(member) -> WeightsInput | None:
    """The normalisation and preprocessing of a torchgeo weights member: its `transforms`, a
    torchvision.transforms.v2 pipeline (Resize, CenterCrop, Normalize)."""
    steps = {type(step).__name__: step for step in getattr(member, "transforms", None) or ()}
    normalize = steps.get("Normalize")
    if normalize is None:
        return None
    resize, crop = steps.get("Resize"), steps.get("CenterCrop")
    return WeightsInput(
        tuple(float(v) for v in normalize.mean),
        tuple(float(v) for v in normalize.std),
        f"torchgeo {type(member).__name__}.{member.name}.transforms",
        resize=tuple(resize.size) if resize is not None else None,
        crop=crop.size[0] if crop is not None else None,
        scale=False,  # reflectances go to Normalize as they are
        interpolation=str(getattr(resize.interpolation, "value", resize.interpolation))
        if resize
        else "bilinear",
    )
