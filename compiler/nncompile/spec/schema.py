"""`nncompile schema`: a JSON Schema (draft 2020-12) of the spec language, for editor completion
and validation (`# yaml-language-server: $schema=...`).

Pydantic renders it from the models the loader validates with (keys.py), so a key declared
there appears here with its type, default and description. Importing this module must not import
torch: `nncompile schema` is cheap.
"""

from __future__ import annotations

import json

from pydantic.json_schema import GenerateJsonSchema

from ..version import __version__
from .keys import FORMAT_VERSION, SpecKeys

SCHEMA_ID = "https://nncompile.dev/schema/spec-v1.json"


class _Generator(GenerateJsonSchema):
    """Pydantic's generator, without the titles it makes of Python names (`In_`, `NodeKeys`)."""

    def generate(self, schema, mode="validation"):
        return _plain(super().generate(schema, mode))


def _plain(value):
    """`value` without titles, and without the default of a key that has none (`null`)."""
    if isinstance(value, dict):
        return {
            k: _plain(v)
            for k, v in value.items()
            if not (k == "title" and isinstance(v, str)) and not (k == "default" and v is None)
        }
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def schema() -> dict:
    """The JSON Schema of a spec file, as a dict: `$defs/Spec`, or for a spec with `extends:`,
    `$defs/SpecPatch`, where no key is required (its bases give them; the merged spec is checked
    when it is compiled)."""
    spec = SpecKeys.model_json_schema(schema_generator=_Generator)
    defs = spec.pop("$defs", {})
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": f"nncompile spec, format {FORMAT_VERSION} (nncompile {__version__})",
        "if": {"required": ["extends"]},
        "then": {"$ref": "#/$defs/SpecPatch"},
        "else": {"$ref": "#/$defs/Spec"},
        "$defs": {
            **defs,
            "Spec": spec,
            **{f"{name}Patch": _optional(value) for name, value in defs.items()},
            "SpecPatch": _optional(spec),
        },
    }


def _optional(value):
    """A schema that requires no key, its references to the same: what a spec that extends a base
    may write."""
    if isinstance(value, dict):
        return {
            k: f"{v}Patch" if k == "$ref" else _optional(v)
            for k, v in value.items()
            if k != "required" and not (k == "anyOf" and all(list(v_) == ["required"] for v_ in v))
        }
    if isinstance(value, list):
        return [_optional(v) for v in value]
    return value


def schema_text() -> str:
    return json.dumps(schema(), indent=2) + "\n"
