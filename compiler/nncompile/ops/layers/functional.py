"""Functional ops (flatten, reshape, permute, softmax, matmul, ...): each is one entry of
`FUNCTIONAL`, checked against its input shapes at compile time, run on the meta device for the
exact output shape, and emitted as one plain torch call."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from ...errors import SpecError
from ...pyfmt import Arg, Call, Input, Seq, literal
from ..args import Param, check_dim, parse_args
from ..base import Built, Port, TensorInfo, expect_arity, op_failed, runs_on_cpu, shapes_text


@dataclass(frozen=True)
class Functional:
    """One functional op. `prepare` checks the arguments against the input shapes and returns the
    torch function, its positional and keyword arguments (Input(i) marks the i-th input)."""

    params: tuple[Param, ...]
    arity: tuple[int, int]  # (fewest, most) inputs; most -1: any number
    prepare: Callable[[object, dict, list[TensorInfo], list[str]], tuple[str, tuple, dict]]

    def check_args(self, node) -> None:
        parse_args(node, self.params, node.op)

    def build(self, node, inputs: list[TensorInfo], sources: list[str]) -> Built:
        import torch

        args = parse_args(node, self.params, node.op)
        expect_arity(node, inputs, *self.arity)
        func, positional, keywords = self.prepare(node, args, inputs, sources)
        metas = [i.probe(runs_on_cpu(inputs)) for i in inputs]

        def real(v):
            if isinstance(v, Input):
                return metas[v.index]
            if isinstance(v, BatchSize):
                return metas[v.index].shape[0]
            return tuple(real(i) for i in v) if isinstance(v, tuple) else v

        fn = _torch_function(func)
        try:
            with torch.no_grad():
                out = fn(*(real(v) for v in positional), **{k: real(v) for k, v in keywords.items()})
        except Exception as exc:  # noqa: BLE001 - shape and dtype errors surface here
            raise op_failed(node, exc, inputs, sources) from None
        call = Call(
            func,
            tuple(Arg(None, _code(v)) for v in positional)
            + tuple(Arg(k, _code(v)) for k, v in keywords.items()),
        )
        built = Built(init=[], call=call, out=None)
        if isinstance(out, torch.Tensor):
            built.out = TensorInfo.of(out)
            outs = [built.out]
        else:
            built.ports = {str(i): Port(TensorInfo.of(t), f"[{i}]") for i, t in enumerate(out)}
            outs = [p.info for p in built.ports.values()]
        batch = inputs[0].shape[0]
        if any(not o.shape or o.shape[0] != batch for o in outs):
            raise SpecError(
                f"{node.op} would change the batch dim: {shapes_text(inputs, sources)} -> "
                + ", ".join(o.comment() for o in outs),
                node.op_loc(),
                node=node.id,
                hint="dims count the batch dim as 0; keep it in place",
            )
        return built


def _torch_function(path: str):
    import torch

    obj = torch
    for part in path.split(".")[1:]:
        obj = getattr(obj, part)
    return obj


@dataclass(frozen=True)
class BatchSize:
    """The batch size of the i-th input, written `len(x)`."""

    index: int


def _code(value):
    if isinstance(value, Input):
        return value
    if isinstance(value, BatchSize):
        return Call("len", (Arg(None, Input(value.index)),))
    if isinstance(value, tuple) and any(isinstance(v, BatchSize) for v in value):
        return Seq(tuple(_code(v) for v in value), "()")
    return literal(value)


def _dims(node, key: str, value, inputs, sources) -> list[int]:
    values = value if isinstance(value, list) else [value]
    found = [check_dim(node, key, d, inputs[0], sources[0]) for d in values]
    if len(set(found)) != len(found):
        raise SpecError(f"`{key}` names a dim twice", node.param_loc(key), node=node.id)
    return found


def _reduce(func: str) -> Functional:
    def prepare(node, args, inputs, sources):
        _dims(node, "dim", args["dim"], inputs, sources)
        dim = tuple(args["dim"]) if isinstance(args["dim"], list) else args["dim"]
        keywords = {"dim": dim} | ({"keepdim": True} if args["keepdim"] else {})
        return func, (Input(0),), keywords

    return Functional(
        (
            Param("dim", "int_or_ints", doc="the dim(s) to reduce, e.g. [2, 3]"),
            Param("keepdim", "bool", False),
        ),
        (1, 1),
        prepare,
    )


def _flatten(node, args, inputs, sources):
    start = check_dim(node, "start_dim", args["start_dim"], inputs[0], sources[0])
    end = check_dim(node, "end_dim", args["end_dim"], inputs[0], sources[0])
    if end < start:
        raise SpecError(
            f"end_dim {args['end_dim']} comes before start_dim {args['start_dim']}",
            node.param_loc("end_dim"),
            node=node.id,
        )
    keywords = {"start_dim": args["start_dim"]} | (
        {"end_dim": args["end_dim"]} if args["end_dim"] != -1 else {}
    )
    return "torch.flatten", (Input(0),), keywords


def _reshape(node, args, inputs, sources):
    shape = args["shape"]
    if any(d == 0 or d < -1 for d in shape) or shape.count(-1) > 1:
        raise SpecError(
            f"reshape shape {shape} must hold positive sizes and at most one -1",
            node.param_loc("shape"),
            node=node.id,
            hint="give the dims without the batch dim, e.g. [-1, 64]",
        )
    per_sample = 1
    for d in inputs[0].shape[1:]:
        per_sample *= d
    known = 1
    for d in shape:
        known *= d if d != -1 else 1
    if (-1 in shape and per_sample % known) or (-1 not in shape and known != per_sample):
        raise SpecError(
            f"reshape to {shape} does not fit {sources[0]} {inputs[0].comment()}: "
            f"{per_sample} values per sample",
            node.param_loc("shape"),
            node=node.id,
            hint="the sizes (batch dim excluded) must multiply to the same number of values",
        )
    # The batch dim is kept as is: `-1` when the spec has none, else the input's own length.
    lead = BatchSize(0) if -1 in shape else -1
    return "torch.reshape", (Input(0), (lead, *shape)), {}


def _permute(node, args, inputs, sources):
    dims = args["dims"]
    rank = len(inputs[0].shape)
    if sorted(d % rank if -rank <= d < rank else d for d in dims) != list(range(rank)) or dims[0] != 0:
        raise SpecError(
            f"permute dims {dims} are not a reordering of the {rank} dims of {sources[0]} "
            f"{inputs[0].comment()} that keeps the batch dim 0 first",
            node.param_loc("dims"),
            node=node.id,
            hint=f"list every dim once, starting with 0, e.g. {[0, *range(rank - 1, 0, -1)]}",
        )
    return "torch.permute", (Input(0), tuple(dims)), {}


def _transpose(node, args, inputs, sources):
    for key in ("dim0", "dim1"):
        check_dim(node, key, args[key], inputs[0], sources[0])
    return "torch.transpose", (Input(0), args["dim0"], args["dim1"]), {}


def _squeeze(node, args, inputs, sources):
    dim = check_dim(node, "dim", args["dim"], inputs[0], sources[0])
    if inputs[0].shape[dim] != 1:
        raise SpecError(
            f"squeeze dim {args['dim']} has size {inputs[0].shape[dim]}, not 1, in {sources[0]} "
            f"{inputs[0].comment()}",
            node.param_loc("dim") if "dim" in node.params else node.op_loc(),
            node=node.id,
            hint="torch.squeeze would silently do nothing; pick a dim of size 1",
        )
    return "torch.squeeze", (Input(0), args["dim"]), {}


def _unsqueeze(node, args, inputs, sources):
    check_dim(node, "dim", args["dim"], inputs[0], sources[0], new=True)
    return "torch.unsqueeze", (Input(0), args["dim"]), {}


def _select(node, args, inputs, sources):
    dim = check_dim(node, "dim", args["dim"], inputs[0], sources[0])
    size = inputs[0].shape[dim]
    if not -size <= args["index"] < size:
        raise SpecError(
            f"index {args['index']} is out of range for dim {args['dim']} (size {size}) of {sources[0]}",
            node.param_loc("index"),
            node=node.id,
        )
    return "torch.select", (Input(0), args["dim"], args["index"]), {}


def _slice(node, args, inputs, sources):
    dim = check_dim(node, "dim", args["dim"], inputs[0], sources[0])
    size = inputs[0].shape[dim]
    start, end = args["start"], args["end"]
    lo, hi = slice(start, end).indices(size)[:2]
    if hi <= lo:
        raise SpecError(
            f"slice [{start}:{end}] of dim {args['dim']} (size {size}) of {sources[0]} is empty",
            node.op_loc(),
            node=node.id,
        )
    # narrow takes a length: write it as a constant unless it depends on the dim's size
    return "torch.narrow", (Input(0), args["dim"], start, hi - lo), {}


def _chunk(node, args, inputs, sources):
    check_dim(node, "dim", args["dim"], inputs[0], sources[0])
    return "torch.chunk", (Input(0), args["chunks"]), {"dim": args["dim"]}


def _split(node, args, inputs, sources):
    dim = check_dim(node, "dim", args["dim"], inputs[0], sources[0])
    size = args["split_size"]
    if isinstance(size, list) and sum(size) != inputs[0].shape[dim]:
        raise SpecError(
            f"split sizes {size} add up to {sum(size)}, but dim {args['dim']} of {sources[0]} "
            f"{inputs[0].comment()} has {inputs[0].shape[dim]}",
            node.param_loc("split_size"),
            node=node.id,
        )
    value = tuple(size) if isinstance(size, list) else size
    return "torch.split", (Input(0), value), {"dim": args["dim"]}


def _softmax(func: str) -> Functional:
    def prepare(node, args, inputs, sources):
        check_dim(node, "dim", args["dim"], inputs[0], sources[0])
        return func, (Input(0),), {"dim": args["dim"]}

    return Functional((Param("dim", "int", -1),), (1, 1), prepare)


def _matmul(node, args, inputs, sources):
    a, b = inputs
    if len(a.shape) < 3 or len(b.shape) < 3:
        raise SpecError(
            f"matmul multiplies per-sample matrices: both inputs need (B, ..., n, k), got "
            f"{shapes_text(inputs, sources)}",
            node.op_loc(),
            node=node.id,
            hint="unsqueeze a vector input to a (B, 1, k) or (B, k, 1) matrix first",
        )
    if a.shape[-1] != b.shape[-2]:
        raise SpecError(
            f"matmul: the last dim of {sources[0]} {a.comment()} ({a.shape[-1]}) must equal the "
            f"second-to-last of {sources[1]} {b.comment()} ({b.shape[-2]})",
            node.op_loc(),
            node=node.id,
            hint="transpose one input",
        )
    return "torch.matmul", (Input(0), Input(1)), {}


EQUATION = re.compile(r"^[a-zA-Z]+(,[a-zA-Z]+)*->[a-zA-Z]*$")


def _einsum(node, args, inputs, sources):
    equation = args["equation"].replace(" ", "")
    if not EQUATION.match(equation):
        raise SpecError(
            f"einsum equation {args['equation']!r} is not of the form 'bij,bjk->bik'",
            node.param_loc("equation"),
            node=node.id,
            hint="write explicit operands and the output after '->' (no '...')",
        )
    operands = equation.split("->")[0].split(",")
    if len(operands) != len(inputs):
        raise SpecError(
            f"einsum equation names {len(operands)} operand(s), the node has {len(inputs)} input(s)",
            node.param_loc("equation"),
            node=node.id,
        )
    for term, info, source in zip(operands, inputs, sources, strict=True):
        if len(term) != len(info.shape):
            raise SpecError(
                f"einsum term '{term}' has {len(term)} letters, {source} {info.comment()} has "
                f"{len(info.shape)} dims",
                node.param_loc("equation"),
                node=node.id,
                hint="one letter per dim, the batch dim included",
            )
    return "torch.einsum", (equation, *(Input(i) for i in range(len(inputs)))), {}


INTERPOLATE_MODES = ("nearest", "linear", "bilinear", "bicubic", "trilinear", "area", "nearest-exact")


def _interpolate(node, args, inputs, sources):
    if (args["size"] is None) == (args["scale_factor"] is None):
        raise SpecError(
            "interpolate needs exactly one of `size` and `scale_factor`",
            node.op_loc(),
            node=node.id,
            hint="for example `scale_factor: 2`",
        )
    if args["mode"] not in INTERPOLATE_MODES:
        raise SpecError(
            f"unknown interpolate mode {args['mode']!r}",
            node.param_loc("mode"),
            node=node.id,
            hint="one of: " + ", ".join(INTERPOLATE_MODES),
        )
    keywords = {}
    for key in ("size", "scale_factor"):
        if args[key] is not None:
            keywords[key] = tuple(args[key]) if isinstance(args[key], list) else args[key]
    if args["mode"] != "nearest":  # torch's default
        keywords["mode"] = args["mode"]
    if args["align_corners"] is not None:
        keywords["align_corners"] = args["align_corners"]
    return "torch.nn.functional.interpolate", (Input(0),), keywords


PAD_MODES = ("constant", "reflect", "replicate", "circular")


def _pad(node, args, inputs, sources):
    pad = args["pad"]
    if len(pad) % 2 or len(pad) // 2 > len(inputs[0].shape) - 1:
        raise SpecError(
            f"pad {pad} needs (left, right) pairs for at most the {len(inputs[0].shape) - 1} non-batch "
            f"dims of {sources[0]} {inputs[0].comment()}",
            node.param_loc("pad"),
            node=node.id,
            hint="pairs start at the last dim: [left, right, top, bottom]",
        )
    if args["mode"] not in PAD_MODES:
        raise SpecError(
            f"unknown pad mode {args['mode']!r}",
            node.param_loc("mode"),
            node=node.id,
            hint=", ".join(PAD_MODES),
        )
    keywords = {}
    if args["mode"] != "constant":
        keywords["mode"] = args["mode"]
    if args["value"] != 0:
        keywords["value"] = args["value"]
    return "torch.nn.functional.pad", (Input(0), tuple(pad)), keywords


FUNCTIONAL: dict[str, Functional] = {
    "flatten": Functional((Param("start_dim", "int", 1), Param("end_dim", "int", -1)), (1, 1), _flatten),
    "reshape": Functional(
        (Param("shape", "ints", doc="the dims without the batch dim, one may be -1"),), (1, 1), _reshape
    ),
    "permute": Functional(
        (Param("dims", "ints", doc="every dim once, batch dim 0 first, e.g. [0, 2, 1]"),), (1, 1), _permute
    ),
    "transpose": Functional((Param("dim0", "int"), Param("dim1", "int")), (1, 1), _transpose),
    "squeeze": Functional((Param("dim", "int"),), (1, 1), _squeeze),
    "unsqueeze": Functional((Param("dim", "int"),), (1, 1), _unsqueeze),
    "select": Functional((Param("dim", "int"), Param("index", "int")), (1, 1), _select),
    "slice": Functional(
        (Param("dim", "int"), Param("start", "int", 0), Param("end", "int", None)), (1, 1), _slice
    ),
    "chunk": Functional((Param("chunks", "positive"), Param("dim", "int", 1)), (1, 1), _chunk),
    "split": Functional((Param("split_size", "positive_or_list"), Param("dim", "int", 1)), (1, 1), _split),
    "softmax": _softmax("torch.softmax"),
    "log_softmax": _softmax("torch.log_softmax"),
    "mean": _reduce("torch.mean"),
    "sum": _reduce("torch.sum"),
    "max": _reduce("torch.amax"),
    "min": _reduce("torch.amin"),
    "matmul": Functional((), (2, 2), _matmul),
    "einsum": Functional((Param("equation", "str"),), (1, -1), _einsum),
    "interpolate": Functional(
        (
            Param("size", "positive_or_list", None),
            Param("scale_factor", "number_or_numbers", None),
            Param("mode", "str", "nearest"),
            Param("align_corners", "bool", None),
        ),
        (1, 1),
        _interpolate,
    ),
    "pad": Functional(
        (Param("pad", "ints"), Param("mode", "str", "constant"), Param("value", "number", 0)), (1, 1), _pad
    ),
}
FUNCTIONAL["view"] = FUNCTIONAL["reshape"]  # torch.reshape returns a view whenever it can
