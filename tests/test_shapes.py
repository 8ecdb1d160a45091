"""Stage 3: shapes on the meta device, inferred arguments, and located shape errors."""

import pytest
from nncompile.errors import NncompileError
from nncompile.graph import build
from nncompile.shapes import propagate
from nncompile.spec import loads


def shaped(nodes: str, inputs: str = "{x: [3, 16, 16]}", task: str = "regression"):
    text = f"nncompile: 1\nname: Net\ninputs: {inputs}\nnodes:\n{nodes}task: {{kind: {task}}}\n"
    return propagate(build(loads(text, "s.yaml")))


def error(*args, **kwargs) -> NncompileError:
    with pytest.raises(NncompileError) as info:
        shaped(*args, **kwargs)
    return info.value


def test_conv_bn_linear_arguments_are_inferred():
    s = shaped(
        "  conv: {op: Conv2d, out_channels: 8, kernel_size: 3}\n  bn: BatchNorm2d\n  flat: Flatten\n"
        "  norm: LayerNorm\n  fc: {op: Linear, out_features: 5}\n"
    )
    assert s.nodes["conv"].built.inferred == {"in_channels": 3}
    assert s.nodes["bn"].built.inferred == {"num_features": 8}
    assert s.nodes["norm"].built.inferred == {"normalized_shape": 8 * 14 * 14}
    assert s.nodes["fc"].built.inferred == {"in_features": 8 * 14 * 14}
    assert s.outputs["fc"].shape == (2, 5)


def test_recurrent_layers_get_input_size_and_ports():
    s = shaped(
        "  lstm: {op: LSTM, hidden_size: 6}\n  last: {op: Linear, in: lstm.0, out_features: 2}\n",
        inputs="{x: [7, 4]}",
    )
    built = s.nodes["lstm"].built
    assert built.inferred == {"input_size": 4, "batch_first": True}
    assert built.ports["0"].info.shape == (2, 7, 6)
    assert s.outputs["last"].shape == (2, 7, 2)


def test_tuple_output_without_port_is_an_error():
    err = error(
        "  lstm: {op: LSTM, hidden_size: 6}\n  fc: {op: Linear, out_features: 2}\n", inputs="{x: [7, 4]}"
    )
    assert "returns several values" in str(err) and "lstm.0" in err.diagnostics[0].hint


def test_wrong_explicit_in_features_names_the_real_width():
    err = error("  flat: Flatten\n  fc: {op: Linear, in_features: 100, out_features: 2}\n")
    d = err.diagnostics[0]
    assert d.node == "fc" and d.loc.line == 6
    assert "in_features is 100 but the incoming tensor has 768" in d.message


def test_unknown_argument_and_missing_argument():
    assert "did you mean 'out_features'" in error("  fc: {op: Linear, out_feature: 2}\n").diagnostics[0].hint
    assert "needs `out_features`" in str(error("  fc: Linear\n"))


def test_unknown_op_did_you_mean():
    err = error("  c: {op: Conv2D, out_channels: 4, kernel_size: 3}\n")
    assert "unknown op 'Conv2D'" in str(err) and "Conv2d" in err.diagnostics[0].hint


def test_concat_mismatch_and_add_broadcast():
    err = error("  a: {op: Conv2d, out_channels: 4, kernel_size: 3}\n  b: {op: concat, in: [a, x]}\n")
    assert "dim 2" in str(err) and "a (B, 4, 14, 14)" in str(err)
    err = error("  a: {op: Conv2d, out_channels: 4, kernel_size: 1}\n  b: {op: add, in: [a, x]}\n")
    assert "broadcast" in str(err)


def test_classification_needs_class_scores():
    with pytest.raises(NncompileError, match="classification needs an output"):
        from nncompile.plan import plan

        plan(
            shaped("  flat: Flatten\n  fc: {op: Linear, out_features: 1}\n", task="classification"),
            "s.yaml",
            "o.py",
        )
