"""`nncompile schema`: a JSON Schema (draft 2020-12) rendered from the models the loader validates
with (spec/keys.py); every example spec validates against it and bad specs do not."""

import json

import jsonschema
import pytest
import yaml
from conftest import ROOT, SPECS
from nncompile.spec import keys
from nncompile.spec.checking import Keys
from nncompile.spec.schema import schema

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


def _models(model: type[Keys]) -> list[type[Keys]]:
    return [model, *(m for sub in model.__subclasses__() for m in _models(sub))]


def test_every_key_of_every_model_is_in_the_schema():
    """Each mapping's model (`Keys`) is placed in the schema with all its keys and descriptions."""
    text = json.dumps(schema())
    for model in _models(Keys):
        for name, field in model.model_fields.items():
            assert json.dumps(field.description) in text, f"{model.__name__}.{name}"


def test_keys_and_docs_come_from_the_models():
    s = schema()["$defs"]["Spec"]
    assert list(s["properties"]) == keys.SpecKeys.key_names()
    assert s["required"] == ["nncompile", "name", "inputs", "nodes", "task"]
    node = schema()["$defs"]["NodeKeys"]
    assert list(node["properties"]) == keys.NodeKeys.key_names()
    assert node["properties"]["op"]["description"] == keys.NodeKeys.model_fields["op"].description
    task = s["properties"]["task"]
    assert task["properties"]["kind"]["enum"] == list(keys.TASK_KINDS)
    assert task["properties"]["optimizer"]["properties"]["lr"]["default"] == 1e-3


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
    assert schema()["$defs"]["NodeKeys"]["anyOf"] == [{"required": ["op"]}, {"required": ["shares"]}]
