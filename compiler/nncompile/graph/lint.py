"""The build stage's invariants, checked on every compile: `order` lists each live node once,
after everything it reads, and every output reads a computed value."""

from __future__ import annotations

from ..errors import InternalError
from .build import Graph


def lint(graph: Graph) -> None:
    if graph.broken:  # its wiring errors are the spec's, reported already
        return
    computed = {i.name for i in graph.spec.inputs}
    for node_id in graph.order:
        if node_id in computed:
            raise InternalError("build", "listed twice in the topological order", node_id)
        if node_id not in graph.inputs_of:
            raise InternalError("build", "has no input list", node_id)
        node = graph.spec.node(node_id)
        for ref in graph.inputs_of[node_id]:
            if ref.node not in computed:
                raise InternalError("build", f"reads '{ref.node}' before it is computed", node_id)
        if node.shares is not None and node.shares not in computed:
            raise InternalError("build", f"shares '{node.shares}' before it is built", node_id)
        computed.add(node_id)
    for out in graph.spec.outputs:
        if out.ref.node not in computed:
            raise InternalError("build", f"output '{out.name}' reads '{out.ref.node}', which is not computed")
