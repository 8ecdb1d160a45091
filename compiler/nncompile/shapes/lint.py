"""The shapes stage's invariants, checked on every compile: every live node has a shaped result
with an output value (one tensor or ports) and one input shape per input, blocks' inner graphs
included, and every output of the model has a shape."""

from __future__ import annotations

from ..errors import InternalError
from .propagate import Shaped


def lint(shaped: Shaped) -> None:
    for node_id in shaped.graph.order:
        result = shaped.nodes.get(node_id)
        if result is None:
            raise InternalError("shapes", "has no shaped result", node_id)
        built = result.built
        if built.out is None and not built.ports:
            raise InternalError("shapes", "has neither an output shape nor ports", node_id)
        if len(result.in_infos) != len(result.inputs):
            raise InternalError("shapes", "has a different number of input shapes and inputs", node_id)
        for instance in built.block.instances if built.block is not None else ():
            lint(instance.shaped)
    for out in shaped.graph.spec.outputs:
        if out.name not in shaped.outputs:
            raise InternalError("shapes", f"output '{out.name}' has no shape")
