"""Depth of each parameter of a backbone for layer-wise learning-rate decay (`lr_decay:`).

Depth counts levels down from the head: the head and whatever the backbone's structure does not
place (a classifier, a final norm of torchvision's ViT) are depth 0, the last stage depth 1, the
stem the deepest. The levels come from the backbone's own structure, never from name substrings
matched anywhere in a path:

- timm: the model's `group_matcher(coarse=False)` through timm's `group_parameters`, as timm's
  `param_groups_layer_decay` does (its unmatched parameters, the head, are depth 0);
- torchvision ResNet-like models: stem `conv1`/`bn1`, then `layer1`..`layer4`;
- torchvision ViT: stem `conv_proj`/`class_token`/`encoder.pos_embedding`, then each
  `encoder.layers.encoder_layer_N`;
- torchvision models with a `features` Sequential (VGG, EfficientNet, ConvNeXt, MobileNet, ...):
  each child of `features` that holds parameters;
- Hugging Face models: `embeddings` as the stem, then each `encoder.layer.N` (`layers.N`, `h.N`).
"""

from __future__ import annotations

import re

from ...errors import SpecError

HEAD = "\0head"  # a name no matcher matches: timm puts it with the unmatched parameters (the head)
# Hugging Face's transformer layers: BERT-like `encoder.layer.N`, and `layers.N`/`h.N` elsewhere.
HF_LAYER = re.compile(r"^(?:[a-z_]+\.)*?(?:encoder\.layer|layers|h)\.(\d+)\.")
HF_STEM = re.compile(r"^(?:[a-z_]+\.)*?embeddings\.")


def depths(node, module, new_layers: list[str]) -> dict[str, int]:
    """Each parameter name of `module` (a node's built module) -> its depth; new layers are depth 0."""
    names = [name for name, _ in module.named_parameters()]
    levels = _levels(module, names)
    if levels is None:
        raise SpecError(
            f"node '{node.id}': cannot tell the depth of the layers of {type(module).__name__} "
            "for `lr_decay`",
            node.param_loc("lr_decay"),
            node=node.id,
            hint="layer-wise decay reads timm's group_matcher, torchvision's stages (ResNet layer1..4, "
            "ViT encoder layers, `features`) and Hugging Face `encoder.layer.N`; set `lr_mult` instead",
        )
    top = max((level for level in levels.values() if level is not None), default=-1) + 1
    out = {}
    for name in names:
        level = levels.get(name)
        new = any(name == p or name.startswith(p + ".") for p in new_layers)
        out[name] = 0 if level is None or new else top - level
    return out


def _levels(module, names: list[str]) -> dict[str, int | None] | None:
    """Each name -> its level (0: the stem), None for the head; None when no rule applies."""
    if hasattr(module, "group_matcher"):
        return _timm_levels(module, names)
    if _has(module, "conv1", "layer1"):
        stages = ["conv1|bn1", *(f"layer{i}" for i in range(1, 5) if _has(module, f"layer{i}"))]
        return _by_prefixes(names, stages)
    if _has(module, "conv_proj", "encoder.layers"):
        layers = [f"encoder.layers.{n}" for n, _ in module.get_submodule("encoder.layers").named_children()]
        return _by_prefixes(names, ["conv_proj|class_token|encoder.pos_embedding", *layers])
    if _has(module, "features"):
        children = module.get_submodule("features").named_children()
        stages = [f"features.{n}" for n, child in children if any(True for _ in child.parameters())]
        return _by_prefixes(names, stages)
    layers = {int(m.group(1)) for name in names if (m := HF_LAYER.match(name))}
    if layers:
        stem = any(HF_STEM.match(name) for name in names)
        out = {}
        for name in names:
            m = HF_LAYER.match(name)
            out[name] = int(m.group(1)) + stem if m else (0 if HF_STEM.match(name) else None)
        return out
    return None


def _timm_levels(module, names: list[str]) -> dict[str, int | None]:
    from timm.models._manipulate import group_with_matcher

    named = [(name, None) for name in [*names, HEAD]]
    grouped = group_with_matcher(named, module.group_matcher(coarse=False), reverse=True)
    head = grouped[HEAD]
    return {name: None if grouped[name] == head else grouped[name] for name in names}


def _by_prefixes(names: list[str], stages: list[str]) -> dict[str, int | None]:
    """Level i for names under any of the `|`-separated prefixes of stages[i]; None for the rest."""
    out: dict[str, int | None] = {}
    for name in names:
        out[name] = next(
            (
                i
                for i, stage in enumerate(stages)
                for p in stage.split("|")
                if name == p or name.startswith(p + ".")
            ),
            None,
        )
    return out


def _has(module, *paths: str) -> bool:
    for path in paths:
        try:
            module.get_submodule(path)
        except AttributeError:
            return False
    return True
