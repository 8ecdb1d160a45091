"""Parts of one torchvision model (`output: backbone` and `output: aux_classifier` of the same
builder with the same weights, or the same weights file) in one spec: the generated `__init__`
builds the model, and loads its weights, once, into a local variable, and takes each part from
it. A part taken twice (two `output: backbone` nodes) is two models: sharing a module is what
`shares:` says, never implied. The shapes stage groups the parts the same way (`model_build`),
so each part's meta module is a part of the model the generated code builds for it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..ops.backbones.surgery import module_path_code
from ..shapes.propagate import Shaped

if TYPE_CHECKING:
    from ..ops.backbones.torchvision_parts import WholeModel


@dataclass
class PartInit:
    """A part's `__init__` statements when its model is shared, and its path arguments (the
    weights file's, kept by the part that builds the model)."""

    init: list
    path_args: list


def shared_builds(shaped: Shaped) -> dict[str, PartInit]:
    """Node id -> its `__init__` statements, for the nodes that take a part of a model another
    node also takes a part of; the first of them builds the model."""
    wholes: dict[str, WholeModel] = {
        n: r.built.whole_model for n, r in shaped.nodes.items() if r.built.whole_model is not None
    }
    if not wholes:
        return {}
    from ..ops.backbones.torchvision_parts import overlaps  # imported by the parts' own build

    builds: list[list[str]] = []  # the node ids of the parts taken from one build, in order
    for node_id, whole in wholes.items():
        build = next(
            (
                b
                for b in builds
                if wholes[b[0]].key == whole.key and not any(overlaps(whole.part, wholes[n].part) for n in b)
            ),
            None,
        )
        if build is None:
            builds.append([node_id])
        else:
            build.append(node_id)
    out = {}
    count = 0
    for node_ids in builds:
        if len(node_ids) == 1:
            continue
        count += 1
        local = "model" if count == 1 else f"model_{count}"
        first = wholes[node_ids[0]]  # it builds the model and loads the file its path argument names
        builder = first.build.func.rsplit(".", 1)[-1]
        for k, node_id in enumerate(node_ids):
            built, attr = shaped.nodes[node_id].built, f"self.{node_id}"
            solo = wholes[node_id].solo(attr)  # the statements built.init begins with
            init = (
                first.built_into(local, f"{builder}, built once for {', '.join(node_ids)}") if k == 0 else []
            )
            init.append((f"{attr} = ", local + module_path_code(wholes[node_id].part), solo[-1][2]))
            out[node_id] = PartInit(init + built.init[len(solo) :], built.path_args if k == 0 else [])
    return out
