"""The options every pretrained backbone (torchvision, timm) shares, validated once:
`weights`, `head: keep|remove|replace` with `num_classes`, `output`, `in_channels`, `strict`."""

from __future__ import annotations

from dataclasses import dataclass

from ...errors import Diagnostic, SpecError, did_you_mean
from ...pyfmt import UnsafeValue, literal
from . import weights_file
from .surgery import module_path_code

HEADS = ("keep", "remove", "replace")
KEYS = ("weights", "head", "num_classes", "output", "in_channels", "strict")


@dataclass
class BackboneOptions:
    weights: object  # None, "DEFAULT", an enum member name, or a local file path
    weights_file: str | None
    head: str
    num_classes: int | None
    outputs: list  # module paths (or timm feature indices); empty: the model's own output
    in_channels: int | None
    strict: bool


def parse(node, what: str) -> BackboneOptions:
    params = node.params
    head = params.get("head", "keep")
    if head not in HEADS:
        raise SpecError(
            f"unknown head mode {head!r}",
            node.param_loc("head"),
            node=node.id,
            hint=did_you_mean(str(head), HEADS) or "head: keep | remove | replace",
        )
    num_classes = params.get("num_classes")
    if head == "replace" and num_classes is None:
        raise SpecError(
            "`head: replace` needs `num_classes`",
            node.param_loc("head"),
            node=node.id,
            hint="add `num_classes: N`, or use `head: remove` and your own layers",
        )
    if num_classes is not None:
        _positive(node, "num_classes")
        if head != "replace":
            raise SpecError(
                "`num_classes` only applies with `head: replace`",
                node.param_loc("num_classes"),
                node=node.id,
                hint="add `head: replace`",
            )
    outputs = _outputs(node)
    if outputs and head != "keep":
        raise SpecError(
            "`head:` and `output:` cannot be combined",
            node.param_loc("head"),
            node=node.id,
            hint="`output:` already takes feature maps from before the classifier",
        )
    in_channels = params.get("in_channels")
    if in_channels is not None:
        _positive(node, "in_channels")
    strict = params.get("strict", True)
    if not isinstance(strict, bool):
        raise SpecError("`strict` must be true or false", node.param_loc("strict"), node=node.id)
    weights = params.get("weights")
    file = weights if weights_file.is_weights_file(weights) else None
    if "strict" in params and file is None:
        raise SpecError(
            "`strict` only applies to a local weights file",
            node.param_loc("strict"),
            node=node.id,
            hint=f"{what} checks its own weights",
        )
    if file is not None:
        try:
            literal(file)
        except UnsafeValue as exc:
            raise SpecError(f"`weights:` {exc}", node.param_loc("weights"), node=node.id) from None
    return BackboneOptions(weights, file, head, num_classes, outputs, in_channels, strict)


def check_in_channels(node, opts: BackboneOptions, info, source: str) -> None:
    """`in_channels:` must be the channel count (dim 1) of the images coming in."""
    if opts.in_channels is None or len(info.shape) != 4 or info.shape[1] == opts.in_channels:
        return
    raise SpecError(
        f"in_channels is {opts.in_channels} but the incoming tensor has {info.shape[1]} channels: "
        f"{source} gives {info.comment()}",
        node.param_loc("in_channels"),
        node=node.id,
        hint=f"set `in_channels: {info.shape[1]}`, or make the layer before it output {opts.in_channels} channels",
    )


def frozen_stem(node, path: str, pretrained: int, in_channels: int) -> Diagnostic | None:
    """A warning where `freeze: true` or a `trainable:` list leaves frozen the stem (module `path`)
    adapted from `pretrained` to more input channels: the filters for the new channels, copies of
    the pretrained ones, would never learn. Fewer channels (sums of the filters) lose nothing."""
    if in_channels <= pretrained:
        return None
    trainable = node.tuning.trainable
    if trainable is not None:
        if any(path == p or path.startswith(f"{p}.") or p == f"{path}.weight" for p in trainable):
            return None
        key = "trainable"
        hint = f"add {path} to `trainable:` (`trainable: [{path}, {', '.join(trainable)}]`)"
    elif node.tuning.freeze is True:
        key = "freeze"
        hint = f"replace `freeze: true` with `trainable: [{path}]` (all else stays frozen)"
    else:
        return None
    return Diagnostic(
        f"the stem adapted to {in_channels} channels ({path}) stays frozen, so its filters for the new "
        "channels never learn",
        node.param_loc(key),
        node=node.id,
        hint=hint,
        severity="warning",
    )


def _positive(node, key: str) -> None:
    value = node.params[key]
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise SpecError(
            f"`{key}` must be a positive integer, not {value!r}", node.param_loc(key), node=node.id
        )


def _outputs(node) -> list:
    raw = node.params.get("output")
    if raw is None:
        return []
    names = raw if isinstance(raw, list) else [raw]
    ok = all((isinstance(n, str) and n) or (isinstance(n, int) and not isinstance(n, bool)) for n in names)
    if not names or not ok or len(set(names)) != len(names):
        raise SpecError(
            "`output:` takes a module path or a list of distinct ones",
            node.param_loc("output"),
            node=node.id,
            hint="for example `output: features` or `output: [layer3, layer4]`",
        )
    for name in names:
        try:
            if isinstance(name, str):
                module_path_code(name)  # it reaches generated code as attribute names
        except UnsafeValue as exc:
            raise SpecError(f"`output:` {exc}", node.param_loc("output"), node=node.id) from None
    return names


def output_loc(node, i: int):
    raw = node.params["output"]
    return node.doc.loc("nodes", node.id, "output", *([i] if isinstance(raw, list) else []))


def check_fixed_size(node, what: str, accepted, info, source: str) -> None:
    """An image size a fixed-size backbone (a ViT's position embeddings) cannot take: an error at
    the input's line when the node reads a spec input directly, else at the node's op."""
    if not accepted or len(info.shape) != 4 or tuple(info.shape[2:]) == tuple(accepted):
        return
    want, size = "x".join(map(str, accepted)), "x".join(map(str, info.shape[2:]))
    inputs = getattr(node.doc, "data", None)
    inputs = inputs.get("inputs") if isinstance(inputs, dict) else None
    at = (
        node.doc.key_loc("inputs", source) if isinstance(inputs, dict) and source in inputs else node.op_loc()
    )
    raise SpecError(
        f"{what} takes only {want} images (its position embeddings are of that size), not {size}",
        at,
        node=node.id,
        hint=f"make the input [C, {', '.join(map(str, accepted))}] and resize the images to it (transforms()), "
        "or choose a backbone that takes any size (a CNN)",
    )
