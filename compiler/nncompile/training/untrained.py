"""The nodes the task does not train: those that feed only outputs no head trains. The
LightningModule freezes them (they never get a gradient, and DDP fails on trainable parameters
without one), and the header's and summary's frozen/trainable counts include them: one list for
both, so the counts say what training does."""

from __future__ import annotations

import networkx as nx

from ..shapes.propagate import Shaped


def untrained_nodes(shaped: Shaped, trained_names: list[str] | None) -> list[str]:
    """Nodes with parameters that reach none of the outputs the task trains (`trained_names`;
    None: the user's step decides, `kind: custom`), in topological order."""
    if not trained_names:
        return []
    refs = {o.name: o.ref.node for o in shaped.graph.spec.outputs}
    dag = shaped.graph.dag
    trained: set[str] = set()
    for name in trained_names:
        trained |= nx.ancestors(dag, refs[name]) | {refs[name]}
    return [
        node
        for node, result in shaped.nodes.items()
        if node not in trained
        and result.built.module is not None
        and any(True for _ in result.built.module.parameters())
    ]
