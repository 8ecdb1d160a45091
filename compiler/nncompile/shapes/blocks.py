"""Blocks used by nodes. The build stage built each block's definition once (graph.build); at
each use, and each copy of `repeat: N`, this stage copies it with the use's `$` values and input
shapes and shapes it with the same `propagate` as the model (handed in through `OpKinds`, so the
recursion stays in this stage).

The node's `Built` holds what its inner nodes hold (imports, helpers, notes, whether weights are
pretrained), lifted to paths inside the block (`backbone.fc`, `1.backbone.fc` in the
second copy), and a meta module laid out as the generated class, one attribute per inner node: so
freezing, learning rates and the parameter counts treat a block as any other node. Planning
(plan/block_class.py) turns all uses of a block into one class."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .. import ops
from ..errors import NncompileError, SpecError, did_you_mean
from ..graph.blocks import MAX_REPEAT, substitute
from ..graph.build import Graph
from ..ops.base import Built, OpKind, TensorInfo, expect_arity
from ..pyfmt import Arg, Call, Input
from ..spec.model import REQUIRED, BlockSpec, InputSpec

if TYPE_CHECKING:
    import torch

    from .propagate import Shaped


@dataclass
class OpKinds:
    """The op kind of each node of one spec: a block of its `blocks:` or an op of the registry."""

    blocks: dict[str, Graph]  # each block's definition, built once by graph.build
    propagate: Callable[[Graph], Shaped]

    def of(self, node) -> OpKind:
        if node.op in self.blocks and node.op not in ops.MERGES and node.op not in ops.FUNCTIONAL:
            return BlockOp(self.blocks[node.op], self)
        return ops.resolve(node, self.blocks)


@dataclass
class BlockInstance:
    """One copy of a block at one use: its parameter values and its inner graph with shapes."""

    values: dict[str, object]
    shaped: Shaped


@dataclass
class BlockUse:
    """What a node using a block carries to planning (Built.block)."""

    block: BlockSpec
    instances: list[BlockInstance]  # one per copy (`repeat`)


@dataclass
class BlockOp:
    """A node using a block: each copy of the block's definition shaped by the same stages as the model."""

    definition: Graph
    kinds: OpKinds

    @property
    def block(self) -> BlockSpec:
        spec = self.definition.spec
        return spec.blocks[spec.name]

    def build(self, node, inputs: list[TensorInfo], sources: list[str]) -> Built:
        values = self.values(node)
        repeat = node.params.get("repeat", 1)
        if not isinstance(repeat, int) or isinstance(repeat, bool) or not 1 <= repeat <= MAX_REPEAT:
            raise SpecError(
                f"repeat must be an integer from 1 to {MAX_REPEAT}, not {repeat!r}",
                node.param_loc("repeat"),
                node=node.id,
            )
        names = self.block.inputs
        if len(inputs) != len(names):
            expect_arity(node, inputs, len(names))
        if repeat > 1 and len(names) != 1:
            raise SpecError(
                f"block '{self.block.name}' takes {len(names)} inputs, so it cannot be repeated",
                node.param_loc("repeat"),
                node=node.id,
                hint="`repeat` feeds each copy's output to the next copy: the block needs one input",
            )
        instances, current = [], inputs
        for copy in range(repeat):
            shaped = self.instantiate(node, values, current, copy if repeat > 1 else None)
            instances.append(BlockInstance(values, shaped))
            current = list(shaped.outputs.values())
        inner = [r.built for i in instances for r in i.shaped.nodes.values()]
        self.check_no_path_args(node, instances)
        pretrained = any(b.uses_pretrained for b in inner)
        return Built(
            init=[],  # planned with the block's class (plan/block_class.py)
            call=Call(f"self.{node.id}", tuple(Arg(None, Input(i)) for i in range(len(inputs)))),
            out=current[0],
            imports=set().union(*(b.imports for b in inner)),
            module=_module(instances),
            uses_pretrained=pretrained,
            notes=[n for b in inner for n in b.notes],
            block=BlockUse(self.block, instances),
            # with pretrained weights inside, the block's other layers are new (they train under `freeze: true`)
            new_layers=_paths(instances, _new_layers) if pretrained else [],
            helpers={k: v for b in inner for k, v in b.helpers.items()},
            default_frozen=_paths(instances, lambda b: b.default_frozen),
        )

    def check_no_path_args(self, node, instances: list[BlockInstance]) -> None:
        """A weights file is a constructor argument of the model, named after its node: a block's
        class, shared by its uses, has none to give it."""
        files = [
            (r.spec.id, path, loc)
            for r in instances[0].shaped.nodes.values()
            for _, path, loc in r.built.path_args
        ]
        if files:
            node_id, path, loc = files[0]
            raise SpecError(
                f"node '{node_id}' of block '{self.block.name}' loads a weights file ({path}), which "
                "a block cannot take",
                loc,
                node=node_id,
                hint="put that backbone in the top-level `nodes:`; inside a block, a backbone loads "
                "the weights its library downloads (`weights: DEFAULT`)",
            )

    def values(self, node) -> dict[str, object]:
        params = self.block.params
        for key in node.params:
            if key != "repeat" and key not in params:
                raise SpecError(
                    f"unknown parameter '{key}' for block '{self.block.name}'",
                    node.doc.key_loc("nodes", node.id, key),
                    node=node.id,
                    hint=did_you_mean(key, [*params, "repeat"])
                    or "its parameters: " + (", ".join(params) or "none") + " (and repeat)",
                )
        values = {}
        for name, default in params.items():
            if name in node.params:
                values[name] = node.params[name]
            elif default is REQUIRED:
                raise SpecError(
                    f"block '{self.block.name}' needs the parameter `{name}`",
                    node.op_loc(),
                    node=node.id,
                    hint=f"add `{name}: ...` to node '{node.id}'",
                )
            else:
                values[name] = default
        return values

    def instantiate(self, node, values: dict, inputs: list[TensorInfo], copy: int | None) -> Shaped:
        """One copy of the block shaped at this use: its definition with the `$` values
        substituted, fed the use's input shapes."""
        block, definition = self.block, self.definition
        spec = dataclasses.replace(
            definition.spec,
            inputs=[
                InputSpec(n, i.shape[1:], i.dtype, block.loc)
                for n, i in zip(block.inputs, inputs, strict=True)
            ],
            nodes=[dataclasses.replace(n, params=substitute(n, block.params, values)) for n in block.nodes],
        )
        try:
            return self.kinds.propagate(dataclasses.replace(definition, spec=spec))
        except NncompileError as err:
            use = f"in block '{block.name}' used by node '{node.id}'" + (
                f" (copy {copy + 1})" if copy is not None else ""
            )
            for d in err.diagnostics:
                d.message = f"{d.message} [{use}]"
            raise


def _module(instances: list[BlockInstance]) -> torch.nn.Module:
    """The meta module laid out as the generated class: one attribute per inner node that has a
    module, and an `nn.Sequential` of the copies of a `repeat`."""
    import torch

    copies = []
    for instance in instances:
        copy = torch.nn.Module()
        for node_id, result in instance.shaped.nodes.items():
            if result.built.module is not None:
                copy.add_module(node_id, result.built.module)
        copies.append(copy)
    return copies[0] if len(copies) == 1 else torch.nn.Sequential(*copies)


def _paths(instances: list[BlockInstance], paths_of: Callable[[Built], list[str]]) -> list[str]:
    """The paths `paths_of` gives inside each inner node, as paths inside the block's module."""
    out = []
    for k, instance in enumerate(instances):
        copy = f"{k}." if len(instances) > 1 else ""
        for node_id, result in instance.shaped.nodes.items():
            out += [copy + ".".join(filter(None, (node_id, p))) for p in paths_of(result.built)]
    return out


def _new_layers(built: Built) -> list[str]:
    """The layers of an inner node that no pretrained weights fill: its new head, or all of it."""
    if built.uses_pretrained:
        return built.new_layers
    has_parameters = built.module is not None and any(True for _ in built.module.parameters())
    return [""] if has_parameters else []
