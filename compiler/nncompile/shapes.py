"""Stage 3, shapes: run every node on the meta device in topological order.

Yields each node's output shapes and inferred constructor arguments. No weights are allocated
and nothing is downloaded, so this is exact and cheap even for very large backbones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from . import ops
from .errors import Collector, Diagnostic, SpecError
from .graph import Graph
from .limits import MAX_NODE_PARAMETERS, MAX_TENSOR_ELEMENTS
from .ops import Built, TensorInfo
from .ops.base import META_BATCH
from .spec import NodeSpec, Ref


@dataclass
class NodeResult:
    spec: NodeSpec
    inputs: tuple[Ref, ...]
    in_infos: list[TensorInfo]
    built: Built


@dataclass
class Shaped:
    graph: Graph
    inputs: dict[str, TensorInfo]
    nodes: dict[str, NodeResult]  # in topological order
    outputs: dict[str, TensorInfo]
    warnings: list[Diagnostic] = field(default_factory=list)


def propagate(graph: Graph) -> Shaped:
    spec = graph.spec
    inputs = {i.name: TensorInfo((META_BATCH, *i.shape), i.dtype) for i in spec.inputs}
    nodes: dict[str, NodeResult] = {}
    errors = Collector()
    failed: set[str] = set()
    for node_id in graph.order:
        node = spec.node(node_id)
        refs = graph.inputs_of[node_id]
        if any(r.node in failed for r in refs):
            failed.add(node_id)  # its shape error is reported upstream; an unknown op is not
            try:
                ops.resolve(node)
            except SpecError as err:
                errors.add(err)
            continue
        try:
            in_infos = [value_of(r, inputs, nodes, node_id) for r in refs]
            built = ops.resolve(node).build(node, in_infos, [str(r) for r in refs])
            check_limits(node, built)
        except SpecError as err:
            errors.add(err)
            failed.add(node_id)
            continue
        nodes[node_id] = NodeResult(node, refs, in_infos, built)
    errors.raise_if_any()
    outputs = {}
    for out in spec.outputs:
        try:
            outputs[out.name] = value_of(out.ref, inputs, nodes, None)
        except SpecError as err:
            errors.add(err)
    errors.raise_if_any()
    return Shaped(graph, inputs, nodes, outputs, list(graph.warnings))


def check_limits(node: NodeSpec, built: Built) -> None:
    """Reject sizes the meta device accepts but no machine could run (see limits.py)."""
    outs = [built.out] if built.out is not None else [p.info for p in built.ports.values()]
    for info in outs:
        per_sample = math.prod(info.shape[1:])
        if per_sample == 0:
            raise SpecError(
                f"{node.op} outputs an empty tensor {info.comment()}",
                node.loc,
                node=node.id,
                hint="a size argument is 0, or a pooling or crop leaves nothing of the input",
            )
        if per_sample > MAX_TENSOR_ELEMENTS:
            raise SpecError(
                f"{node.op} outputs {info.comment()}: {per_sample:,} elements per sample, more than "
                f"the limit of {MAX_TENSOR_ELEMENTS:,}",
                node.loc,
                node=node.id,
                hint="is a size mistyped? the limit is in nncompile/limits.py",
            )
    if built.module is not None:
        count = sum(p.numel() for p in built.module.parameters())
        if count > MAX_NODE_PARAMETERS:
            raise SpecError(
                f"{node.op} has {count:,} parameters, more than the limit of {MAX_NODE_PARAMETERS:,}",
                node.loc,
                node=node.id,
                hint="is a size mistyped? the limit is in nncompile/limits.py",
            )


def value_of(
    ref: Ref, inputs: dict[str, TensorInfo], nodes: dict[str, NodeResult], user: str | None
) -> TensorInfo:
    """The tensor a reference names, checking its port against what the node really returns."""
    if ref.node in inputs:
        if ref.port is not None:
            raise SpecError(
                f"input '{ref.node}' has no ports", ref.loc, node=user, hint=f"write `{ref.node}`"
            )
        return inputs[ref.node]
    built = nodes[ref.node].built
    if ref.port is None:
        if built.out is None:
            raise SpecError(
                f"node '{ref.node}' returns several values",
                ref.loc,
                node=user,
                hint="pick one: " + ", ".join(f"{ref.node}.{p}" for p in built.ports),
            )
        return built.out
    if ref.port not in built.ports:
        choices = ", ".join(f"{ref.node}.{p}" for p in built.ports)
        raise SpecError(
            f"node '{ref.node}' has no output '{ref.port}'",
            ref.loc,
            node=user,
            hint=f"its outputs: {choices}" if choices else f"it has one output: write `{ref.node}`",
        )
    return built.ports[ref.port].info
