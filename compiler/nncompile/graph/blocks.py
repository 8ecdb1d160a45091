"""Blocks: parameterised subgraphs from the spec's `blocks:`, used as ops (`op: ResBlock`).

The build stage builds each block's definition once, as a sub-graph of its own (`definition`:
names and topology checked once, not at every use). The shapes stage shapes a copy of it at each
use (and each copy of `repeat: N`), with the block's `$param` expressions substituted by the
node's values (shapes/blocks.py); planning turns all uses of a block into one class
(plan/block_class.py). `$` expressions allow names, numbers, + - * / // % and parentheses; they
are parsed with `ast` and evaluated by walking the tree, never with eval.
"""

from __future__ import annotations

import ast
import math
import operator
import re

import networkx as nx

from ..errors import SpecError, did_you_mean
from ..limits import MAX_NODES
from ..pyfmt import identifier, literal
from ..spec.model import BlockDocument, BlockSpec, InputSpec, NodeSpec, OutputSpec, Ref, Spec
from ..spec.tuning import Tuning
from .names import check_name

MAX_EXPRESSION = 200  # characters: parameter arithmetic is short
OPERATORS = {
    ast.Add: ("+", operator.add, 1),
    ast.Sub: ("-", operator.sub, 1),
    ast.Mult: ("*", operator.mul, 2),
    ast.Div: ("/", operator.truediv, 2),
    ast.FloorDiv: ("//", operator.floordiv, 2),
    ast.Mod: ("%", operator.mod, 2),
}
MAX_REPEAT = 1000


# --- `$` expressions ------------------------------------------------------------------------------


# `$` before a parameter name or an opening parenthesis: `$c * 2`, `$d * ($k - 1) // 2`, `$(k - 1) // 2`
PARAMETER_MARK = re.compile(r"\$(?=[A-Za-z_(])")


def is_expression(value) -> bool:
    """A string that uses a parameter anywhere in it is an expression (or an error, never text)."""
    return isinstance(value, str) and PARAMETER_MARK.search(value) is not None


def uses_expression(value) -> bool:
    return is_expression(value) or (isinstance(value, list) and any(is_expression(v) for v in value))


def parse_expression(text: str, params, loc, node: str) -> ast.expr:
    """The tree of a `$` expression after checking it holds only allowed parts and names. Names
    inside it are parameters with or without their `$` (`$(k - 1) // 2` and `($k - 1) // 2`)."""
    glued = re.search(r"[\w.]\$[A-Za-z_]\w*", text)
    if glued:
        raise SpecError(
            f"{text!r} is not a parameter expression: {glued.group()[1:]!r} is glued to other text",
            loc,
            node=node,
            hint="a `$` argument is arithmetic over parameters (`$d * ($k - 1) // 2`); "
            "text cannot be pasted together from parameters",
        )
    body = PARAMETER_MARK.sub("", text).strip()
    if len(body) > MAX_EXPRESSION:
        raise SpecError(f"parameter expression longer than {MAX_EXPRESSION} characters", loc, node=node)
    try:
        tree = ast.parse(body, mode="eval").body
    except SyntaxError:
        raise SpecError(
            f"cannot read the parameter expression {text!r}",
            loc,
            node=node,
            hint="write `$c`, `$c * 2`, `$d * ($k - 1) // 2` or `$(c + 1) // 2`",
        ) from None
    for part in ast.walk(tree):
        if isinstance(part, ast.Name):
            if part.id not in params:
                raise SpecError(
                    f"{text!r} uses '{part.id}', which is not a parameter of the block",
                    loc,
                    node=node,
                    hint=did_you_mean(part.id, params) or "parameters: " + (", ".join(params) or "none"),
                )
        elif isinstance(part, ast.Constant):
            if not isinstance(part.value, int | float) or isinstance(part.value, bool):
                raise SpecError(f"{text!r}: only numbers may appear in an expression", loc, node=node)
        elif (
            not isinstance(part, ast.BinOp | ast.UnaryOp | ast.Load | ast.USub | ast.UAdd)
            and type(part) not in OPERATORS
        ):
            raise SpecError(
                f"{text!r}: {type(part).__name__} is not allowed in a parameter expression",
                loc,
                node=node,
                hint="use names, numbers, + - * / // % and parentheses",
            )
    return tree


def evaluate(tree: ast.expr, values: dict[str, object]):
    if isinstance(tree, ast.Name):
        return values[tree.id]
    if isinstance(tree, ast.Constant):
        return tree.value
    if isinstance(tree, ast.UnaryOp):
        value = evaluate(tree.operand, values)
        return -value if isinstance(tree.op, ast.USub) else value
    return OPERATORS[type(tree.op)][1](evaluate(tree.left, values), evaluate(tree.right, values))


def render(tree: ast.expr, outer: int = 0, right: bool = False) -> str:
    """Python source for an expression, parenthesised only where precedence needs it."""
    if isinstance(tree, ast.Name):
        return identifier(tree.id)
    if isinstance(tree, ast.Constant):
        return literal(tree.value)
    if isinstance(tree, ast.UnaryOp):
        return ("-" if isinstance(tree.op, ast.USub) else "+") + render(tree.operand, 3)
    symbol, _, precedence = OPERATORS[type(tree.op)]
    text = f"{render(tree.left, precedence)} {symbol} {render(tree.right, precedence, True)}"
    return f"({text})" if precedence < outer or (right and precedence == outer) else text


def substitute(node: NodeSpec, params: dict[str, object], values: dict[str, object]) -> dict[str, object]:
    """The node's arguments with every `$` expression replaced by its value at one use."""
    out = {}
    for key, value in node.params.items():
        if is_expression(value):
            out[key] = _value(node, key, value, params, values, node.param_loc(key))
        elif isinstance(value, list) and any(is_expression(v) for v in value):
            out[key] = [
                _value(node, key, v, params, values, node.doc.loc("nodes", node.id, key, i))
                if is_expression(v)
                else v
                for i, v in enumerate(value)
            ]
        else:
            out[key] = value
    return out


def code(node: NodeSpec, key: str, params) -> str:
    """The Python source of a `$`-valued argument inside the block class (`c * 2`, `(k, k)`)."""
    value = node.params[key]
    if is_expression(value):
        return render(parse_expression(value, params, node.param_loc(key), node.id))
    items = [
        render(parse_expression(v, params, node.param_loc(key), node.id)) if is_expression(v) else literal(v)
        for v in value
    ]
    return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"


def _value(node, key, text, params, values, loc):
    tree = parse_expression(text, params, loc, node.id)
    try:
        value = evaluate(tree, values)
    except (ZeroDivisionError, TypeError, OverflowError) as exc:
        raise SpecError(f"{text!r} cannot be computed: {exc}", loc, node=node.id) from None
    # the YAML loader bounds the values a spec writes; an expression can still leave the range
    if isinstance(value, int) and not -(2**63) <= value < 2**63:
        raise SpecError(
            f"{text!r} is {value}, which does not fit in 64 bits",
            loc,
            node=node.id,
            hint="torch sizes and arguments are 64-bit integers",
        )
    if isinstance(value, float) and not math.isfinite(value):
        raise SpecError(f"{text!r} is {value}, not a finite number", loc, node=node.id)
    return value


# --- a block's definition -------------------------------------------------------------------------


def definition(block: BlockSpec, spec: Spec) -> Spec:
    """The block as a spec of its own, its `$` arguments as written and its inputs of no known
    shape yet: what the build stage builds once, and each use copies with its own values
    (`dataclasses.replace` of `inputs` and `nodes`)."""
    output = block.output or Ref(block.nodes[-1].id, None, block.loc)
    return Spec(
        path=spec.path,
        sha256="",
        name=block.name,
        inputs=[InputSpec(name, (), "float32", block.loc) for name in block.inputs],
        nodes=block.nodes,
        outputs=[OutputSpec("out", output)],
        task=None,
        doc=BlockDocument(spec.doc, block.name),
        blocks=spec.blocks,
    )


# --- checks on the spec's blocks ------------------------------------------------------------------


def check(spec: Spec) -> None:
    """Block-level checks graph.build runs: names, `$` outside blocks, tuning keys inside them,
    and recursion."""
    for node in spec.nodes:
        for key, value in node.params.items():
            if uses_expression(value):
                raise SpecError(
                    f"argument '{key}' uses a block parameter ({value!r}) outside a block",
                    node.param_loc(key),
                    node=node.id,
                    hint="`$name` is only allowed in the nodes of a block under `blocks:`",
                )

    uses = nx.DiGraph()
    for block in spec.blocks.values():
        check_name(block.name, "block", block.loc)
        for param in block.params:
            check_name(param, f"block '{block.name}' parameter", block.loc)
        if block.name == spec.name:
            raise SpecError(
                f"block '{block.name}' has the name of the model class",
                block.loc,
                hint="rename the block or the model",
            )
        uses.add_node(block.name)
        for node in block.nodes:
            _check_no_tuning(block, node)
            for key, value in node.params.items():
                if uses_expression(value):
                    code(node, key, block.params)  # checks the expression
            if node.op in spec.blocks:
                uses.add_edge(block.name, node.op, node=node)
    try:
        cycle = nx.find_cycle(uses)
    except nx.NetworkXNoCycle:
        cycle = None
    if cycle:
        path = " -> ".join([a for a, _ in cycle] + [cycle[0][0]])
        where = uses.edges[cycle[0]]["node"]
        raise SpecError(
            f"block '{cycle[0][0]}' uses itself: {path}",
            where.op_loc(),
            node=where.id,
            hint="a block cannot contain itself; use `repeat:` to chain copies",
        )
    check_expanded_size(spec)


def _check_no_tuning(block: BlockSpec, node: NodeSpec) -> None:
    """Freezing and learning rates belong to a use of the block (each use may train differently),
    never to its definition: they go on the node that uses it, with paths inside the block."""
    for key in Tuning.model_fields:
        if node.tuning.given(key):
            raise SpecError(
                f"`{key}` on node '{node.id}' of block '{block.name}': freezing and learning rates "
                "go on the node that uses the block",
                node.doc.key_loc("nodes", node.id, key),
                node=node.id,
                hint=f"write `{key}: ...` on the node with `op: {block.name}`; `freeze` and `trainable` "
                f"there take paths inside the block (`freeze: [{node.id}]`)",
            )


def check_expanded_size(spec: Spec) -> None:
    """Refuse a model of more than MAX_NODES nodes once its blocks are expanded (every copy of
    every inner node counts), counted from the block structure before anything is built, so
    `repeat: 1000` nested three deep, or blocks that each use the one before twice, fail at once."""
    sizes: dict[tuple[str, str], int] = {}  # (block, its values) -> nodes of one copy

    def size(node: NodeSpec, params: dict[str, object]) -> int:
        """How many nodes `node` stands for, at most MAX_NODES + 1 (the count stops there)."""
        block = spec.blocks.get(node.op)
        if block is None:
            return 1
        values = {k: params.get(k, d) for k, d in block.params.items()}
        key = (block.name, repr(sorted(values.items(), key=lambda kv: kv[0])))
        if key not in sizes:
            total = 0
            for inner in block.nodes:
                try:
                    inner_params = substitute(inner, block.params, values)
                except SpecError:  # reported when the block is built
                    inner_params = inner.params
                total = min(total + size(inner, inner_params), MAX_NODES + 1)
                if total > MAX_NODES:
                    break
            sizes[key] = total
        repeat = params.get("repeat", 1)
        repeat = repeat if isinstance(repeat, int) and not isinstance(repeat, bool) and repeat > 1 else 1
        return min(repeat * sizes[key], MAX_NODES + 1)

    total = 0
    for node in spec.nodes:
        total += size(node, node.params)
        if total > MAX_NODES:
            what = f"block '{node.op}'" + (
                f" repeated {node.params['repeat']} times" if node.params.get("repeat", 1) != 1 else ""
            )
            raise SpecError(
                f"the model has more than {MAX_NODES:,} nodes once its blocks are expanded "
                f"(node '{node.id}' uses {what})"
                if node.op in spec.blocks
                else f"the model has more than {MAX_NODES:,} nodes",
                node.op_loc() if node.op in spec.blocks else node.loc,
                node=node.id,
                hint="every copy of every node of a block counts; the limit is in nncompile/limits.py",
            )
