"""`nncompile schema`: a JSON Schema (draft 2020-12) of the spec language, for editor completion
and validation (`# yaml-language-server: $schema=...`).

It is rendered from the key tables the loader validates against (spec.py: TOP_KEYS, INPUT_KEYS,
NODE_KEYS, TASK_KEYS, OPTIMIZER_KEYS), so a key added there appears here. NESTING says which
key holds which table; a new `*_KEYS` table needs one line in it (tests/test_schema.py checks that
every table is placed). Importing this module must not import torch: `nncompile schema` is cheap.
"""

from __future__ import annotations

import json

from ..version import __version__
from . import model as spec
from .model import Key

SCHEMA_ID = "https://nncompile.dev/schema/spec-v1.json"

# key path of an object-valued key -> (the table of its keys, whether other keys are allowed).
# "*" stands for a name the user chooses (an input, a node).
NESTING: dict[tuple[str, ...], tuple[str, bool]] = {
    (): ("TOP_KEYS", False),
    ("inputs", "*"): ("INPUT_KEYS", False),
    ("nodes", "*"): ("NODE_KEYS", True),  # each op kind takes its own arguments
    ("task",): ("TASK_KEYS", False),
    ("task", "optimizer"): ("OPTIMIZER_KEYS", True),  # the optimizer class's own arguments
    ("task", "scheduler"): ("SCHEDULER_KEYS", True),  # the scheduler class's own arguments
    ("task", "ema"): ("EMA_KEYS", False),
    ("task", "loss"): ("LOSS_KEYS", True),  # the loss class's own arguments
    ("task", "metrics", "*"): ("METRIC_KEYS", True),  # the metric class's own arguments
    ("task", "heads", "*"): ("HEAD_KEYS", False),
    ("task", "heads", "*", "loss"): ("LOSS_KEYS", True),
    ("task", "heads", "*", "metrics", "*"): ("METRIC_KEYS", True),
    ("blocks", "*"): ("BLOCK_KEYS", False),
    ("blocks", "*", "nodes", "*"): ("NODE_KEYS", True),
}
SYMBOL = {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"}  # a symbolic dim from `dims:`
DIMS = {"type": "array", "items": {"anyOf": [{"type": "integer", "minimum": 1}, SYMBOL]}}
# Shorter forms the loader accepts in place of an object.
SHORTHANDS = {
    ("inputs", "*"): {**DIMS, "description": "the shape alone, dims without the batch dim"},
    ("nodes", "*"): {"type": "string", "description": "the op alone: `relu: ReLU` is `relu: {op: ReLU}`"},
    ("task", "metrics", "*"): {"type": ["string", "null"], "description": "the metric's name alone"},
    ("task", "heads", "*", "metrics", "*"): {"type": ["string", "null"], "description": "the metric's name"},
    ("blocks", "*", "nodes", "*"): {"type": "string", "description": "the op alone"},
}
# Values narrower than their JSON type, from the constants spec.py validates against.
REFINED = {
    ("nncompile",): {"const": spec.FORMAT_VERSION},
    ("name",): {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
    ("inputs", "*", "shape"): DIMS,
    ("inputs", "*", "dtype"): {"enum": list(spec.DTYPES)},
    ("task", "kind"): {"enum": list(spec.TASK_KINDS)},
}


def schema() -> dict:
    """The JSON Schema of a spec file, as a dict."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": f"nncompile spec, format {spec.FORMAT_VERSION} (nncompile {__version__})",
        **_object(()),
    }


def schema_text() -> str:
    return json.dumps(schema(), indent=2) + "\n"


def tables() -> dict[str, tuple[Key, ...]]:
    """Every key table spec.py defines, by name."""
    return {
        name: value
        for name, value in vars(spec).items()
        if name.endswith("_KEYS") and isinstance(value, tuple) and all(isinstance(k, Key) for k in value)
    }


def _object(path: tuple[str, ...]) -> dict:
    table_name, open_ended = NESTING[path]
    keys = tables()[table_name]
    out: dict = {
        "type": "object",
        "properties": {k.name: _value(k, (*path, k.name)) for k in keys},
        "additionalProperties": open_ended,
    }
    required = [k.name for k in keys if k.required and not k.unless]
    if required:
        out["required"] = required
    either = [k for k in keys if k.required and k.unless]  # `op`, or `shares` in its place
    if either:
        out["anyOf"] = [{"required": [name]} for k in either for name in (k.name, k.unless)]
    if path in SHORTHANDS:
        return {"anyOf": [out, SHORTHANDS[path]]}
    return out


def _value(key: Key, path: tuple[str, ...]) -> dict:
    types = (key.json_type,) if isinstance(key.json_type, str) else key.json_type
    if path in REFINED:
        options = [REFINED[path]]
    elif path in NESTING:
        options = [_object(path)] + [{"type": t} for t in types if t != "object"]
    elif (*path, "*") in NESTING:
        named = {"type": "object", "minProperties": 1, "additionalProperties": _object((*path, "*"))}
        options = [named] + [{"type": t} for t in types if t != "object"]
    else:
        options = [{"type": t} for t in types]
    out = options[0] if len(options) == 1 else {"anyOf": options}
    return {**out, "description": key.doc}
