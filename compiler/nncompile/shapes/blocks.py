"""Blocks used by nodes: each use builds the block's inner graph (graph.build) with its `$`
parameters substituted, and shapes it with the same `propagate` as the model (handed in through
`OpKinds`, so the recursion stays in this stage). Planning (plan/block_class.py) turns all uses of
a block into one class."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .. import ops
from ..errors import NncompileError, SpecError, did_you_mean
from ..graph.blocks import MAX_REPEAT, substitute
from ..graph.build import Graph, build
from ..ops.base import Built, OpKind, TensorInfo, expect_arity
from ..pyfmt import Arg, Call, Input
from ..spec.model import REQUIRED, BlockSpec, InputSpec, OutputSpec, Ref, Spec
from ..spec.tuning import Tuning

if TYPE_CHECKING:
    from .propagate import Shaped


@dataclass
class OpKinds:
    """The op kind of each node of one spec: a block of its `blocks:` or an op of the registry."""

    blocks: dict[str, BlockSpec]
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
    """A node using a block: each copy's inner graph built and shaped by the same stages as the model."""

    block: BlockSpec
    kinds: OpKinds

    def build(self, node, inputs: list[TensorInfo], sources: list[str]) -> Built:
        import torch

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
        if any(b.uses_pretrained for b in inner):
            raise SpecError(
                f"block '{self.block.name}' loads pretrained weights, which blocks do not support",
                node.op_loc(),
                node=node.id,
                hint="put the pretrained backbone in the top-level `nodes:`",
            )
        return Built(
            init=[],  # planned with the block's class (block_plan.py)
            call=Call(f"self.{node.id}", tuple(Arg(None, Input(i)) for i in range(len(inputs)))),
            out=current[0],
            imports=set().union(*(b.imports for b in inner)),
            module=torch.nn.ModuleList([b.module for b in inner if b.module is not None]),
            notes=[n for b in inner for n in b.notes],
            block=BlockUse(self.block, instances),
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

    def instantiate(self, node, values: dict, inputs: list[TensorInfo], copy: int | None):
        block = self.block
        nodes = [
            dataclasses.replace(n, params=substitute(n, block.params, values), tuning=Tuning())
            for n in block.nodes
        ]
        output = block.output or Ref(nodes[-1].id, None, block.loc)
        inner = Spec(
            path=node.doc.file,
            sha256="",
            name=block.name,
            inputs=[
                InputSpec(n, i.shape[1:], i.dtype, block.loc)
                for n, i in zip(block.inputs, inputs, strict=True)
            ],
            nodes=nodes,
            outputs=[OutputSpec("out", output)],
            task=None,
            doc=node.doc,
            blocks=self.kinds.blocks,
        )
        try:
            shaped = self.kinds.propagate(build(inner))
        except NncompileError as err:
            use = f"in block '{block.name}' used by node '{node.id}'" + (
                f" (copy {copy + 1})" if copy is not None else ""
            )
            for d in err.diagnostics:
                d.message = f"{d.message} [{use}]"
            raise
        return shaped
