"""The nodes the task does not train: those that feed only outputs no head trains. The
LightningModule freezes them (they never get a gradient, and DDP fails on trainable parameters
without one), and the header's and summary's frozen/trainable counts include them: one list for
both, so the counts say what training does."""

from __future__ import annotations

import networkx as nx

from ..shapes.propagate import Shaped


def trained_outputs(shaped: Shaped) -> list[str] | None:
    """The outputs the task's heads train, or None for `kind: custom` (the user's step decides)."""
    task = shaped.graph.spec.task
    if task is None or task.kind == "custom":
        return None
    if task.kind == "segmentation":
        from .kinds.segmentation import trained_outputs as segmentation_outputs

        return segmentation_outputs(task, shaped.outputs)
    names = list(shaped.outputs)
    return [head.output or names[0] for head in task.heads if (head.output or names[0]) in shaped.outputs]


def untrained_nodes(shaped: Shaped) -> list[str]:
    """Nodes with parameters that reach no trained output, in topological order."""
    trained_names = trained_outputs(shaped)
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
