"""Arguments of the functional ops: typed checks that report the offending spec key, and dim
checks that keep the batch dim (dim 0) out of reach; and the check of names that become keyword
arguments of a generated call."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import SpecError
from ..pyfmt import UnsafeValue, argument_name
from ..spec.checking import number_hint
from .base import TensorInfo, reject_unknown

REQUIRED = object()  # the default of an argument the spec must give


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _list_of(check: Callable) -> Callable:
    return lambda v: isinstance(v, list) and len(v) > 0 and all(check(i) for i in v)


# kind -> (check, what the spec must give)
KINDS: dict[str, tuple[Callable, str]] = {
    "int": (_is_int, "an integer"),
    "positive": (lambda v: _is_int(v) and v > 0, "a positive integer"),
    "ints": (_list_of(_is_int), "a list of integers"),
    "int_or_ints": (lambda v: _is_int(v) or _list_of(_is_int)(v), "an integer or a list of integers"),
    "positive_or_list": (
        lambda v: (_is_int(v) and v > 0) or _list_of(lambda i: _is_int(i) and i > 0)(v),
        "a positive integer or a list of them",
    ),
    "number_or_numbers": (
        lambda v: (_is_number(v) and v > 0) or _list_of(lambda i: _is_number(i) and i > 0)(v),
        "a positive number or a list of them",
    ),
    "number": (_is_number, "a number"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "str": (lambda v: isinstance(v, str) and v != "", "a string"),
}


@dataclass(frozen=True)
class Param:
    name: str
    kind: str
    default: object = REQUIRED
    doc: str = ""


def parse_args(node, params: tuple[Param, ...], what: str) -> dict[str, object]:
    """The node's arguments checked against `params`; unset optional ones hold their default."""
    reject_unknown(node, [p.name for p in params], what)
    out = {}
    for p in params:
        if p.name not in node.params:
            if p.default is REQUIRED:
                raise SpecError(
                    f"{what} needs `{p.name}`",
                    node.op_loc(),
                    node=node.id,
                    hint=f"add `{p.name}: ...` ({p.doc or KINDS[p.kind][1]})",
                )
            out[p.name] = p.default
            continue
        value = node.params[p.name]
        check, want = KINDS[p.kind]
        if not check(value):
            raise SpecError(
                f"{what} argument `{p.name}` must be {want}, not {value!r}",
                node.param_loc(p.name),
                node=node.id,
                hint=p.doc or None,
            )
        out[p.name] = value
    return out


NAME_HINT = "it becomes `name=` in the generated call: ASCII letters, digits and _, not a keyword or '__...'"


def check_argument_names(node, names, what: str, loc_of: Callable, hint: str = NAME_HINT) -> None:
    """Each of `names` is a keyword argument's name (pyfmt.argument_name), or a SpecError at
    `loc_of(name)`: checked where the name comes in, so the error points there."""
    for name in names:
        try:
            argument_name(name)
        except UnsafeValue as exc:
            raise SpecError(f"{what} {exc}", loc_of(name), node=node.id, hint=hint) from None


def check_dim(node, key: str, dim: int, info: TensorInfo, source: str, new: bool = False) -> int:
    """`dim` as a non-negative index into `info` (or a new dim position), never the batch dim."""
    rank = len(info.shape) + (1 if new else 0)
    if not -rank <= dim < rank:
        raise SpecError(
            f"dim {dim} is out of range for {source} {info.comment()}",
            node.param_loc(key) if key in node.params else node.op_loc(),
            node=node.id,
            hint=f"dims count the batch dim as 0: use 1 to {rank - 1} (or -1 for the last)",
        )
    if dim % rank == 0:
        raise SpecError(
            f"dim {dim} is the batch dim of {source} {info.comment()}",
            node.param_loc(key) if key in node.params else node.op_loc(),
            node=node.id,
            hint=f"dims count the batch dim as 0: use 1 to {rank - 1}",
        )
    return dim % rank


def check_number(param: inspect.Parameter, value, loc, node: str | None = None) -> None:
    """Where the class takes a number: a YAML boolean (`on`, `yes`) is an error, since Python reads
    True as 1 (`kernel_size: on` would quietly be a 1x1 kernel), and so are a quoted number and,
    where it takes integers, a float (`out_features: 1e5`, which torch would refuse less clearly)."""
    want = _number_kind(param)
    if want is None:
        return
    items = value if isinstance(value, list) else [value]
    flags = [v for v in items if isinstance(v, bool)]
    if flags:
        raise SpecError(
            f"`{param.name}` must be {want}, not the boolean {str(flags[0]).lower()}",
            loc,
            node=node,
            hint="YAML reads on, off, yes, no, true and false as booleans: write the number",
        )
    integer = want.startswith("an integer")
    wrong = next((v for v in items if (integer and isinstance(v, float)) or number_hint(v, integer)), None)
    if wrong is not None:
        kind = "string" if isinstance(wrong, str) else "float"
        raise SpecError(
            f"`{param.name}` must be {want}, not the {kind} {wrong!r}",
            loc,
            node=node,
            hint=number_hint(wrong, integer) or "sizes, counts and indexes are whole numbers",
        )


def _number_kind(param: inspect.Parameter) -> str | None:
    """What kind of number a parameter takes, from its annotation or else its default; None when
    it takes a bool or nothing says."""
    ann = param.annotation
    if ann is inspect.Parameter.empty:
        default = param.default
        if isinstance(default, bool) or not isinstance(default, int | float):
            return None
        return "an integer" if isinstance(default, int) else "a number"
    text = (
        ann if isinstance(ann, str) else getattr(ann, "__name__", None) if isinstance(ann, type) else str(ann)
    )
    if re.search(r"\bbool\b", text) or not re.search(r"\b(int|float)\b", text):
        return None
    if re.search(r"\bfloat\b", text):
        return "a number"
    return (
        "an integer or a list of integers"
        if re.search(r"\b(tuple|list|Tuple|List)\b", text)
        else "an integer"
    )
