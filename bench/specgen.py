"""Spec texts generated for the benchmarks: MLP chains and random DAGs of any size."""

from __future__ import annotations

import random

HEADER = "nncompile: 1\nname: {name}\ninputs:\n  x: [{width}]\nnodes:\n"
TASK = "task:\n  kind: regression\n"


def chain(n_nodes: int, width: int = 16) -> str:
    """A chain of `n_nodes` nodes alternating Linear and ReLU, the last a Linear."""
    lines = [HEADER.format(name=f"Chain{n_nodes}", width=width)]
    for i in range(n_nodes):
        last = i == n_nodes - 1
        if i % 2 == 0 or last:
            lines.append(f"  n{i}: {{op: Linear, out_features: {width}}}\n")
        else:
            lines.append(f"  n{i}: {{op: ReLU}}\n")
    return "".join(lines) + TASK


def mlp(layers: int, width: int) -> str:
    """An MLP of `layers` Linear layers with a ReLU between each two: 2 * layers - 1 nodes."""
    lines = [HEADER.format(name=f"MLP{layers}", width=width)]
    for i in range(layers):
        lines.append(f"  fc{i}: {{op: Linear, out_features: {width}}}\n")
        if i < layers - 1:
            lines.append(f"  act{i}: {{op: ReLU}}\n")
    return "".join(lines) + TASK


def random_dag(n_nodes: int, width: int = 16, seed: int = 0) -> str:
    """A random DAG of `n_nodes` nodes: a backbone of Linear/ReLU nodes where about one node in
    three is an `add` of its predecessor and a random earlier node (a skip connection of random
    length). Every node reaches the output, so none is pruned."""
    rng = random.Random(seed)
    lines = [HEADER.format(name=f"Dag{n_nodes}", width=width)]
    for i in range(n_nodes):
        if i >= 2 and i < n_nodes - 1 and rng.random() < 0.33:
            lines.append(f"  n{i}: {{op: add, in: [n{i - 1}, n{rng.randrange(i - 1)}]}}\n")
        elif i % 2 == 0 or i == n_nodes - 1:
            lines.append(f"  n{i}: {{op: Linear, out_features: {width}}}\n")
        else:
            lines.append(f"  n{i}: {{op: ReLU}}\n")
    return "".join(lines) + TASK
