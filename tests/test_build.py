"""Stage 2: the graph, the implicit chain, and topology/name checks."""

import pytest
from nncompile.errors import NncompileError
from nncompile.graph import build
from nncompile.spec import loads

TASK = "task: {kind: regression}\n"


def graph(nodes: str, inputs: str = "{x: [4]}", outputs: str = ""):
    return build(
        loads(f"nncompile: 1\nname: Net\ninputs: {inputs}\nnodes:\n{nodes}{outputs}{TASK}", "s.yaml")
    )


def error(*args, **kwargs) -> NncompileError:
    with pytest.raises(NncompileError) as info:
        graph(*args, **kwargs)
    return info.value


def test_implicit_chain_and_order():
    g = graph("  a: {op: Linear, out_features: 3}\n  b: ReLU\n  c: {op: add, in: [a, b]}\n")
    assert g.order == ["a", "b", "c"]
    assert [str(r) for r in g.inputs_of["b"]] == ["a"]
    assert [str(r) for r in g.inputs_of["a"]] == ["x"]
    assert [str(r) for r in g.inputs_of["c"]] == ["a", "b"]  # ordered ports


def test_cycle_is_printed():
    err = error("  a: {op: ReLU, in: b}\n  b: {op: ReLU, in: a}\n")
    assert "cycle" in str(err) and "a -> b -> a" in str(err) or "b -> a -> b" in str(err)


def test_self_loop():
    assert "cycle" in str(error("  a: {op: ReLU, in: a}\n"))


def test_unknown_reference_did_you_mean():
    err = error("  fc1: {op: ReLU}\n  b: {op: ReLU, in: fc}\n")
    assert "unknown input 'fc'" in str(err)
    assert "fc1" in err.diagnostics[0].hint
    assert err.diagnostics[0].loc.line == 6


@pytest.mark.parametrize(
    "name", ["forward", "training", "train", "parameters", "list", "self", "torch", "_x", "class", "x-y"]
)
def test_reserved_or_invalid_node_names(name):
    err = error(f"  '{name}': ReLU\n")
    assert name in str(err)
    assert err.diagnostics[0].node == name


def test_several_inputs_need_explicit_in():
    err = error("  a: ReLU\n", inputs="{x: [4], y: [4]}")
    assert "several inputs" in str(err)


def test_dead_node_warns_and_is_left_out():
    g = graph("  a: ReLU\n  b: {op: ReLU, in: x}\n", outputs="outputs: {out: a}\n")
    assert g.order == ["a"]
    assert any("'b' reaches no output" in w.message for w in g.warnings)
