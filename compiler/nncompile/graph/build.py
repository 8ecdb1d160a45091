"""Stage 2, build: a `Spec` -> a networkx DAG with ordered input ports, and topology checks; each
block's definition once, as a sub-graph of its own."""

from __future__ import annotations

import builtins
import dataclasses
from dataclasses import dataclass, field

import networkx as nx

from ..errors import Collector, Diagnostic, NncompileError, SpecError, did_you_mean
from ..spec.model import Ref, Spec
from . import blocks
from .names import CLASS_NAME_TAKEN, check_name


@dataclass
class Graph:
    """The spec as a DAG. `order` lists the live nodes (those that reach an output) topologically."""

    spec: Spec
    dag: nx.DiGraph
    order: list[str]
    inputs_of: dict[str, tuple[Ref, ...]]
    warnings: list[Diagnostic] = field(default_factory=list)
    broken: frozenset[str] = frozenset()  # nodes whose wiring failed: their shapes are not checked
    # each block's definition by name, built once; the model's graph and every block's share it
    blocks: dict[str, Graph] = field(default_factory=dict)


def check_class_name(spec: Spec) -> None:
    """The generated nn.Module is `class <name>`: it must not shadow a name the file uses."""
    name = spec.name
    problem = None
    if name.startswith("_"):
        problem = "starts with '_', which the generated file keeps for its helpers"
    elif hasattr(builtins, name):
        problem = "is a Python builtin"
    elif name in CLASS_NAME_TAKEN:
        problem = "is a name the generated code uses itself"
    if problem:
        raise SpecError(
            f"class name '{name}' {problem}",
            spec.doc.loc("name"),
            hint="use a CamelCase class name such as CustomResNet",
        )


def _check_shared(spec: Spec, node, names: list[str]) -> None:
    """`shares:` names another node of the same graph, one that builds its own module."""
    loc = node.doc.loc("nodes", node.id, "shares")
    nodes = [n.id for n in spec.nodes]
    if node.shares not in nodes:
        raise SpecError(
            f"node '{node.id}' shares unknown node '{node.shares}'",
            loc,
            node=node.id,
            hint=did_you_mean(node.shares, nodes) or "`shares:` names a node of the same `nodes:`",
        )
    target = spec.node(node.shares)
    if target.id == node.id or target.shares is not None:
        root = target.shares if target.id != node.id else None
        raise SpecError(
            f"node '{node.id}' shares '{target.id}', which "
            + ("is itself" if root is None else f"shares '{root}' in turn"),
            loc,
            node=node.id,
            hint=f"share the node that builds the module: `shares: {root}`" if root else "name another node",
        )


def build(spec: Spec, later: Collector | None = None) -> Graph:
    """The DAG of `spec`, and of each of its blocks (`Graph.blocks`). With `later`, a node of the
    model wired to an unknown name is reported there and marked broken, so the shapes of the rest
    are still checked; without it, that is raised."""
    blocks.check(spec)
    errors = Collector()
    graph = None
    try:
        graph = _graph(spec, later)
    except NncompileError as err:
        errors.add(err)
    definitions: dict[str, Graph] = {}
    for block in spec.blocks.values():
        if not block.nodes:  # its nodes' mistakes were reported when the spec loaded
            continue
        try:
            definitions[block.name] = _graph(blocks.definition(block, spec))
        except NncompileError as err:
            for d in err.diagnostics:
                d.message = f"{d.message} [in block '{block.name}']"
            errors.add(err)
    errors.raise_if_any()
    for definition in [graph, *definitions.values()]:
        definition.blocks = definitions
    for name, definition in definitions.items():
        for w in definition.warnings:
            graph.warnings.append(dataclasses.replace(w, message=f"{w.message} [in block '{name}']"))
    return graph


def _graph(spec: Spec, later: Collector | None = None) -> Graph:
    """The DAG of one graph: the model's or a block's."""
    errors = Collector()
    broken: set[str] = set()

    def wiring(node_id: str, err: SpecError) -> None:
        if later is None:
            errors.add(err)
        else:
            later.add(err)
            broken.add(node_id)

    try:
        check_class_name(spec)
    except SpecError as err:
        errors.add(err)
    dag = nx.DiGraph()
    for inp in spec.inputs:
        try:
            check_name(inp.name, "input", inp.loc)
        except SpecError as err:
            errors.add(err)
        dag.add_node(inp.name, kind="input")
    inputs_of: dict[str, tuple[Ref, ...]] = {}
    previous: str | None = None
    for node in spec.nodes:
        try:
            check_name(node.id, "node", node.loc, node=node.id)
            if node.id in dag:
                raise SpecError(
                    f"node '{node.id}' has the name of an input",
                    node.loc,
                    node=node.id,
                    hint="inputs and nodes share one namespace; rename one",
                )
        except SpecError as err:
            errors.add(err)
        dag.add_node(node.id, kind="node")
        if node.inputs is not None:
            inputs_of[node.id] = node.inputs
        elif previous is not None:
            inputs_of[node.id] = (Ref(previous, None, node.loc),)
        elif len(spec.inputs) == 1:
            inputs_of[node.id] = (Ref(spec.inputs[0].name, None, node.loc),)
        else:
            wiring(
                node.id,
                SpecError(
                    "the first node has no `in:` and the spec has several inputs",
                    node.loc,
                    node=node.id,
                    hint=f"say which input it takes, for example `in: {spec.inputs[0].name}`",
                ),
            )
            inputs_of[node.id] = ()
        previous = node.id
    names = list(dag.nodes)
    for node in spec.nodes:
        if node.shares is not None:
            try:
                _check_shared(spec, node, names)
            except SpecError as err:
                errors.add(err)
            else:
                dag.add_edge(node.shares, node.id)  # the module is built before it is applied again
    for node_id, refs in inputs_of.items():
        for ref in refs:
            if ref.node not in dag:
                wiring(
                    node_id,
                    SpecError(
                        f"unknown input '{ref.node}'",
                        ref.loc,
                        node=node_id,
                        hint=did_you_mean(ref.node, names) or "known: " + ", ".join(names),
                    ),
                )
            else:
                dag.add_edge(ref.node, node_id)
    for out in spec.outputs:
        if out.ref.node not in dag:
            errors.add(
                SpecError(
                    f"output '{out.name}' refers to unknown node '{out.ref.node}'",
                    out.ref.loc,
                    hint=did_you_mean(out.ref.node, names) or "known: " + ", ".join(names),
                )
            )
    if not spec.outputs:
        errors.add(SpecError("the spec has no outputs", spec.doc.loc(), hint="add `outputs: {name: node}`"))
    errors.raise_if_any()

    try:
        cycle = nx.find_cycle(dag)
    except nx.NetworkXNoCycle:
        cycle = None
    if cycle:
        path = " -> ".join([u for u, _ in cycle] + [cycle[0][0]])
        first = cycle[0][1]
        raise SpecError(
            f"the graph has a cycle: {path}",
            spec.doc.loc("nodes", first, "in"),
            node=first,
            hint="a node cannot depend on itself; break the loop",
        )

    input_names = {i.name for i in spec.inputs}
    for out in spec.outputs:
        upstream = nx.ancestors(dag, out.ref.node) | {out.ref.node}
        if not input_names & upstream and not broken & upstream:  # a broken node was reported
            raise SpecError(f"output '{out.name}' is not reached from any input", out.ref.loc)

    live = set()
    for out in spec.outputs:
        live |= nx.ancestors(dag, out.ref.node) | {out.ref.node}
    position = {name: i for i, name in enumerate(names)}
    order = [
        n
        for n in nx.lexicographical_topological_sort(dag, key=position.__getitem__)
        if n in live and dag.nodes[n]["kind"] == "node"
    ]
    warnings = [
        Diagnostic(
            f"node '{n.id}' reaches no output; it is left out of the generated model",
            n.loc,
            node=n.id,
            hint="wire it into an output or delete it",
            severity="warning",
        )
        for n in spec.nodes
        if n.id not in live
    ]
    warnings += [
        Diagnostic(f"input '{i.name}' is not used by any output", i.loc, severity="warning")
        for i in spec.inputs
        if i.name not in live
    ]
    return Graph(spec, dag, order, inputs_of, warnings, frozenset(broken))
