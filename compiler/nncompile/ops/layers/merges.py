"""Merges of several inputs, emitted as plain torch expressions: `concat`, `stack` and the
elementwise `add`, `sub`, `mul`, `div`."""

from __future__ import annotations

from dataclasses import dataclass

from ...errors import SpecError
from ...pyfmt import Arg, BinOp, Call, Input, Seq, literal
from ..base import Built, TensorInfo, expect_arity, op_failed, reject_unknown, runs_on_cpu, shapes_text


def _same_rank(node, inputs: list[TensorInfo], sources: list[str]) -> None:
    if len({len(i.shape) for i in inputs}) > 1:
        raise SpecError(
            f"{node.op} needs inputs of one rank, got {shapes_text(inputs, sources)}",
            node.op_loc(),
            node=node.id,
            hint="flatten, reshape or unsqueeze the inputs first",
        )


def _disagreement(node, inputs, sources, axis: int, why: str, hint: str) -> SpecError:
    """An error naming the dim where the inputs disagree (`why` says it) and the size each brings."""
    sides = ", ".join(f"{i.shape[axis]} from {s} {i.comment()}" for s, i in zip(sources, inputs, strict=True))
    return SpecError(f"{why}: {sides}", node.op_loc(), node=node.id, hint=hint)


@dataclass
class Concat:
    """`torch.cat` along `dim` (default 1, the channel/feature dim; the batch dim is 0)."""

    def build(self, node, inputs: list[TensorInfo], sources: list[str]) -> Built:
        import torch

        reject_unknown(node, ("dim",), "concat")
        expect_arity(node, inputs, 2, -1)
        dim = node.params.get("dim", 1)
        rank = len(inputs[0].shape)
        if not isinstance(dim, int) or isinstance(dim, bool) or not -rank <= dim < rank or dim % rank == 0:
            raise SpecError(
                f"concat dim {dim!r} is not a dim of {inputs[0].comment()} other than the batch dim",
                node.param_loc("dim") if "dim" in node.params else node.op_loc(),
                node=node.id,
                hint=f"use a dim from 1 to {rank - 1}",
            )
        _same_rank(node, inputs, sources)
        for axis in range(rank):
            if axis != dim % rank and len({i.shape[axis] for i in inputs}) > 1:
                raise _disagreement(
                    node,
                    inputs,
                    sources,
                    axis,
                    f"concat along dim {dim} needs equal sizes in dim {axis}",
                    "only the concatenated dim may differ; resize or pool one input first",
                )
        try:
            out = torch.cat([i.probe(runs_on_cpu(inputs)) for i in inputs], dim=dim)
        except Exception as exc:  # noqa: BLE001 - dtype clashes and the like
            raise op_failed(node, exc, inputs, sources) from None
        items = tuple(Input(i) for i in range(len(inputs)))
        return Built(
            init=[],
            call=Call("torch.cat", (Arg(None, Seq(items)), Arg("dim", literal(dim)))),
            out=TensorInfo.of(out),
        )


@dataclass
class Stack:
    """`torch.stack` of equal shapes along a new dim (default 1)."""

    def build(self, node, inputs: list[TensorInfo], sources: list[str]) -> Built:
        import torch

        from ..args import check_dim

        reject_unknown(node, ("dim",), "stack")
        expect_arity(node, inputs, 2, -1)
        dim = node.params.get("dim", 1)
        if not isinstance(dim, int) or isinstance(dim, bool):
            raise SpecError(f"stack dim must be an integer, not {dim!r}", node.param_loc("dim"), node=node.id)
        check_dim(node, "dim", dim, inputs[0], sources[0], new=True)
        _same_rank(node, inputs, sources)
        for axis in range(len(inputs[0].shape)):
            if len({i.shape[axis] for i in inputs}) > 1:
                raise _disagreement(
                    node,
                    inputs,
                    sources,
                    axis,
                    f"stack needs equal sizes in dim {axis}",
                    "resize one input first",
                )
        try:
            out = torch.stack([i.probe(runs_on_cpu(inputs)) for i in inputs], dim=dim)
        except Exception as exc:  # noqa: BLE001 - dtype clashes and the like
            raise op_failed(node, exc, inputs, sources) from None
        items = tuple(Input(i) for i in range(len(inputs)))
        return Built(
            init=[],
            call=Call("torch.stack", (Arg(None, Seq(items)), Arg("dim", literal(dim)))),
            out=TensorInfo.of(out),
        )


@dataclass
class Elementwise:
    """`a + b + ...`, `a - b`, `a * b * ...`, `a / b` of equal or broadcastable shapes of one rank."""

    symbol: str
    max_inputs: int  # -1: any number

    def build(self, node, inputs: list[TensorInfo], sources: list[str]) -> Built:
        reject_unknown(node, (), node.op)
        expect_arity(node, inputs, 2, self.max_inputs)
        _same_rank(node, inputs, sources)
        shape = []
        for axis in range(len(inputs[0].shape)):
            sizes = {i.shape[axis] for i in inputs} - {1}
            if len(sizes) > 1:
                raise _disagreement(
                    node,
                    inputs,
                    sources,
                    axis,
                    f"{node.op}: dim {axis} disagrees (sizes must match or broadcast from 1)",
                    "project one input to the other's size first (e.g. a 1x1 Conv2d or a Linear)",
                )
            shape.append(sizes.pop() if sizes else 1)
        if shape[0] != inputs[0].shape[0]:
            raise SpecError(f"{node.op} would broadcast over the batch dim", node.op_loc(), node=node.id)
        metas = [i.probe(runs_on_cpu(inputs)) for i in inputs]
        try:
            out = metas[0]
            for other in metas[1:]:
                out = _apply(self.symbol, out, other)
        except Exception as exc:  # noqa: BLE001 - dtype clashes and the like
            raise op_failed(node, exc, inputs, sources) from None
        expr = Input(0)
        for i in range(1, len(inputs)):
            expr = BinOp(self.symbol, expr, Input(i))
        return Built(init=[], call=expr, out=TensorInfo.of(out))


def _apply(symbol: str, a, b):
    import operator

    return {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv}[symbol](a, b)
