"""forward() bodies: one statement per node in topological order, with shape comments and the
release of intermediates after their last use. Used for the model and for each block class."""

from __future__ import annotations

from ..pyfmt import Entry, Expr, Seq, literal, statement, substitute
from ..shapes.applying import folded_comment
from ..shapes.propagate import Shaped

TEMP_NAMES = ("x", "h", "out", "value")


def forward_lines(shaped: Shaped, comments: dict[str, str | None] | None = None) -> list[str]:
    """Straight-line forward(): one statement per node, in topological order.

    A value used once, by the very next statement, lives in a reused temporary (`x = f(x)`), so
    rebinding frees it; other values are named after their node and deleted after their last use.
    The last node's statement is the return statement where its value alone is returned.
    `comments` replaces the shape comment of the nodes it names.
    """
    spec = shaped.graph.spec
    order = list(shaped.nodes)
    uses: dict[str, list[int]] = {}  # value -> positions of the statements reading it
    for k, node_id in enumerate(order):
        for ref in shaped.nodes[node_id].inputs:
            uses.setdefault(ref.node, []).append(k)
    for out in spec.outputs:  # the return statement reads the outputs
        uses.setdefault(out.ref.node, []).append(len(order))
    taken = set(shaped.inputs) | set(order)
    temp = next(n for n in (*TEMP_NAMES, *(f"x{i}" for i in range(len(taken) + 1))) if n not in taken)

    var: dict[str, str] = {i: i for i in shaped.inputs}
    lines: list[str] = []
    for k, node_id in enumerate(order):
        result = shaped.nodes[node_id]
        args = [var[r.node] + port_access(shaped, r) for r in result.inputs]
        expr: Expr = substitute(result.built.call, args)
        var[node_id] = temp if uses[node_id] == [k + 1] else node_id
        comment = comments[node_id] if comments and node_id in comments else shape_comment(result.built)
        if k == len(order) - 1 and _returned_as_is(spec.outputs, node_id, uses[node_id], k):
            return lines + statement("return ", expr, 2, comment)  # returning frees its inputs
        lines += statement(f"{var[node_id]} = ", expr, 2, comment)
        dead = sorted(
            {
                var[r.node]
                for r in result.inputs
                if r.node not in shaped.inputs and max(uses[r.node]) == k and var[r.node] != var[node_id]
            }
        )
        if dead:
            lines.append("        del " + ", ".join(dead))
    outputs = [(o.name, var[o.ref.node] + port_access(shaped, o.ref)) for o in spec.outputs]
    if len(outputs) == 1:
        lines += statement("return ", outputs[0][1], 2)
    else:
        lines += statement("return ", Seq(tuple(Entry(literal(n), v) for n, v in outputs), "{}"), 2)
    return lines


def _returned_as_is(outputs, node_id: str, uses: list[int], k: int) -> bool:
    """Whether the one output is the whole value of node `node_id` (statement `k`), which
    nothing else reads (`uses`): that statement is then the return statement."""
    only = len(outputs) == 1 and (outputs[0].ref.node, outputs[0].ref.port) == (node_id, None)
    return only and uses == [k + 1]


def port_access(shaped: Shaped, ref) -> str:
    if ref.port is not None and ref.node in shaped.nodes:
        return shaped.nodes[ref.node].built.ports[ref.port].access
    return ""


def shape_comment(built) -> str:
    if built.per_item:  # the op's own output, then the items unfolded from the batch
        return f"{folded_comment(built.out)} -> {built.out.comment()}"
    if built.out is not None:
        return built.out.comment()
    return ", ".join(f"{name}: {port.info.comment()}" for name, port in built.ports.items())
