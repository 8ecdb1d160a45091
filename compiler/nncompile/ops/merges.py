"""Merges of several inputs, emitted as plain torch expressions: `concat` and `add`."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import SpecError
from ..pyfmt import Arg, BinOp, Call, Input, Seq, literal
from .base import Built, TensorInfo, expect_arity, op_failed, reject_unknown, shapes_text


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
        if len({len(i.shape) for i in inputs}) > 1:
            raise SpecError(
                f"concat needs inputs of one rank, got {shapes_text(inputs, sources)}",
                node.op_loc(),
                node=node.id,
                hint="flatten or reshape the inputs first",
            )
        for axis in range(rank):
            if axis != dim % rank and len({i.shape[axis] for i in inputs}) > 1:
                raise SpecError(
                    f"concat along dim {dim} needs equal sizes in dim {axis}, got "
                    f"{shapes_text(inputs, sources)}",
                    node.op_loc(),
                    node=node.id,
                    hint="only the concatenated dim may differ",
                )
        try:
            out = torch.cat([i.meta() for i in inputs], dim=dim)
        except Exception as exc:  # noqa: BLE001 - dtype clashes and the like
            raise op_failed(node, exc, inputs, sources) from None
        items = tuple(Input(i) for i in range(len(inputs)))
        return Built(
            init=[],
            call=Call("torch.cat", (Arg(None, Seq(items)), Arg("dim", literal(dim)))),
            out=TensorInfo.of(out),
        )


@dataclass
class Add:
    """Elementwise sum of two or more inputs with equal shapes (or broadcastable ones)."""

    def build(self, node, inputs: list[TensorInfo], sources: list[str]) -> Built:
        import torch

        reject_unknown(node, (), "add")
        expect_arity(node, inputs, 2, -1)
        try:
            shape = torch.broadcast_shapes(*(i.shape for i in inputs))
        except RuntimeError:
            raise SpecError(
                f"add needs shapes that match or broadcast, got {shapes_text(inputs, sources)}",
                node.op_loc(),
                node=node.id,
                hint="project one input to the other's shape first (e.g. a 1x1 Conv2d)",
            ) from None
        if shape[0] != inputs[0].shape[0]:
            raise SpecError("add would broadcast over the batch dim", node.op_loc(), node=node.id)
        out = sum((i.meta() for i in inputs[1:]), inputs[0].meta())
        expr = Input(0)
        for i in range(1, len(inputs)):
            expr = BinOp("+", expr, Input(i))
        return Built(init=[], call=expr, out=TensorInfo(tuple(shape), str(out.dtype).removeprefix("torch.")))
