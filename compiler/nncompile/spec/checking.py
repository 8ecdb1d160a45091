"""Validating one mapping of the spec with its model (keys.py), in the project's words.

Pydantic reports what is wrong; this module says it as nncompile does (`unknown key 'optimiser'
in the task` with a did-you-mean, `'lr' must be number, not string`, `... is missing the required
key 'kind'`), at the `file:line:col` of the key or value, so no library message reaches a user.
A mapping with mistakes still gives a typed value: each wrong key is dropped (its default takes
its place) and the rest validated again, so every independent mistake is reported in one run.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from functools import cache
from typing import Annotated

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError, WithJsonSchema
from pydantic_core import PydanticCustomError, core_schema

from ..errors import SpecError, did_you_mean
from . import yamlsrc

MISTAKE = "nncompile"  # the error type of the mistakes the models' own checks raise


def mistake(
    message: str, hint: str | None = None, *, at: tuple = (), key: bool = False
) -> PydanticCustomError:
    """A mistake found by a model's own check, in the project's words; `at`: where, below the
    value being checked (`key`: at that key rather than its value)."""
    return PydanticCustomError(MISTAKE, "{message}", {"message": message, "hint": hint, "at": at, "key": key})


def passed_on(error: SpecError) -> PydanticCustomError:
    """A located mistake found by validating a value's own parts (a list of mappings, each checked
    with its model), passed on as it is."""
    return PydanticCustomError(
        MISTAKE, "{message}", {"message": "", "hint": None, "at": (), "key": False, "error": error}
    )


class Keys(BaseModel):
    """A mapping of the spec: strict JSON types, no keys but its own unless `extra="allow"`
    (the arguments of a class the spec names)."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    @classmethod
    def key_names(cls) -> list[str]:
        """Its keys, as a spec writes them (`in`, not `in_`), in order."""
        return [field.alias or name for name, field in cls.model_fields.items()]


class Parsed:
    """A value of the JSON type `json` (checked strictly), turned into its typed form by
    `parse(value, info)`, which raises a `mistake` for a value of the right type that says
    nothing valid."""

    def __init__(self, json: type, parse):
        self.json, self.parse = json, parse

    def __get_pydantic_core_schema__(self, source, handler):
        return core_schema.with_info_after_validator_function(self.parse, handler.generate_schema(self.json))


class Of:
    """On a value that is itself a mapping (validated as a plain `dict`): the model the loader
    validates it with when it gets there (`item`, a model or a union with a shorthand), for the
    schema; `named`: a mapping from names the user chooses to such items."""

    def __init__(self, item, named: bool = False):
        self.item, self.named = item, named

    def __get_pydantic_json_schema__(self, source, handler) -> dict:
        item = handler(TypeAdapter(self.item).core_schema)
        if self.named:
            return {"type": "object", "minProperties": 1, "additionalProperties": item}
        return item


class Choice:
    """A string that must be one of `choices`. An unknown one is reported (with a did-you-mean)
    but kept, so what follows from the rest of its mapping is still checked."""

    def __init__(
        self, choices: tuple[str, ...], what: str, hint: str | None = None, listed: str = "one of: "
    ):
        self.choices, self.what, self.hint, self.listed = choices, what, hint, listed

    def __get_pydantic_core_schema__(self, source, handler):
        return core_schema.with_info_after_validator_function(self.check, handler(source))

    def __get_pydantic_json_schema__(self, schema, handler) -> dict:
        return {**handler(schema), "enum": list(self.choices)}

    def check(self, value: str, info):
        if value not in self.choices:
            hint = self.hint or did_you_mean(value, self.choices) or self.listed + ", ".join(self.choices)
            info.context["recorded"].append(
                (info.field_name, mistake(f"unknown {self.what} {value!r}", hint))
            )
        return value


class Bound:
    """A number within bounds, or the mistake `message` (`{value}`: the number as written);
    `json`: its JSON type, when the annotation says more (`float | None`)."""

    def __init__(
        self, message: str, hint: str | None = None, *, json=None, gt=None, ge=None, lt=None, le=None
    ):
        self.message, self.hint, self.json = message, hint, json
        self.bounds = {"exclusiveMinimum": gt, "minimum": ge, "exclusiveMaximum": lt, "maximum": le}

    def __get_pydantic_core_schema__(self, source, handler):
        json = handler(source) if self.json is None else handler.generate_schema(self.json)
        return core_schema.no_info_wrap_validator_function(self.check, json)

    def __get_pydantic_json_schema__(self, schema, handler) -> dict:
        return {**handler(schema), **{k: v for k, v in self.bounds.items() if v is not None}}

    def check(self, value, validate):
        number = validate(value)
        if any(bound is not None and OUTSIDE[name](number, bound) for name, bound in self.bounds.items()):
            raise mistake(self.message.format(value=value), self.hint)
        return number


OUTSIDE = {
    "minimum": operator.lt,
    "exclusiveMinimum": operator.le,
    "maximum": operator.gt,
    "exclusiveMaximum": operator.ge,
}


# A JSON number, kept as YAML read it (an int stays an int: `lr: 1` is written `lr=1`).
Number = Annotated[int | float, WithJsonSchema({"type": "number"})]


@dataclass
class Checked:
    """A mapping validated: its typed value (None when a required key is missing or wrong), and
    each mistake with the key it is at (None: the mapping as a whole)."""

    value: Keys | None
    errors: list[tuple[str | None, SpecError]]


def check(model: type[Keys], raw: dict, path: tuple, doc, what: str, node: str | None = None) -> Checked:
    """Validate `raw`, the mapping at `path` of `doc`, with `model`; `what` names it in messages
    ("the task", "node 'fc'"), `node` is the node the model's own mistakes are about."""
    data, dropped = raw, set()
    errors: list[tuple[str | None, SpecError]] = []
    while True:
        recorded: list = []  # mistakes that keep their value (Choice)
        try:
            value = model.model_validate(data, context={"doc": doc, "path": path, "recorded": recorded})
        except ValidationError as exc:
            found = exc.errors()
        else:
            return Checked(value, errors + [_recorded(m, k, path, doc, node) for k, m in recorded])
        bad = set()
        for error in found:
            key = _key(error)
            if error["type"] == "missing" and key in dropped:
                continue  # its value was wrong, and said so
            if key in bad and error["type"] != MISTAKE:
                continue  # one message per key, however many members of a union refused it
            bad.add(key)
            errors.append((key, _translate(error, model, raw, path, doc, what, node)))
        dropped |= bad
        if any(e["type"] == "missing" for e in found) or not bad & data.keys():
            return Checked(None, errors + [_recorded(m, k, path, doc, node) for k, m in recorded])
        data = {k: v for k, v in data.items() if k not in bad}


def _key(error: dict) -> str | None:
    """The key of the mapping an error is at (None: the mapping itself)."""
    where = (*error["loc"], *error["ctx"]["at"]) if error["type"] == MISTAKE else error["loc"]
    return str(where[0]) if where else None


def _field(model: type[Keys], key: str):
    return next(f for name, f in model.model_fields.items() if (f.alias or name) == key)


def _translate(error: dict, model: type[Keys], raw: dict, path: tuple, doc, what: str, node) -> SpecError:
    kind, loc = error["type"], error["loc"]
    if kind == MISTAKE:
        ctx = error["ctx"]
        if ctx.get("error") is not None:
            return ctx["error"]
        where = (*path, *loc, *ctx["at"])
        return SpecError(
            ctx["message"],
            doc.key_loc(*where) if ctx["key"] else doc.loc(*where),
            node=node,
            hint=ctx["hint"],
        )
    key = str(loc[0])
    if kind == "missing":
        return SpecError(
            f"{what} is missing the required key '{key}'",
            doc.loc(*path),
            hint=f"add `{key}:` ({_field(model, key).description})",
        )
    if kind == "extra_forbidden":
        known = model.key_names()
        return SpecError(
            f"unknown key '{key}' in {what}",
            doc.key_loc(*path, key),
            hint=did_you_mean(key, known) or "allowed keys: " + ", ".join(known),
        )
    # a value of the wrong JSON type (the only other error a model's annotations can give)
    types, value = json_types(model)[key], raw[key]
    hint = number_hint(value, "integer" in types) if {"number", "integer"} & set(types) else None
    return SpecError(
        f"'{key}' must be {' or '.join(types)}, not {json_type(value)}",
        doc.loc(*path, key),
        hint=hint or _field(model, key).description,
    )


def _recorded(found: PydanticCustomError, key: str, path: tuple, doc, node) -> tuple[str, SpecError]:
    return key, SpecError(
        found.context["message"], doc.loc(*path, key), node=node, hint=found.context["hint"]
    )


@cache
def json_types(model: type[Keys]) -> dict[str, tuple[str, ...]]:
    """Each key's JSON types, as its schema gives them (`'in' must be string or array or object`)."""
    schema = model.model_json_schema()
    return {key: tuple(dict.fromkeys(_types(prop, schema))) for key, prop in schema["properties"].items()}


def _types(prop: dict, schema: dict) -> list[str]:
    if "type" in prop:
        return [prop["type"]] if isinstance(prop["type"], str) else list(prop["type"])
    if "anyOf" in prop:
        return [t for option in prop["anyOf"] for t in _types(option, schema)]
    if "$ref" in prop:
        return _types(schema["$defs"][prop["$ref"].rpartition("/")[2]], schema)
    return [json_type(prop["const"])]


def number_hint(value, integer: bool) -> str | None:
    """How to write the number a value where one goes was meant to be, or None: a quoted number
    is a string, and a float where an integer goes is refused rather than rounded."""
    if isinstance(value, str) and yamlsrc.reads_as_number(value):
        return "remove the quotes: a quoted value stays a string"
    if integer and isinstance(value, float) and value.is_integer():
        return f"write {int(value)}: a number written with a dot or an exponent is a float"
    return None


def json_type(value) -> str:
    """The JSON type of a YAML value, as messages name it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__
