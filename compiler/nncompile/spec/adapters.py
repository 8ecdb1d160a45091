"""A node's `adapters:` (LoRA), declared and checked when the spec loads: each entry's keys,
types and bounds. Which layers its `target` names is resolved against the node's module by the
shapes stage (shapes/adapters.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from pydantic import Field, WithJsonSchema

from ..errors import Loc
from .checking import Bound, Choice, Keys, Number, check, mistake, passed_on

ADAPTER_KINDS = ("lora",)
ADAPTER_EXAMPLE = 'for example `adapters: [{kind: lora, target: "blocks.*.attn.qkv", r: 8, alpha: 16}]`'


class AdapterKeys(Keys):
    kind: Annotated[str, Choice(ADAPTER_KINDS, "adapter kind")] = Field(
        description="the kind of adapter: " + ", ".join(ADAPTER_KINDS)
    )
    target: Annotated[
        str | list,
        WithJsonSchema({"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}),
    ] = Field(
        None,
        description="the layers to adapt: a pattern over the node's submodule paths (`*` one segment, `**` any "
        "number), or a list of them; default: the node itself, when it is one layer",
    )
    r: Annotated[int, Bound("the rank r must be at least 1, not {value!r}", ge=1)] = Field(
        8, description="the rank of each layer's update (default 8)"
    )
    alpha: Annotated[Number, Bound("alpha must be positive, not {value!r}", gt=0)] = Field(
        None, description="the update is scaled by alpha / r (default: alpha = r, a scale of 1)"
    )
    dropout: Annotated[
        Number,
        Bound("dropout must be in [0, 1), not {value!r}", "the probability of zeroing an input", ge=0, lt=1),
    ] = Field(0.0, description="dropout on the adapter's input (default 0)")


@dataclass(frozen=True)
class Adapter:
    """One entry of a node's `adapters:`, as validated, with where its parts are written."""

    index: int  # its position in the list, from 1 (messages and hyperparameter names)
    kind: str
    targets: tuple[str, ...]  # () : the node itself
    r: int
    alpha: float
    dropout: float
    loc: Loc  # the entry
    target_locs: tuple[Loc, ...]  # one per pattern
    r_loc: Loc


def parse_adapters(raw: list, info) -> tuple[Adapter, ...]:
    """`adapters:` -> its typed entries; the first mistake inside is passed on at its own place."""
    doc, path = info.context["doc"], (*info.context["path"], "adapters")
    if not raw:
        raise mistake("`adapters` lists no adapter", ADAPTER_EXAMPLE)
    out = []
    for i, entry in enumerate(raw):
        if not isinstance(entry, dict):
            raise mistake(f"adapter {i + 1} is not a mapping", ADAPTER_EXAMPLE, at=(i,))
        checked = check(
            AdapterKeys, entry, (*path, i), doc, f"adapter {i + 1} of node '{path[-2]}'", node=path[-2]
        )
        if checked.errors:
            raise passed_on(checked.errors[0][1])
        keys = checked.value
        targets = (keys.target,) if isinstance(keys.target, str) else tuple(keys.target or ())
        if keys.target is not None and not (targets and all(isinstance(t, str) and t for t in targets)):
            raise mistake(
                "`target` takes a pattern or a list of patterns, none of them empty",
                ADAPTER_EXAMPLE,
                at=(i, "target"),
            )
        if isinstance(keys.target, str):
            target_locs = (doc.loc(*path, i, "target"),)
        else:
            target_locs = tuple(doc.loc(*path, i, "target", k) for k in range(len(targets)))
        alpha = keys.alpha if keys.alpha is not None else keys.r
        out.append(
            Adapter(
                i + 1,
                keys.kind,
                targets,
                keys.r,
                float(alpha),
                float(keys.dropout),
                doc.loc(*path, i),
                target_locs,
                doc.loc(*path, i, "r"),
            )
        )
    return tuple(out)
