"""Spec arguments of a library class (a loss, metric, optimizer or scheduler): checked against the
class's signature at compile time and rendered as keyword arguments of the generated call."""

from __future__ import annotations

import inspect
import math
import re

from .errors import SpecError, did_you_mean
from .hparams import HParams, tunable
from .pyfmt import Arg, Call, UnsafeValue, literal
from .spec import CallSpec, number_hint

SKIPPED = ("self", "params", "optimizer", "args", "kwargs")


def accepted(cls: type, extra: tuple[str, ...] = ()) -> dict[str, inspect.Parameter]:
    """The keyword arguments a class's constructor takes (`extra`: ones it takes through **kwargs)."""
    params = {
        k: p
        for k, p in inspect.signature(cls.__init__).parameters.items()
        if k not in SKIPPED and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }
    return params | {k: inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=None) for k in extra}


def check_args(
    cls: type, call: CallSpec, args: dict, qualname: str, extra: tuple[str, ...] = (), given=()
) -> None:
    """Every argument is one the class takes; every required one is there (or in `given`)."""
    params = accepted(cls, extra)
    for key in args:
        if key not in params:
            raise SpecError(
                f"{qualname} has no argument '{key}'",
                call.arg_loc(key),
                hint=suggest(key, params) or "it takes: " + ", ".join(params),
            )
        check_number(params[key], args[key], call.arg_loc(key))
    missing = [
        k
        for k, p in params.items()
        if p.default is inspect.Parameter.empty and k not in args and k not in given
    ]
    if missing:
        raise SpecError(
            f"{qualname} needs the argument(s) {', '.join(missing)}",
            call.loc,
            hint=f"add {', '.join(f'`{k}: ...`' for k in missing)} next to its name",
        )


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


def is_tensor_arg(cls: type, key: str) -> bool:
    """Whether a constructor argument is annotated as a tensor (a loss's `weight`, `pos_weight`)."""
    param = accepted(cls).get(key)
    return param is not None and "Tensor" in str(param.annotation)


def tensor_value(value, loc, key: str) -> list:
    """A (nested) list of numbers for torch.tensor, as floats: class weights are float tensors."""
    if isinstance(value, list) and value:
        return [tensor_value(v, loc, key) for v in value]
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    raise SpecError(
        f"'{key}' must be a non-empty list of numbers (it becomes a tensor), not {value!r}",
        loc,
        hint=f"for example `{key}: [1.0, 2.0, 0.5]`",
    )


def rendered_args(
    cls: type, call: CallSpec, args: dict, hparams: HParams | None = None, prefix: str = ""
) -> tuple[Arg, ...]:
    """`key=value` arguments; a list given for a tensor argument becomes `torch.tensor(...)`.
    With `hparams`, each tunable value becomes the hyperparameter `<prefix><key>` and is read
    from it."""
    out = []
    for key, value in args.items():
        try:
            tensor = is_tensor_arg(cls, key) and isinstance(value, list)
            if tensor:
                value = tensor_value(value, call.arg_loc(key), key)
            if hparams is not None and tunable(value):
                expr = hparams.add(prefix + key, value, call.arg_loc(key), accepted(cls).get(key))
            else:
                expr = literal(value)
            if tensor:
                expr = Call("torch.tensor", (Arg(None, expr),))
        except UnsafeValue as exc:
            raise SpecError(f"argument '{key}': {exc}", call.arg_loc(key)) from None
        out.append(Arg(key, expr))
    return tuple(out)


def runtime_args(cls: type, call: CallSpec, args: dict) -> dict:
    """The arguments as the class receives them at run time (for building it at compile time)."""
    import torch

    out = {}
    for key, value in args.items():
        if is_tensor_arg(cls, key) and isinstance(value, list):
            out[key] = torch.tensor(tensor_value(value, call.arg_loc(key), key))
        else:
            out[key] = tuple(value) if isinstance(value, list) else value
    return out


def suggest(word: str, choices) -> str | None:
    """A did-you-mean hint that also catches a difference of case alone (Adamw -> AdamW)."""
    same = [c for c in choices if c.lower() == str(word).lower()]
    return f"did you mean '{same[0]}'?" if same else did_you_mean(str(word), choices)
