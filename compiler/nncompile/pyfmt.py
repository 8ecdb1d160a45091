"""Python source for generated code: the only way a spec value reaches the output.

Each kind of value has one function: `identifier` (attribute, variable and class names),
`argument_name` (the `name=` of a call: every `Arg` checks its own), `dotted` (import paths) and
`literal` (everything else, via repr); comments are escaped to one line by `statement`.
Expressions are a small typed tree rendered in the layout `ruff format` produces, so the output
needs no formatter run.
"""

from __future__ import annotations

import keyword
import math
from dataclasses import dataclass

from .errors import printable

LINE_LENGTH = 88
INDENT = "    "


class UnsafeValue(ValueError):
    """A value that cannot be written into generated code safely (callers turn it into a SpecError)."""


def identifier(name: str) -> str:
    if not (isinstance(name, str) and name.isascii() and name.isidentifier() and not keyword.iskeyword(name)):
        raise UnsafeValue(f"{name!r} is not a Python identifier")
    return name


def argument_name(name: str) -> str:
    """The name of a keyword argument (`name=` in a call): an identifier, not a dunder name."""
    if identifier(name).startswith("__"):
        raise UnsafeValue(f"{name!r} starts with '__', which no argument name does")
    return name


def dotted(path: str) -> str:
    if not isinstance(path, str) or not path:
        raise UnsafeValue(f"{path!r} is not a dotted import path")
    for part in path.split("."):
        identifier(part)
    return path


def literal(value) -> str:
    """A Python literal for a plain YAML value; lists become tuples (constructor arguments)."""
    if value is None or isinstance(value, bool):
        return repr(value)
    if isinstance(value, int):
        return repr(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return f'float("{value}")'
        return repr(value)
    if isinstance(value, str):
        text = repr(value)
        if text.startswith("'") and '"' not in value:
            text = '"' + text[1:-1].replace("\\'", "'") + '"'
        return text
    if isinstance(value, list | tuple):
        items = [literal(v) for v in value]
        return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{literal(str(k))}: {literal(v)}" for k, v in value.items()) + "}"
    raise UnsafeValue(f"{type(value).__name__} value {value!r} cannot be written as a Python literal")


def docstring_text(text: str) -> str:
    """Text safe inside a docstring or a comment: one line, no quotes or backslashes unescaped."""
    return text.encode("unicode_escape").decode("ascii").replace('"', '\\"')


# --- expressions -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Input:
    """Placeholder for the node's i-th input, replaced by a variable name when planning forward()."""

    index: int


@dataclass(frozen=True)
class Arg:
    """An argument of a call: `value`, or `name=value` (the name checked by `argument_name`, wherever
    it comes from: a spec key, a checkpoint's hyperparameters, a config file)."""

    name: str | None
    value: Expr

    def __post_init__(self) -> None:
        if self.name is not None:
            argument_name(self.name)


@dataclass(frozen=True)
class Call:
    func: str
    args: tuple[Arg, ...] = ()
    suffix: str = ""  # e.g. '["features"]' or '[0]' after the call


@dataclass(frozen=True)
class Seq:
    """A list `[a, b]` or tuple `(a, b)` display."""

    items: tuple[Expr, ...]
    brackets: str = "[]"


@dataclass(frozen=True)
class Entry:
    """A `key: value` item of a dict display (a Seq with brackets "{}")."""

    key: str
    value: Expr


@dataclass(frozen=True)
class BinOp:
    op: str
    left: Expr
    right: Expr


@dataclass(frozen=True)
class Cond:
    """`body if test else orelse`."""

    body: Expr
    test: str
    orelse: Expr


@dataclass(frozen=True)
class Attr:
    """`value` followed by an attribute or index access: `x.shape[0]`."""

    value: Expr
    suffix: str


Expr = str | Input | Call | Seq | Entry | BinOp | Cond | Attr


def substitute(expr: Expr, names: list[str]) -> Expr:
    """Replace Input placeholders by the given variable names."""
    if isinstance(expr, Input):
        return names[expr.index]
    if isinstance(expr, Call):
        return Call(expr.func, tuple(Arg(a.name, substitute(a.value, names)) for a in expr.args), expr.suffix)
    if isinstance(expr, Seq):
        return Seq(tuple(substitute(i, names) for i in expr.items), expr.brackets)
    if isinstance(expr, BinOp):
        return BinOp(expr.op, substitute(expr.left, names), substitute(expr.right, names))
    if isinstance(expr, Entry):
        return Entry(expr.key, substitute(expr.value, names))
    if isinstance(expr, Attr):
        return Attr(substitute(expr.value, names), expr.suffix)
    return expr


def flat(expr: Expr) -> str:
    if isinstance(expr, str):
        return expr
    if isinstance(expr, Input):
        raise TypeError("unsubstituted input placeholder")
    if isinstance(expr, Call):
        return f"{expr.func}({', '.join(_arg(a, flat(a.value)) for a in expr.args)}){expr.suffix}"
    if isinstance(expr, Seq):
        inner = ", ".join(flat(i) for i in expr.items)
        if expr.brackets == "()" and len(expr.items) == 1:
            inner += ","
        return expr.brackets[0] + inner + expr.brackets[1]
    if isinstance(expr, Entry):
        return f"{expr.key}: {flat(expr.value)}"
    if isinstance(expr, Cond):
        return f"{flat(expr.body)} if {expr.test} else {flat(expr.orelse)}"
    if isinstance(expr, Attr):
        return flat(expr.value) + expr.suffix
    return f"{flat(expr.left)} {expr.op} {flat(expr.right)}"


def _arg(arg: Arg, value: str) -> str:
    return value if arg.name is None else f"{arg.name}={value}"


def statement(prefix: str, expr: Expr, indent: int, comment: str | None = None) -> list[str]:
    """Lines of `<prefix><expr>` at `indent` levels, split the way ruff format splits them.

    A trailing comment that would push the line past the limit goes on its own line above. A
    prefix that starts with spaces is a statement nested that much deeper (inside an `if` or a
    `with` the statements before it open).
    """
    nested = len(prefix) - len(prefix.lstrip(" "))
    prefix, indent = prefix[nested:], indent + nested // len(INDENT)
    pad = INDENT * indent
    comment = comment and printable(comment)  # one line, whatever a file name in it holds
    one = pad + prefix + flat(expr)
    if len(one) <= LINE_LENGTH:
        if comment and len(one) + 2 + len(comment) + 2 <= LINE_LENGTH:
            return [f"{one}  # {comment}"]
        return ([f"{pad}# {comment}"] if comment else []) + [one]
    # A conditional, or a call followed by an attribute (no closing bracket to split at the
    # end), splits inside parentheses, as ruff's do.
    if isinstance(expr, Cond) or (isinstance(expr, Call) and expr.suffix.startswith(".")):
        inner = pad + INDENT
        one = inner + flat(expr)
        lines = [
            pad + prefix + "(",
            *([one] if len(one) <= LINE_LENGTH else _split(inner, "", expr, "")),
            pad + ")",
        ]
    else:
        lines = _split(pad, prefix, expr, "")
    return ([f"{pad}# {comment}"] if comment else []) + lines


def table_statement(prefix: str, expr: Expr, indent: int, comment: str) -> list[str]:
    """`statement`, with `comment` on the line that opens the display when it splits (`x = {  #
    ...`) and the comment fits there."""
    lines = statement(prefix, expr, indent)
    opening = f"{lines[0]}  # {printable(comment)}"
    if len(lines) > 1 and len(opening) <= LINE_LENGTH:
        return [opening, *lines[1:]]
    return statement(prefix, expr, indent, comment)


def _split(pad: str, prefix: str, expr: Expr, tail: str) -> list[str]:
    """Split `expr` at its outermost brackets (it does not fit on one line)."""
    if isinstance(expr, Call):
        head, items, close = f"{expr.func}(", [(a, a.value) for a in expr.args], ")" + expr.suffix
    elif isinstance(expr, Seq):
        head, items, close = expr.brackets[0], [(None, i) for i in expr.items], expr.brackets[1]
    elif isinstance(expr, Cond):
        return [
            pad + prefix + flat(expr.body),
            f"{pad}if {expr.test}",
            f"{pad}else {flat(expr.orelse)}{tail}",
        ]
    else:
        return [pad + prefix + flat(expr) + tail]  # cannot split; ruff would not either
    if not items:
        return [pad + prefix + flat(expr) + tail]
    inner = pad + INDENT
    body = ", ".join(_arg(a, flat(v)) if a else flat(v) for a, v in items)
    # A call's arguments that fit go on one line; a split list, tuple or dict display gets a
    # trailing comma from ruff, and with it one item per line.
    if len(inner + body) <= LINE_LENGTH and isinstance(expr, Call):
        return [pad + prefix + head, inner + body, pad + close + tail]
    lines = [pad + prefix + head]
    for a, v in items:
        text = (_arg(a, flat(v)) if a else flat(v)) + ","
        if len(inner + text) <= LINE_LENGTH:
            lines.append(inner + text)
        elif isinstance(v, Entry):  # a dict item: split its value after the key, as ruff does
            lines.extend(_split(inner, f"{v.key}: ", v.value, ","))
        else:
            lines.extend(_split(inner, f"{a.name}=" if a and a.name else "", v, ","))
    lines.append(pad + close + tail)
    return lines


def signature(name: str, params: list[str], returns: str, indent: int) -> list[str]:
    """A `def` line (or lines, split as ruff format splits them); `params` includes self."""
    pad = INDENT * indent
    one = f"{pad}def {name}({', '.join(params)}) -> {returns}:"
    if len(one) <= LINE_LENGTH:
        return [one]
    body = pad + INDENT + ", ".join(params)
    if len(body) <= LINE_LENGTH:
        return [f"{pad}def {name}(", body, f"{pad}) -> {returns}:"]
    return [f"{pad}def {name}(", *(f"{pad}{INDENT}{p}," for p in params), f"{pad}) -> {returns}:"]
