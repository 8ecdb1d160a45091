"""torchvision's weights enums: checking a `weights:` member, and building a model as torchvision
builds it for given weights, on the meta device, with their download and loading skipped. The
builders change some models when given weights; comparing such a build with one without weights
is how nncompile finds each change and makes it explicit in the generated file, so that the
model, and its state-dict keys, never depend on `pretrained`."""

from __future__ import annotations

import sys

from ...errors import SpecError, did_you_mean
from ...pyfmt import Cond
from ..base import WeightsInput
from . import surgery

FILE_CHOICES = ", null, or a local file (.pth, .pt, .safetensors)"


def weights_member(node, builder: str, namespace: str, value, other_choices: str):
    """`<namespace>.<Enum>.<value> if pretrained else None`, once `value` is checked to be DEFAULT
    or a member of the builder's weights enum."""
    import torchvision

    enum = torchvision.models.get_model_weights(builder)
    members = ["DEFAULT", *enum.__members__]
    if value not in members:
        raise SpecError(
            f"unknown weights {value!r} for {namespace.replace('.models', '')}.{builder}",
            node.param_loc("weights"),
            node=node.id,
            hint=did_you_mean(str(value), members) or "one of: " + ", ".join(members) + other_choices,
        )
    return Cond(f"{namespace}.{enum.__name__}.{value}", "pretrained", "None")


class _NotLoaded(dict):
    """The empty state dict handed to a builder instead of the weights (densenet's builder
    renames keys in it before loading)."""


def build_as_with_weights(factory):
    """`factory()` (a builder called with weights) on the meta device, with the weights' download
    and loading skipped: everything else the builder does for them happens."""
    import torch
    from torchvision.models._api import WeightsEnum

    original_get, original_load = WeightsEnum.get_state_dict, torch.nn.Module.load_state_dict

    def load(module, state_dict, *args, **kwargs):
        if isinstance(state_dict, _NotLoaded):
            return None
        return original_load(module, state_dict, *args, **kwargs)

    WeightsEnum.get_state_dict = lambda *args, **kwargs: _NotLoaded()
    torch.nn.Module.load_state_dict = load
    try:
        return surgery.build_meta(factory)
    finally:
        WeightsEnum.get_state_dict, torch.nn.Module.load_state_dict = original_get, original_load


def implied_by_weights(builder: str, weights: str, skip: set[str]) -> dict[str, object]:
    """The constructor arguments, but `num_classes` and `skip`, that torchvision's builder sets
    from these weights (ViT's SWAG weights set image_size=384 or 518, say), recorded while
    building as with them."""
    import torchvision

    fn = torchvision.models.get_model_builder(builder)
    module = sys.modules[fn.__module__]
    overwrite = getattr(module, "_ovewrite_named_param", None)
    if overwrite is None:
        return {}
    seen: dict[str, object] = {}

    def record(kwargs, name, value):
        seen[name] = value
        overwrite(kwargs, name, value)

    member = torchvision.models.get_model_weights(builder)[weights]
    module._ovewrite_named_param = record
    try:
        build_as_with_weights(lambda: fn(weights=member))
    finally:
        module._ovewrite_named_param = overwrite
    # num_classes is the head's business
    return {k: v for k, v in sorted(seen.items()) if k not in {"num_classes", *skip}}


def weights_input(builder: str, value: str) -> WeightsInput | None:
    """What the weights member `value` expects of its input: its own `transforms()` (metadata
    only, nothing downloaded); None for weights whose transforms are not an image classifier's."""
    import torchvision

    member = torchvision.models.get_model_weights(builder)[value]
    preset = member.transforms()
    if not all(hasattr(preset, a) for a in ("mean", "std", "resize_size", "crop_size")):
        return None
    return WeightsInput(
        tuple(preset.mean),
        tuple(preset.std),
        f"torchvision {type(member).__name__}.{member.name}.transforms()",
        resize=tuple(preset.resize_size),
        crop=preset.crop_size[0],
        interpolation=preset.interpolation.value,
    )
