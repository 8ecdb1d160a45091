"""Planning of blocks: every use of a block (each copy of each node, nested ones included) becomes
one instance of a single `class <Block>(nn.Module)`.

The class's constructor takes the block's parameters and, where an argument inside the block was
inferred from the block's input (an `in_channels`), that input dim; and `pretrained`, as the
model's does, when a node inside loads pretrained weights. Each argument inside the class is
written as the `$` expression the spec gave, as the parameter or input dim whose value it equals
at every use, or as a literal when it is the same everywhere; anything else is an error, so the
class reproduces every use exactly. Each copy's statements come from `node_inits`, the function
that gives the model's.
"""

from __future__ import annotations

import networkx as nx

from ..errors import SpecError
from ..graph.blocks import code, uses_expression
from ..ir import BlockClassIR
from ..ops.base import Built
from ..pyfmt import Arg, Call, Expr, docstring_text, literal, signature, statement
from ..shapes.blocks import BlockInstance
from ..shapes.propagate import Shaped
from ..spec.model import REQUIRED
from .forward import forward_lines, shape_comment
from .whole_models import PartInit, shared_builds

# a node's `__init__` statements: (target prefix, expression, comment)
Init = list[tuple[str, Expr, str | None]]


class BlockPlanner:
    """Plans one class per block used in `shaped` and the constructor call of every use."""

    def __init__(self, shaped: Shaped):
        self.spec = shaped.graph.spec
        self.instances: dict[str, list[BlockInstance]] = {}
        self.nested = nx.DiGraph()  # block -> the blocks its nodes use
        self.collect(shaped, None)
        self.args: dict[int, list[tuple[str, str]]] = {}  # id(instance) -> constructor (name, code)
        names = list(self.spec.blocks)
        order = nx.lexicographical_topological_sort(self.nested.reverse(), key=names.index)
        self.classes = [self.plan(name) for name in order]

    def collect(self, shaped: Shaped, parent: str | None) -> None:
        for result in shaped.nodes.values():
            use = result.built.block
            if use is None:
                continue
            name = use.block.name
            self.nested.add_node(name)
            if parent:
                self.nested.add_edge(parent, name)
            self.instances.setdefault(name, []).extend(use.instances)
            for instance in use.instances:
                self.collect(instance.shaped, name)

    def node_inits(self, shaped: Shaped, parts: dict[str, PartInit]) -> dict[str, Init]:
        """Each node's `__init__` statements, in the model and in a block's class alike: a part of
        a model another node also takes a part of (`parts`, from whole_models.shared_builds), a
        block's constructor call, or the op's own statements."""
        return {
            node_id: parts[node_id].init if node_id in parts else self.init(node_id, result.built)
            for node_id, result in shaped.nodes.items()
        }

    def init(self, node_id: str, built: Built) -> Init:
        """The op's statements, or the `self.<node> = Block(...)` statement of a node using a block."""
        if built.block is None:
            return built.init
        calls = [
            Call(built.block.block.name, tuple(Arg(k, v) for k, v in self.args[id(i)]))
            for i in built.block.instances
        ]
        expr = calls[0] if len(calls) == 1 else Call("nn.Sequential", tuple(Arg(None, c) for c in calls))
        return [(f"self.{node_id} = ", expr, None)]

    def plan(self, name: str) -> BlockClassIR:
        block = self.spec.blocks[name]
        instances = self.instances[name]
        raw = {n.id: n for n in block.nodes}
        first = instances[0].shaped
        pretrained = any(r.built.uses_pretrained for i in instances for r in i.shaped.nodes.values())
        context = _Context(block, instances, pretrained)
        init_lines: list[str] = []
        comments = {}
        by_copy = [self.node_inits(i.shaped, shared_builds(i.shaped)) for i in instances]
        for node_id in first.nodes:
            results = [i.shaped.nodes[node_id] for i in instances]
            inits = [inits_of[node_id] for inits_of in by_copy]
            for j, (prefix, _, comment) in enumerate(inits[0]):
                expr = context.rewrite([init[j][1] for init in inits], raw[node_id], results)
                if comment and any(init[j][2] != comment for init in inits):
                    comment = comment.split(" (")[0]  # the shapes differ between uses
                init_lines += statement(prefix, expr, 2, comment)
            texts = {shape_comment(r.built) for r in results}
            comments[node_id] = texts.pop() if len(texts) == 1 else None
        forward = forward_lines(first, comments)
        for instance in instances[1:]:
            if forward_lines(instance.shaped, comments) != forward:
                raise SpecError(
                    f"the uses of block '{name}' differ in their forward code (a `$` parameter in a "
                    "functional op's argument takes different values)",
                    block.loc,
                    hint="give that argument the same value at every use, or make two blocks",
                )
        params = context.signature_params()
        for instance in instances:
            self.args[id(instance)] = context.constructor_args(instance)
        uses = len(instances)
        return BlockClassIR(
            name=name,
            doc=f"Block `{name}` of {docstring_text(self.spec.path)}: {uses} use{'s' if uses > 1 else ''}.",
            init_signature=signature("__init__", ["self", *params], "None", 1),
            init_lines=init_lines,
            forward_signature=signature(
                "forward", ["self"] + [f"{n}: torch.Tensor" for n in block.inputs], "torch.Tensor", 1
            ),
            forward_lines=forward,
            uses=uses,
            pretrained=pretrained,
        )


class _Context:
    """The arguments of one block class: its parameters and the input dims it reads."""

    def __init__(self, block, instances: list[BlockInstance], pretrained: bool):
        self.block = block
        self.instances = instances
        self.pretrained = pretrained
        self.input_dims: dict[tuple[str, int], str] = {}  # (block input, dim) -> argument name
        self.per_use: dict[str, list[Expr]] = {}  # argument name -> its inferred value at each use
        # (code, its value at each use) of each `$` argument written so far: an inferred argument
        # usually equals one of them (a BatchNorm's num_features is the conv's out_channels)
        self.known: list[tuple[str, list[str]]] = []

    def rewrite(self, exprs: list[Expr], node, results) -> Expr:
        """One expression for the same statement of every use (see the module docstring)."""
        head = exprs[0]
        if isinstance(head, Call) and all(
            isinstance(e, Call)
            and e.func == head.func
            and e.suffix == head.suffix
            and [a.name for a in e.args] == [a.name for a in head.args]
            for e in exprs
        ):
            args = []
            for k, arg in enumerate(head.args):
                values = [e.args[k].value for e in exprs]
                if arg.name and arg.name in node.params and uses_expression(node.params[arg.name]):
                    args.append(Arg(arg.name, code(node, arg.name, self.block.params)))
                    self.known.append((args[-1].value, values))
                elif arg.name and arg.name not in node.params:  # inferred from a shape
                    args.append(Arg(arg.name, self.match(arg.name, values, node, results)))
                else:
                    args.append(Arg(arg.name, self.rewrite(values, node, results)))
            return Call(head.func, tuple(args), head.suffix)
        if any(repr(e) != repr(head) for e in exprs):
            raise SpecError(
                f"node '{node.id}' of block '{self.block.name}' is built differently at different uses, "
                "in a way the block's parameters do not express",
                node.loc,
                node=node.id,
                hint="use a `$` parameter for the argument that differs",
            )
        return head

    def match(self, arg: str, values: list[Expr], node, results) -> Expr:
        """The parameter or input dim that equals an inferred argument at every use."""
        direct = [r.node for r in results[0].inputs if r.node in self.block.inputs]
        inputs = direct + [n for n in self.block.inputs if n not in direct]
        params = [(p, [literal(i.values[p]) for i in self.instances]) for p in self.block.params]
        dims = []
        for name in inputs:
            ranks = {len(i.shaped.inputs[name].shape) for i in self.instances}
            for d in _dims_to_try(ranks, arg):
                dims.append(((name, d), [str(i.shaped.inputs[name].shape[d]) for i in self.instances]))
        known = self.known[::-1]  # the latest first: it is nearest upstream
        candidates = (dims + known + params) if direct else (known + params + dims)
        for key, seen in candidates:
            if seen == values:
                found = key if isinstance(key, str) else self.dim_arg(key, arg)
                self.known.append((found, values))
                return found
        if all(v == values[0] for v in values):
            return values[0]
        # no single dim gives it (an in_channels after a concat of two inputs): the constructor
        # takes it, and each use passes its own inferred value
        taken = set(self.block.params) | set(self.input_dims.values()) | set(self.per_use)
        name = next(
            n for n in (f"{node.id}_{arg}", *(f"{node.id}_{arg}{i}" for i in range(2, 999))) if n not in taken
        )
        self.per_use[name] = values
        self.known.append((name, values))
        return name

    def dim_arg(self, key: tuple[str, int], arg: str) -> str:
        if key not in self.input_dims:
            taken = set(self.block.params) | set(self.input_dims.values())
            dim = f"dim{key[1]}" if key[1] >= 0 else f"dim_from_end{-key[1]}"
            name = next(n for n in (arg, f"{key[0]}_{arg}", f"{key[0]}_{dim}") if n not in taken)
            self.input_dims[key] = name
        return self.input_dims[key]

    def signature_params(self) -> list[str]:
        out = [f"{name}: int" for name in self.input_dims.values()]
        out += [
            f"{name}: {'int' if values[0].isdigit() else 'tuple'}" for name, values in self.per_use.items()
        ]
        defaults = []
        for name, default in self.block.params.items():
            annotation = _annotation(self.instances[0].values[name])
            if default is REQUIRED:
                out.append(f"{name}: {annotation}")
            else:
                defaults.append(f"{name}: {annotation} = {literal(default)}")
        return out + defaults + (["pretrained: bool = True"] if self.pretrained else [])

    def constructor_args(self, instance: BlockInstance) -> list[tuple[str, str]]:
        args = [(name, str(instance.shaped.inputs[i].shape[d])) for (i, d), name in self.input_dims.items()]
        use = next(k for k, i in enumerate(self.instances) if i is instance)
        args += [(name, str(values[use])) for name, values in self.per_use.items()]
        args += [(name, literal(instance.values[name])) for name in self.block.params]
        return args + ([("pretrained", "pretrained")] if self.pretrained else [])


def _dims_to_try(ranks: set[int], arg: str) -> list[int]:
    """The input dims (batch excluded) that may give an inferred argument, likeliest first: by
    position when every use has the same rank, else from the end (all the uses have those)."""
    if len(ranks) > 1:
        return list(range(-1, -min(ranks), -1))
    rank = next(iter(ranks))
    channel_first = "channel" in arg or arg == "num_features"
    order = [1, rank - 1] if channel_first else [rank - 1, 1]
    return [d for d in dict.fromkeys(order + list(range(1, rank))) if 0 < d < rank]


def _annotation(value) -> str:
    if isinstance(value, list):
        return "tuple"
    return type(value).__name__ if isinstance(value, bool | int | float | str) else "object"
