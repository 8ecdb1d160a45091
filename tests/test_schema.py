"""`nncompile schema`: a JSON Schema (draft 2020-12) rendered from spec.py's key tables; every
example spec validates against it and bad specs do not."""

import json

import jsonschema
import pytest
import yaml
from conftest import ROOT, SPECS
from nncompile import spec
from nncompile.spec.schema import NESTING, schema, tables

VALIDATOR = jsonschema.Draft202012Validator(schema())


def test_schema_is_valid_draft_2020_12():
    jsonschema.Draft202012Validator.check_schema(schema())
    assert schema()["$schema"] == "https://json-schema.org/draft/2020-12/schema"


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_every_example_spec_validates(path):
    errors = [e.message for e in VALIDATOR.iter_errors(yaml.safe_load(path.read_text()))]
    assert errors == []


SEED = yaml.safe_load((ROOT / "specs" / "seed1_resnet_head.yaml").read_text())
BAD = {
    "missing task": {k: v for k, v in SEED.items() if k != "task"},
    "unknown top-level key": {**SEED, "output": {"y": "fc2"}},
    "format version 2": {**SEED, "nncompile": 2},
    "class name with a space": {**SEED, "name": "Custom ResNet"},
    "zero dim": {**SEED, "inputs": {"image": [3, 0, 224]}},
    "unknown dtype": {**SEED, "inputs": {"image": {"shape": [3, 224, 224], "dtype": "float23"}}},
    "unknown input key": {**SEED, "inputs": {"image": {"shape": [3], "dims": 2}}},
    "no nodes": {**SEED, "nodes": {}},
    "node without op": {**SEED, "nodes": {"fc": {"out_features": 3}}},
    "node op not a string": {**SEED, "nodes": {"fc": {"op": 3}}},
    "shares not a string": {**SEED, "nodes": {**SEED["nodes"], "fc3": {"shares": 3}}},
    "per_item not an integer": {**SEED, "nodes": {"fc": {"op": "Linear", "per_item": "T"}}},
    "unknown task kind": {**SEED, "task": {"kind": "clustering"}},
    "unknown task key": {**SEED, "task": {"kind": "regression", "optimiser": {}}},
    "lr not a number": {**SEED, "task": {"kind": "regression", "optimizer": {"lr": "fast"}}},
}


@pytest.mark.parametrize("name", BAD)
def test_bad_specs_are_rejected(name):
    assert list(VALIDATOR.iter_errors(BAD[name])), f"the schema accepts a spec with {name}"


@pytest.mark.parametrize("name", BAD)
def test_the_loader_rejects_them_too(name, tmp_path):
    """The schema is no stricter than the compiler's loader: both refuse each bad spec."""
    from nncompile.errors import NncompileError
    from nncompile.spec import load

    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(BAD[name]))
    with pytest.raises(NncompileError):
        load(path)


def test_every_key_table_of_the_loader_is_in_the_schema():
    """A new `*_KEYS` table in spec.py must be placed in schema.NESTING, or editors never see it."""
    placed = {table for table, _ in NESTING.values()}
    assert set(tables()) == placed, "add the new table to nncompile.schema.NESTING"


def test_keys_and_docs_come_from_the_tables():
    s = schema()
    assert list(s["properties"]) == [k.name for k in spec.TOP_KEYS]
    assert s["required"] == [k.name for k in spec.TOP_KEYS if k.required]
    node = s["properties"]["nodes"]["additionalProperties"]["anyOf"][0]
    assert list(node["properties"]) == [k.name for k in spec.NODE_KEYS]
    assert node["properties"]["op"]["description"] == spec.NODE_KEYS[0].doc
    task = s["properties"]["task"]
    assert task["properties"]["kind"]["enum"] == list(spec.TASK_KINDS)


def test_schema_command_writes_the_same_schema(run_cli, tmp_path):
    out = tmp_path / "nncompile.spec.model.schema.json"
    code, _, _ = run_cli("schema", "-o", out)
    assert code == 0
    assert json.loads(out.read_text()) == schema()


def test_a_node_with_shares_needs_no_op():
    """`shares:` stands in for the required `op:`: the schema and the loader agree."""
    data = {**SEED, "inputs": {"a": [8], "b": [8]}}
    data["nodes"] = {"fa": {"op": "Linear", "in": "a", "out_features": 4}, "fb": {"shares": "fa", "in": "b"}}
    assert [e.message for e in VALIDATOR.iter_errors(data)] == []
    node = schema()["properties"]["nodes"]["additionalProperties"]["anyOf"][0]
    assert node["anyOf"] == [{"required": ["op"]}, {"required": ["shares"]}]
