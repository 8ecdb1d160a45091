"""A node's `adapters:` resolved against its meta module: each `target` pattern becomes the explicit
list of layer paths it matches, or a located error (a pattern that matches nothing, a layer LoRA
cannot adapt, a rank larger than a layer allows), and the adapters are added to the meta module
with the very code the generated file runs (runtime/adapters.py), so parameter counts, freezing
and parameter groups see them as they will be."""

from __future__ import annotations

import copy
import dataclasses
import fnmatch
import re
from dataclasses import dataclass

from ..errors import SpecError, did_you_mean
from ..ops import Built
from ..runtime import adapters as lora
from ..spec.adapters import Adapter
from ..spec.model import NodeSpec

SUPPORTED = "Linear, Conv2d (groups 1), Embedding"


@dataclass(frozen=True)
class Resolved:
    """One entry of `adapters:` with the layers it adapts."""

    adapter: Adapter
    paths: tuple[str, ...]  # inside the node's module, in module order ("": the node itself)
    types: tuple[str, ...]  # the layer types it matched, each once
    params: int  # parameters it adds
    coverage: tuple[tuple[str, int, int], ...]  # (repeated container, layers matched in, its length)


def with_adapters(node: NodeSpec, built: Built) -> Built:
    """`built` with its meta module adapted as the spec's `adapters:` says (a copy: op kinds may
    share the module they built), or as it is for a node without adapters."""
    adapters = node.tuning.adapters
    if not adapters:
        return built
    if built.module is None or not any(True for _ in built.module.parameters()):
        raise SpecError(
            f"node '{node.id}' has no layers with weights for `adapters`",
            node.param_loc("adapters"),
            node=node.id,
            hint=f"{node.op} is a functional op: adapters go on backbones, torch.nn layers and blocks",
        )
    module = copy.deepcopy(built.module)
    resolved, taken = [], {}
    for adapter in adapters:
        found = resolve(node, module, adapter, taken)
        resolved.append(found)
        module = lora._add_lora(module, found.paths, adapter.r, adapter.alpha, adapter.dropout)
    return dataclasses.replace(built, module=module, adapters=resolved)


def resolve(node: NodeSpec, module, adapter: Adapter, taken: dict[str, int]) -> Resolved:
    """The layers `adapter` names, checked; `taken`: path -> the adapter that took it before."""
    layers = dict(module.named_modules())
    if not adapter.targets:
        if "" in taken:
            raise SpecError(
                f"node '{node.id}': adapters {taken['']} and {adapter.index} both adapt the node",
                adapter.loc,
                node=node.id,
                hint="give each layer one adapter",
            )
        if not _supported(module):
            raise SpecError(
                f"node '{node.id}' is a {type(module).__name__}, not one layer: adapter {adapter.index} needs a "
                "`target`",
                adapter.loc,
                node=node.id,
                hint=_suggest(module),
            )
        paths = [""]
    else:
        paths = []
        for pattern, loc in zip(adapter.targets, adapter.target_locs, strict=True):
            matched = [path for path in layers if path and matches(pattern, path)]
            if not matched:
                raise SpecError(
                    f"node '{node.id}': adapter target '{pattern}' matches no submodule",
                    loc,
                    node=node.id,
                    hint=did_you_mean(pattern, _generalized(layers)) or _suggest(module),
                )
            for path in matched:
                if path in taken:
                    raise SpecError(
                        f"node '{node.id}': adapters {taken[path]} and {adapter.index} both adapt {path}",
                        loc,
                        node=node.id,
                        hint="give each layer one adapter",
                    )
                if not _supported(layers[path]):
                    layer = layers[path]
                    what = type(layer).__name__ + (
                        f" with groups={layer.groups}" if type(layer).__name__ == "Conv2d" else ""
                    )
                    raise SpecError(
                        f"node '{node.id}': adapter target '{pattern}' matches {path}, a {what}; LoRA adapts "
                        f"{SUPPORTED}",
                        loc,
                        node=node.id,
                        hint=_suggest_among(matched, layers) or _suggest(layer, path),
                    )
            paths += [p for p in matched if p not in paths]
    for path in paths:
        taken[path] = adapter.index
        most = min(_dims(layers[path]))
        if adapter.r > most:
            raise SpecError(
                f"node '{node.id}': rank r={adapter.r} is larger than {path or 'the node'} allows "
                f"({type(layers[path]).__name__} {' x '.join(map(str, _dims(layers[path])))}: at most {most})",
                adapter.r_loc,
                node=node.id,
                hint=f"take r <= {most}: a low-rank update has fewer dimensions than its layer",
            )
    types = tuple(dict.fromkeys(type(layers[p]).__name__ for p in paths))
    params = sum(adapter.r * sum(_dims(layers[p])) for p in paths)
    return Resolved(adapter, tuple(paths), types, params, coverage(module, paths))


def matches(pattern: str, path: str) -> bool:
    """Whether a dotted `pattern` matches a submodule `path`: `*` stands for one segment (and
    within one, for any characters: `layer*`), `**` for any number of segments."""
    return _match(pattern.split("."), path.split("."))


def _match(pattern: list[str], path: list[str]) -> bool:
    if not pattern:
        return not path
    if pattern[0] == "**":
        return any(_match(pattern[1:], path[i:]) for i in range(len(path) + 1))
    return bool(path) and fnmatch.fnmatchcase(path[0], pattern[0]) and _match(pattern[1:], path[1:])


def coverage(module, paths: list[str]) -> tuple[tuple[str, int, int], ...]:
    """For each repeated container the paths go through (`blocks`, `layer1`, `encoder.layer`):
    how many of its items hold a matched layer, of how many, so uneven coverage shows."""
    counts: dict[str, set[str]] = {}
    for path in paths:
        parts = path.split(".")
        index = next((i for i, part in enumerate(parts) if part.isdigit()), None)
        if index is not None:
            counts.setdefault(".".join(parts[:index]), set()).add(parts[index])
    return tuple(
        (container, len(items), len(list(module.get_submodule(container).children())))
        for container, items in counts.items()
    )


def compact(paths: tuple[str, ...]) -> str:
    """`blocks.0.attn.qkv ... blocks.11.attn.qkv` as `blocks.{0..11}.attn.qkv` (consecutive indices
    in one place of otherwise equal paths)."""
    groups: dict[tuple, list[int]] = {}
    for path in paths:
        parts = path.split(".")
        index = next((i for i, part in enumerate(parts) if part.isdigit()), None)
        if index is None:
            groups[(path,)] = []
            continue
        groups.setdefault((".".join(parts[:index]), ".".join(parts[index + 1 :])), []).append(
            int(parts[index])
        )
    out = []
    for key, numbers in groups.items():
        if not numbers:
            out.append(key[0] or "the node")
            continue
        head, tail = key
        head = head + "." if head else ""  # "" : the index leads (a block's copies, "0.conv")
        tail = "." + tail if tail else ""
        if len(numbers) > 2 and numbers == list(range(numbers[0], numbers[-1] + 1)):
            out.append(f"{head}{{{numbers[0]}..{numbers[-1]}}}{tail}")
        else:
            out += [f"{head}{n}{tail}" for n in numbers]
    return ", ".join(out)


def _supported(layer) -> bool:
    import torch.nn as nn

    if type(layer) is nn.Conv2d:
        return layer.groups == 1
    return type(layer) in (nn.Linear, nn.Embedding)


def _dims(layer) -> tuple[int, int]:
    """A layer's (input, output) sizes as the adapter sees them: r x (in + out) parameters."""
    import torch.nn as nn

    if isinstance(layer, nn.Linear):
        return layer.in_features, layer.out_features
    if isinstance(layer, nn.Conv2d):
        return layer.in_channels * layer.kernel_size[0] * layer.kernel_size[1], layer.out_channels
    return layer.num_embeddings, layer.embedding_dim


def _generalized(layers: dict) -> list[str]:
    """The supported layers' paths, each index written `*` (what a pattern would say)."""
    return list(
        dict.fromkeys(
            re.sub(r"(?<=\.)\d+(?=\.|$)|^\d+(?=\.)", "*", p) for p, m in layers.items() if p and _supported(m)
        )
    )


def _suggest_among(matched: list[str], layers: dict) -> str | None:
    """A hint naming the layers LoRA can adapt among a pattern's matches, or None."""
    found = _generalized({p: layers[p] for p in matched})
    if not found:
        return None
    return "list the layers it matches that LoRA adapts: target: [" + ", ".join(found) + "]"


def _suggest(module, path: str = "") -> str:
    """A hint naming the patterns of the layers LoRA can adapt inside `module`."""
    found = _generalized({f"{path}.{p}" if path and p else path or p: m for p, m in module.named_modules()})
    found = [p for p in found if p]
    if not found:
        return f"LoRA adapts {SUPPORTED}; this part holds none"
    shown = ", ".join(found[:6]) + (f" and {len(found) - 6} more" if len(found) > 6 else "")
    return f"the layers it can adapt here: {shown}"
