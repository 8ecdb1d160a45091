"""How a node applies its op, for the shapes stage: once, again with another node's module
(`shares:`), or on each item of a dim folded into the batch (`per_item:`).

A shared node rebuilds the module it shares on its own inputs and checks that the module would be
the same; it then calls that module (`self.backbone(right)`) and owns no parameters. A node with
`per_item: d` runs its op on inputs whose dim d is folded into the batch, `(B, T, C, H, W)` ->
`(B*T, C, H, W)`, and unfolds the result, `(B*T, 512)` -> `(B, T, 512)`: plain `torch.flatten` and
`torch.unflatten` around the call in forward().
"""

from __future__ import annotations

import dataclasses

from ..errors import NncompileError, SpecError
from ..ops import Built, TensorInfo
from ..ops.base import META_BATCH, shapes_text
from ..pyfmt import Arg, Attr, Call, Input, Seq, literal, substitute
from .blocks import OpKinds


def op_text(node) -> str:
    """What the summary and the graph show as a node's op: `shares backbone` for a shared node."""
    return f"shares {node.shares}" if node.shares else node.op


def build_node(node, kinds: OpKinds, nodes: dict, inputs: list[TensorInfo], sources: list[str]) -> Built:
    """The node's `Built`; `nodes` holds the results of the nodes before it (shapes.NodeResult)."""
    if node.per_item is None:
        return _build(node, kinds, nodes, inputs, sources)
    return _per_item(node, kinds, nodes, inputs, sources)


def _build(node, kinds, nodes, inputs, sources) -> Built:
    if node.shares is None:
        return _takes_dict(node, kinds.of(node), node.op).build(node, inputs, sources)
    return _apply_again(node, nodes[node.shares], kinds, inputs, sources)


def _takes_dict(node, kind, what: str):
    """`kind`, once checked to take what `in:` gives: `in: {name: ref}` passes one dict of tensors,
    which only a layer by import path may take (torchvision.ops.FeaturePyramidNetwork)."""
    if node.in_keys is not None and not getattr(kind, "takes_dict", False):
        raise SpecError(
            f"`in:` is a mapping, which passes one dict of tensors, but {what} takes tensors",
            node.doc.loc("nodes", node.id, "in"),
            node=node.id,
            hint="write `in: [a, b]`; a dict goes to a layer by import path that takes one "
            "(torchvision.ops.FeaturePyramidNetwork, a user layer)",
        )
    return kind


def _apply_again(node, result, kinds, inputs, sources) -> Built:
    target = result.spec
    if result.built.module is None and result.built.block is None:
        raise SpecError(
            f"node '{node.id}' shares '{target.id}', which has no weights to share ({target.op} is a "
            "functional op)",
            node.doc.loc("nodes", node.id, "shares"),
            node=node.id,
            hint=f"write the op again: `{{op: {target.op}, in: ...}}`",
        )
    try:
        # the module applied to this node's inputs, in a dict of this node's keys if any
        applied = dataclasses.replace(target, in_keys=node.in_keys)
        again = _takes_dict(node, kinds.of(target), target.op).build(applied, inputs, sources)
    except NncompileError as err:
        for d in err.diagnostics:
            d.message = f"{d.message} [applied again by node '{node.id}']"
        raise
    if module_code(again) != module_code(result.built):
        changed = [
            f"{k} = {v} for '{target.id}' but {again.inferred.get(k)} here"
            for k, v in result.built.inferred.items()
            if again.inferred.get(k) != v
        ]
        raise SpecError(
            f"node '{node.id}' applies the module of '{target.id}' to {shapes_text(inputs, sources)}, "
            "which needs a module built differently" + (": " + "; ".join(changed) if changed else ""),
            node.doc.loc("nodes", node.id, "shares"),
            node=node.id,
            hint=f"'{target.id}' takes {shapes_text(result.in_infos, [str(r) for r in result.inputs])}; "
            "give this node inputs of those sizes",
        )
    return Built(init=[], call=again.call, out=again.out, ports=again.ports, shares=target.id)


def module_code(built: Built) -> str:
    """The code that builds a node's module, a block's inner code included, comments aside: equal
    for two builds that make the same module."""
    parts = [repr([(prefix, expr) for prefix, expr, _ in built.init])]
    for instance in built.block.instances if built.block is not None else ():
        parts += [code_of(r.built) for r in instance.shaped.nodes.values()]
    return "\n".join(parts)


def code_of(built: Built) -> str:
    """What a node contributes to the generated file, comments aside, for comparing two builds."""
    return module_code(built) + "\n" + repr(built.call)


def _per_item(node, kinds, nodes, inputs: list[TensorInfo], sources: list[str]) -> Built:
    dim = node.per_item
    loc = node.doc.loc("nodes", node.id, "per_item")
    for info, source in zip(inputs, sources, strict=True):
        if dim >= len(info.shape):
            raise SpecError(
                f"per_item: {dim}, but {source} {info.comment()} has no dim {dim}",
                loc,
                node=node.id,
                hint="per_item names the dim of the items, counting the batch as 0: 1 for (B, T, C, H, W)",
            )
    counts = sorted({info.shape[dim] for info in inputs})
    if len(counts) > 1:
        raise SpecError(
            f"per_item folds dim {dim}, whose size differs between the inputs: {shapes_text(inputs, sources)}",
            loc,
            node=node.id,
            hint="give every input the same number of items",
        )
    count = counts[0]
    folded = [fold(info, dim) for info in inputs]
    built = _build(node, kinds, nodes, folded, sources)
    if built.out is None:
        raise SpecError(
            f"per_item needs an op that returns one tensor; {node.op or node.shares} returns "
            + ", ".join(built.ports),
            loc,
            node=node.id,
            hint="apply per_item to a node with one output, then pick ports after it",
        )
    for plain, info in zip(folded, inputs, strict=True):  # comments quote the folded inputs as (B*T, ...)
        built.init = [
            (
                prefix,
                expr,
                comment.replace(plain.comment(), folded_comment(info, dim)) if comment else comment,
            )
            for prefix, expr, comment in built.init
        ]
    out = built.out
    built.out = TensorInfo((META_BATCH, count, *out.shape[1:]), out.dtype)
    folds = [_fold(i, dim) for i in range(len(inputs))]
    items = Seq((Attr(Input(0), ".shape[0]"), literal(-1)), "()")  # not len(): export keeps B dynamic
    built.call = Call(
        "torch.unflatten", (Arg(None, substitute(built.call, folds)), Arg(None, "0"), Arg(None, items))
    )
    built.per_item = True
    return built


def fold(info: TensorInfo, dim: int) -> TensorInfo:
    """The tensor the op of a `per_item: dim` node sees: dim `dim` folded into the batch."""
    shape = info.shape
    return TensorInfo((shape[0] * shape[dim], *shape[1:dim], *shape[dim + 1 :]), info.dtype)


def _fold(index: int, dim: int) -> Call:
    """`torch.flatten(x, 0, 1)`: the items of dim 1 become batch entries (dim d moves to 1 first)."""
    value = (
        Input(index)
        if dim == 1
        else Call("torch.movedim", (Arg(None, Input(index)), Arg(None, str(dim)), Arg(None, "1")))
    )
    return Call("torch.flatten", (Arg(None, value), Arg(None, "0"), Arg(None, "1")))


def folded_comment(info: TensorInfo, dim: int = 1) -> str:
    """The shape of `info` with its dim `dim` folded into the batch, as a comment: `(B*8, 3, 32, 32)`."""
    dims = info.comment()[1:-1].split(", ")
    items = dims.pop(dim)
    dims[0] = f"{dims[0]}*{items}"
    return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"
