"""Stage 1: YAML is read safely, with locations, and validated into typed objects."""

import pytest
from nncompile.errors import NncompileError, SpecError
from nncompile.spec import loads

HEAD = "nncompile: 1\nname: Net\ninputs: {x: [4]}\n"
TASK = "task: {kind: regression}\n"


def error(text: str) -> NncompileError:
    with pytest.raises(NncompileError) as info:
        loads(text, "s.yaml")
    return info.value


def test_valid_spec_is_typed_with_locations():
    spec = loads(HEAD + "nodes:\n  fc: {op: Linear, out_features: 2}\n" + TASK, "s.yaml")
    assert spec.name == "Net"
    assert spec.inputs[0].shape == (4,)
    assert spec.nodes[0].params == {"out_features": 2}
    assert spec.nodes[0].param_loc("out_features").line == 5
    assert spec.outputs[0].name == "fc"  # default: the last node


def test_duplicate_node_is_an_error_not_silently_dropped():
    err = error(HEAD + "nodes:\n  fc: {op: Linear, out_features: 2}\n  fc: {op: ReLU}\n" + TASK)
    d = err.diagnostics[0]
    assert "duplicate key 'fc'" in d.message and "line 5" in d.message
    assert (d.loc.line, d.loc.col) == (6, 3)


def test_unknown_key_gets_did_you_mean():
    err = error(HEAD + "nodes:\n  fc: {op: Linear, out_features: 2}\n" + TASK + "outptus: fc\n")
    assert "unknown key 'outptus'" in str(err)
    assert "did you mean 'outputs'" in err.diagnostics[0].hint


def test_yaml_tags_are_refused():
    err = error(HEAD + "nodes:\n  fc: !!python/object/apply:os.system ['echo hi']\n" + TASK)
    assert "tag" in str(err)
    assert err.diagnostics[0].loc.line == 5


def test_several_independent_errors_are_reported_together():
    err = error(
        "nncompile: 1\nname: Net\ninputs: {x: [0, -1]}\nnodes: {fc: {op: Linear}}\ntask: {kind: foo}\n"
    )
    messages = [d.message for d in err.diagnostics]
    assert len(messages) >= 3, messages


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", "empty"),
        ("- a\n- b\n", "top level must be a mapping"),
        ("nncompile: 2\nname: N\ninputs: {x: [1]}\nnodes: {a: ReLU}\n" + TASK, "version"),
        ("nncompile: 1\nname: 3x\ninputs: {x: [1]}\nnodes: {a: ReLU}\n" + TASK, "identifier"),
        ("nncompile: 1\nname: N\ninputs: {x: [1]}\nnodes: {a: ReLU}\n", "missing the required key 'task'"),
        ("nncompile: 1\nname: N\ninputs:\n\tx: [1]\n", "invalid YAML"),
    ],
)
def test_malformed_specs(text, expected):
    assert expected in str(error(text))


def test_error_renders_line_caret_and_hint():
    err = SpecError("bad thing", None, hint="fix it")
    assert err.render() == "error: bad thing\nhint: fix it"
