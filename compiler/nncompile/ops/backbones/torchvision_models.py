"""`torchvision.<builder>`: a torchvision classification model as a backbone, with pretrained
weights (an enum member or a local file), its head kept, removed or replaced, its stem adapted
to N input channels, or intermediate feature maps taken with `output:`."""

from __future__ import annotations

import inspect
from dataclasses import dataclass

from ...errors import SpecError, did_you_mean
from ...pyfmt import Arg, Call, Input, Seq, literal
from ..base import META_BATCH, Built, Port, TensorInfo, expect_arity, op_failed, reject_unknown
from . import backbone_options, bands, surgery, weights_file
from .torchvision_weights import FILE_CHOICES, implied_by_weights, weights_input, weights_member

FEATURE_EXTRACTOR = "from torchvision.models.feature_extraction import create_feature_extractor"
# A constructor argument whose default a builder changes when given weights (googlenet and
# inception_v3 then normalise their inputs): passed explicitly, so that the model does not
# depend on `pretrained`. The same builders drop their auxiliary heads only when given weights;
# nncompile drops them in both cases (see `drop_aux_heads`).
PINNED = ("transform_input",)


@dataclass
class TorchvisionModel:
    builder: str

    def check_args(self, node) -> None:
        reject_unknown(node, (*backbone_options.KEYS, *bands.KEYS), f"torchvision.{self.builder}")

    def build(self, node, inputs: list[TensorInfo], sources: list[str]) -> Built:
        import torch
        import torchvision

        available = torchvision.models.list_models(module=torchvision.models)
        if self.builder not in available:
            raise SpecError(
                f"unknown torchvision classification model '{self.builder}'",
                node.op_loc(),
                node=node.id,
                hint=did_you_mean(self.builder, available) or "see torchvision.models.list_models()",
            )
        what = f"torchvision.{self.builder}"
        self.check_args(node)
        expect_arity(node, inputs, 1)
        opts = backbone_options.parse(node, what)
        band_opts = bands.parse(node)
        backbone_options.check_in_channels(node, opts, inputs[0], sources[0])
        weights_code, uses_pretrained = self.weights(node, opts)
        fixed: dict[str, object] = {}

        def make(**extra):
            return torchvision.models.get_model(self.builder, weights=None, **fixed, **extra)

        model = surgery.build_meta(make)
        enum_weights = uses_pretrained and opts.weights_file is None
        fixed = pinned(type(model), enum_weights)
        if enum_weights:  # only what changes the architecture (and so the state-dict shapes)
            shapes = surgery.state_shapes(model)
            implied = implied_by_weights(
                self.builder, opts.weights, skip={"aux_logits", "init_weights", *PINNED}
            )
            for key, value in implied.items():
                variant = surgery.build_meta(lambda key=key, value=value: make(**{key: value}))
                if surgery.state_shapes(variant) != shapes:
                    fixed[key] = value
        if fixed:
            model = surgery.build_meta(make)
        attr = f"self.{node.id}"
        ctor_args = (Arg("weights", weights_code), *(Arg(k, literal(v)) for k, v in fixed.items()))
        built = Built(
            init=[(f"{attr} = ", Call(f"torchvision.models.{self.builder}", ctor_args), None)],
            call=Call(attr, (Arg(None, Input(0)),)),
            out=None,
            imports={"import torchvision"},
            uses_pretrained=uses_pretrained,
        )
        from . import download  # imports torch

        if enum_weights:
            download.guard(built, weights_code.body)
        if "aux_logits" in inspect.signature(type(model).__init__).parameters:
            drop_aux_heads(node, model, surgery.build_meta(lambda: make(aux_logits=False)), built)
        if opts.weights_file:
            loc = node.param_loc("weights")
            built.notes += weights_file.read_and_check(model, opts.weights_file, opts.strict, loc, node.id)
            weights_file.emit_loading(node, opts.weights_file, opts.strict, built)
        if opts.head != "keep":
            self.head(
                node, model, opts, built, surgery.build_meta(lambda: make(num_classes=surgery.PROBE_CLASSES))
            )
        channels = adapt_stem(node, model, opts, band_opts, inputs[0], built, what)
        if enum_weights:
            built.weights_input = bands.remap(weights_input(self.builder, opts.weights), channels)
        if opts.outputs:
            model = self.feature_extractor(node, model, opts.outputs, built)
        size = getattr(model, "image_size", None)  # a VisionTransformer's fixed size
        if isinstance(size, int) and not opts.outputs:
            backbone_options.check_fixed_size(node, what, (size, size), inputs[0], sources[0])
        built.module = model
        try:
            with torch.no_grad():
                out = model(inputs[0].meta())
        except Exception as exc:  # noqa: BLE001 - reported at the node with the incoming shape
            raise op_failed(node, exc, inputs, sources, hint=stem_hint(model, inputs)) from None
        if len(opts.outputs) == 1:
            built.out = TensorInfo.of(out[opts.outputs[0]])
            built.call = Call(attr, built.call.args, suffix=f"[{literal(opts.outputs[0])}]")
        elif opts.outputs:
            built.ports = {n: Port(TensorInfo.of(out[n]), f"[{literal(n)}]") for n in opts.outputs}
        else:
            built.out = TensorInfo.of(out)
        return built

    def weights(self, node, opts) -> tuple[object, bool]:
        value = opts.weights
        if value is None:
            return "None", False
        if opts.weights_file:
            return "None", True  # built without weights, then loaded from the file
        return weights_member(node, self.builder, "torchvision.models", value, FILE_CHOICES), True

    def head(self, node, model, opts, built: Built, probe) -> None:
        heads = surgery.changed_layers(model, probe)
        if len(heads) != 1:
            raise SpecError(
                f"cannot tell the classification layer of torchvision.{self.builder}"
                + (f": {', '.join(heads)} all depend on the class count" if heads else ""),
                node.param_loc("head"),
                node=node.id,
                hint="keep the head and use `output:` to pick a layer",
            )
        replace_head(node, model, heads[0], opts, built)

    def feature_extractor(self, node, model, outputs: list, built: Built):
        from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names

        # a module path names that module's output; a graph node name, one operation's
        known = set(get_graph_node_names(model)[1]) | {n for n, _ in model.named_modules() if n}
        for i, name in enumerate(outputs):
            if not isinstance(name, str) or name not in known:
                raise SpecError(
                    f"torchvision.{self.builder} has no layer {name!r}",
                    backbone_options.output_loc(node, i),
                    node=node.id,
                    hint=did_you_mean(str(name), sorted(known)) or "see torchvision's get_graph_node_names",
                )
        attr = f"self.{node.id}"
        nodes = Seq(tuple(literal(n) for n in outputs))
        built.init.append(
            (
                f"{attr} = ",
                Call("create_feature_extractor", (Arg(None, attr), Arg("return_nodes", nodes))),
                None,
            )
        )
        built.imports.add(FEATURE_EXTRACTOR)
        return create_feature_extractor(model, return_nodes=outputs)


def pinned(model_class, enum_weights: bool) -> dict[str, object]:
    """The PINNED arguments `model_class` takes, at the values its builder uses with weights."""
    accepted = inspect.signature(model_class.__init__).parameters
    return {k: True for k in PINNED if k in accepted and enum_weights}


def drop_aux_heads(node, model, lean, built: Built) -> None:
    """Remove the auxiliary heads (the children a build with aux_logits=False lacks), as the
    builder does after loading weights, so the state-dict keys never depend on `pretrained`."""
    aux = [name for name, _ in model.named_children() if getattr(lean, name, None) is None]
    model.aux_logits = False
    built.init.append(
        (f"self.{node.id}.aux_logits = ", "False", "no auxiliary heads, with or without weights")
    )
    for name in aux:
        setattr(model, name, None)
        built.init.append((f"self.{node.id}.{name} = ", "None", None))


def replace_head(node, model, path: str, opts, built: Built) -> None:
    """Swap the head at `path` for Identity (`remove`) or a fresh layer (`replace`)."""
    import torch.nn as nn

    layer = model.get_submodule(path)
    target = f"self.{node.id}{surgery.module_path_code(path)} = "
    if opts.head == "remove":
        surgery.set_submodule(model, path, nn.Identity())
        width = surgery.head_width(layer)
        comment = f"head removed: outputs {path}'s {width} input features" if width else "head removed"
        built.init.append((target, Call("nn.Identity"), comment))
        return
    made = surgery.new_head(layer, opts.num_classes)
    if made is None:
        raise SpecError(
            f"cannot rebuild the head {path} ({type(layer).__name__}) with another class count",
            node.param_loc("head"),
            node=node.id,
            hint="use `head: remove` and add your own layers after the node",
        )
    code, module = made
    surgery.set_submodule(model, path, module)
    built.new_layers.append(path)
    built.init.append((target, code, f"new head: {opts.num_classes} classes, not pretrained"))


def adapt_stem(
    node, model, opts, band_opts, info: TensorInfo, built: Built, what: str, weights_bands=None, pretrained=3
) -> None:
    """Make the model's first convolution take the input's channels: by band name where both the
    input's bands and those the weights saw are named (`weights_bands`: known from the weights),
    else `in_channels` or the input's bands by repeating the pretrained filters (runtime/stem.py).
    Returns the pretrained channel each input channel came from (None: a new one), or None for
    the stem left as it is."""
    import torch

    weights_bands = band_opts.weights_bands or weights_bands
    if opts.in_channels is None and info.bands is None and band_opts.weights_bands is None:
        return None
    size = info.shape[2:] if len(info.shape) == 4 else (224, 224)
    found = surgery.find_stem(model, torch.empty(META_BATCH, pretrained, *size, device="meta"))
    if found is None:
        key = next((k for k in ("in_channels", "weights_bands") if k in node.params), None)
        raise SpecError(
            f"cannot find the stem convolution of {what} (the first Conv2d fed with the {pretrained}-channel image)",
            node.param_loc(key) if key else node.op_loc(),
            node=node.id,
            hint=f"put a Conv2d with out_channels: {pretrained} in front of the backbone instead",
        )
    path, conv = found
    bands.check_declared(node, band_opts, conv.in_channels, what, info.bands)
    if info.bands is not None and weights_bands is not None:
        bands.by_band(node, model, path, conv, info.bands, weights_bands, band_opts.new_bands, built)
        matched = sum(s is not None for s in bands.sources(info.bands, weights_bands))
        warning = backbone_options.frozen_stem(node, path, matched, len(info.bands))
        built.warnings += [warning] if warning is not None else []
        return bands.sources(info.bands, weights_bands)
    in_channels = opts.in_channels or len(info.bands)
    if conv.in_channels == in_channels:
        return None
    if info.bands is not None:
        built.warnings.append(bands.repeats_rgb(node, info.bands, conv.in_channels))
    stem, helper_source = surgery.adapted_stem(conv, in_channels)
    surgery.set_submodule(model, path, stem)
    code = f"self.{node.id}{surgery.module_path_code(path)}"
    built.init.append(
        (
            f"{code} = ",
            Call("_adapt_stem", (Arg(None, code), Arg(None, literal(in_channels)))),
            f"stem adapted to {in_channels} input channel{'s' if in_channels > 1 else ''}, pretrained filters kept",
        )
    )
    built.helpers["_adapt_stem"] = helper_source
    warning = backbone_options.frozen_stem(node, path, conv.in_channels, in_channels)
    if warning is not None:
        built.warnings.append(warning)
    return [None] if in_channels == 1 else [i % conv.in_channels for i in range(in_channels)]


def stem_hint(model, inputs: list[TensorInfo]) -> str | None:
    import torch.nn as nn

    stem = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    shape = inputs[0].shape
    if stem is not None and len(shape) == 4 and shape[1] != stem.in_channels:
        return (
            f"its stem takes {stem.in_channels} channels but gets {shape[1]}: add `in_channels: {shape[1]}` "
            f"to adapt the stem (pretrained filters kept), or make the layer before it output "
            f"{stem.in_channels} channels"
        )
    if len(shape) != 4:
        return "torchvision classification models take images (B, 3, H, W)"
    return None
