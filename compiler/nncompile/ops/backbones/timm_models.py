"""`timm.<model name>`: any model of `timm.list_models()` as a backbone, built with timm's own
options: `num_classes=0` removes the head, `num_classes=N` replaces it, `in_chans=N` adapts the
stem (timm's adapt_input_conv), `features_only`/`out_indices` give intermediate feature maps.

timm is optional: it is imported only when a spec uses it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...errors import SpecError, did_you_mean, first_line
from ...pyfmt import Arg, Call, Entry, Input, Seq, literal
from ..base import (
    META_BATCH,
    Built,
    Port,
    TensorInfo,
    WeightsInput,
    expect_arity,
    import_optional,
    op_failed,
    reject_unknown,
)
from . import backbone_options, bands, surgery, weights_file


@dataclass
class TimmModel:
    name: str

    def check_args(self, node) -> None:
        reject_unknown(node, (*backbone_options.KEYS, *bands.KEYS), f"timm.{self.name}")

    def build(self, node, inputs: list[TensorInfo], sources: list[str]) -> Built:
        import torch

        timm = import_optional(node, "timm")
        available = timm.list_models()
        if self.name not in available:
            raise SpecError(
                f"unknown timm model '{self.name}'",
                node.op_loc(),
                node=node.id,
                hint=did_you_mean(self.name, available) or "see timm.list_models()",
            )
        what = f"timm.{self.name}"
        self.check_args(node)
        expect_arity(node, inputs, 1)
        opts = backbone_options.parse(node, what)
        backbone_options.check_in_channels(node, opts, inputs[0], sources[0])
        band_opts = bands.parse(node)
        in_bands = inputs[0].bands
        by_name = in_bands is not None and band_opts.weights_bands is not None
        kwargs: dict[str, object] = {}
        if opts.head == "remove":
            kwargs["num_classes"] = 0
        elif opts.head == "replace":
            kwargs["num_classes"] = opts.num_classes
        pretrained_channels = self.pretrained_channels(timm)
        bands.check_declared(node, band_opts, pretrained_channels, what, in_bands)
        if opts.in_channels is not None and not by_name:
            kwargs["in_chans"] = opts.in_channels
        elif in_bands is not None and not by_name and len(in_bands) != pretrained_channels:
            kwargs["in_chans"] = len(in_bands)  # timm repeats the pretrained filters

        def make(**extra):
            return timm.create_model(self.name, **kwargs, **extra)

        args = [Arg(None, literal(self.name))]
        built = Built(
            init=[],
            call=Call(f"self.{node.id}", (Arg(None, Input(0)),)),
            out=None,
            imports={"import timm"},
            uses_pretrained=opts.weights is not None,
        )
        if opts.weights is not None:
            args.append(Arg("pretrained", "pretrained"))
            if opts.weights_file:
                plain = surgery.build_meta(lambda: timm.create_model(self.name))
                loc = node.param_loc("weights")
                built.notes += weights_file.read_and_check(
                    plain, opts.weights_file, opts.strict, loc, node.id
                )
                file = weights_file.path_arg(node, opts.weights_file, built, needed="pretrained")
                overlay = Seq((Entry('"file"', file),), "{}")
                args.append(Arg("pretrained_cfg_overlay", overlay))
                if not opts.strict:
                    args.append(Arg("pretrained_strict", "False"))
            elif opts.weights != "DEFAULT":
                raise SpecError(
                    f"unknown weights {opts.weights!r} for {what}",
                    node.param_loc("weights"),
                    node=node.id,
                    hint="DEFAULT (timm's pretrained weights), null, or a local file (.pth, .pt, .safetensors); "
                    "pick a weight tag in the model name, e.g. timm.resnet50.a1_in1k",
                )
        if opts.head == "replace":
            model = surgery.build_meta(make)
            probe = surgery.build_meta(
                lambda: timm.create_model(self.name, **{**kwargs, "num_classes": opts.num_classes + 1})
            )
            built.new_layers += surgery.changed_layers(model, probe)
        if opts.outputs:
            model = self.features(node, opts, kwargs, make)
        elif opts.head != "replace":
            model = surgery.build_meta(make)
        args += [Arg(k, literal(v)) for k, v in kwargs.items()]
        built.init.append((f"self.{node.id} = ", Call("timm.create_model", tuple(args)), None))
        if opts.weights_file:
            built.init[-1:] = weights_file.weights_only(built.init[-1], file, built)
        from . import download  # imports torch

        if opts.weights is not None and not opts.weights_file:
            download.guard(built, download.timm_weights(model), hub=True)
        built.module = model
        channels = None
        if by_name:
            channels = self.stem_by_band(node, model, inputs[0], band_opts, built)
        elif "in_chans" in kwargs:
            if in_bands is not None:
                built.warnings.append(bands.repeats_rgb(node, in_bands, pretrained_channels))
            channels = [i % pretrained_channels for i in range(kwargs["in_chans"])]
            if node.tuning.given("freeze", "trainable"):
                self.check_stem(node, model, kwargs["in_chans"], inputs[0], built)
        if opts.weights == "DEFAULT":
            built.weights_input = bands.remap(weights_input(self.name, model), channels)
        cfg = getattr(model, "pretrained_cfg", None) or {}
        if cfg.get("fixed_input_size") and not opts.outputs:
            accepted = cfg.get("input_size", (3,))[1:]
            backbone_options.check_fixed_size(node, what, accepted, inputs[0], sources[0])
        try:
            with torch.no_grad():
                out = model(inputs[0].meta())
        except Exception as exc:  # noqa: BLE001 - reported at the node with the incoming shape
            size = getattr(model, "pretrained_cfg", {}).get("input_size")
            raise op_failed(
                node, exc, inputs, sources, hint=f"{what} was trained on inputs {size}" if size else None
            ) from None
        if len(opts.outputs) == 1:
            built.out = TensorInfo.of(out[0])
            built.call = Call(built.call.func, built.call.args, suffix="[0]")
        elif opts.outputs:
            built.ports = {str(n): Port(TensorInfo.of(out[i]), f"[{i}]") for i, n in enumerate(opts.outputs)}
        else:
            built.out = TensorInfo.of(out)
        return built

    def pretrained_channels(self, timm) -> int:
        """The input channels of the model's pretrained weights (timm's pretrained_cfg)."""
        cfg = timm.models.get_pretrained_cfg(self.name)
        return cfg.input_size[0] if cfg is not None else 3

    def stem_by_band(self, node, model, info: TensorInfo, band_opts, built: Built) -> list[int | None]:
        """The stem (pretrained_cfg's `first_conv`, or the first convolution the image reaches)
        rebuilt by band name; the pretrained channel of each input channel."""
        import torch

        cfg = getattr(model, "pretrained_cfg", {}) or {}
        path = cfg.get("first_conv")
        modules = dict(model.named_modules())
        if not isinstance(path, str) or path not in modules:
            size = info.shape[2:]
            found = surgery.find_stem(
                model, torch.empty(META_BATCH, len(band_opts.weights_bands), *size, device="meta")
            )
            if found is None:
                raise SpecError(
                    f"cannot find the stem convolution of timm.{self.name}",
                    node.param_loc("weights_bands"),
                    node=node.id,
                )
            path = found[0]
        bands.by_band(
            node, model, path, modules[path], info.bands, band_opts.weights_bands, band_opts.new_bands, built
        )
        mapping = bands.sources(info.bands, band_opts.weights_bands)
        warning = backbone_options.frozen_stem(node, path, sum(s is not None for s in mapping), len(mapping))
        built.warnings += [warning] if warning is not None else []
        return mapping

    def check_stem(self, node, model, in_channels: int, info: TensorInfo, built: Built) -> None:
        """Warn where the stem timm adapted to `in_channels` stays frozen: the model's own stem
        name (pretrained_cfg's `first_conv`), or, where features_only renamed its modules, the
        first convolution the image reaches."""
        import torch

        cfg = getattr(model, "pretrained_cfg", {}) or {}
        path = cfg.get("first_conv")
        if not isinstance(path, str) or path not in dict(model.named_modules()):
            size = info.shape[2:] if len(info.shape) == 4 else cfg.get("input_size", (3, 224, 224))[1:]
            found = surgery.find_stem(model, torch.empty(META_BATCH, in_channels, *size, device="meta"))
            if found is None:
                return
            path = found[0]
        pretrained = cfg.get("input_size", (3,))[0]
        warning = backbone_options.frozen_stem(node, path, pretrained, in_channels)
        if warning is not None:
            built.warnings.append(warning)

    def features(self, node, opts, kwargs: dict, make):
        """The features_only model for `output:`, given as feature module names or indices."""
        try:
            everything = surgery.build_meta(lambda: make(features_only=True))
        except Exception as exc:  # noqa: BLE001 - timm refuses models without feature maps
            raise SpecError(
                f"timm.{self.name} cannot give intermediate outputs: {first_line(exc)}",
                node.param_loc("output"),
                node=node.id,
                hint="remove `output:` and use `head: remove` for pooled features",
            ) from None
        names = everything.feature_info.module_name()
        indices = []
        for i, wanted in enumerate(opts.outputs):
            if isinstance(wanted, int) and 0 <= wanted < len(names):
                indices.append(wanted)
            elif wanted in names:
                indices.append(names.index(wanted))
            else:
                raise SpecError(
                    f"timm.{self.name} has no feature map {wanted!r}",
                    backbone_options.output_loc(node, i),
                    node=node.id,
                    hint="its feature maps: "
                    + ", ".join(names)
                    + f" (or their indices 0 to {len(names) - 1})",
                )
        if indices != sorted(indices):
            raise SpecError(
                "list `output:` in the order of the network's feature maps",
                node.param_loc("output"),
                node=node.id,
                hint="in order: " + ", ".join(names),
            )
        kwargs["features_only"] = True
        kwargs["out_indices"] = tuple(indices)
        return surgery.build_meta(make)


def weights_input(name: str, model) -> WeightsInput | None:
    """What timm's pretrained weights for `name` expect: their pretrained_cfg (mean, std, input
    size, crop fraction, interpolation), which timm keeps on the model, no weights needed."""
    import math

    cfg = getattr(model, "pretrained_cfg", None) or {}
    if "mean" not in cfg or "std" not in cfg:
        return None
    size = cfg.get("input_size", (3, 224, 224))[-1]
    crop_pct = cfg.get("crop_pct") or 1.0
    tag = cfg.get("tag")
    return WeightsInput(
        tuple(cfg["mean"]),
        tuple(cfg["std"]),
        f"timm {cfg.get('architecture', name)}{'.' + tag if tag else ''} pretrained_cfg",
        resize=(math.floor(size / crop_pct),),
        crop=size,
        interpolation=cfg.get("interpolation") or "bilinear",
        fixed_size=bool(cfg.get("fixed_input_size")),
    )
