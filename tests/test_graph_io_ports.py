"""Several inputs (integer ones among them) and outputs, and ports: `node.0`, `node.name`,
checked against what the node really returns."""

import pytest
import torch
from graph_helpers import compile_text, random_inputs, run_generated, shapes_of, spec_text
from nncompile.errors import NncompileError

TWO_IN_TWO_OUT = """\
nncompile: 1
name: Net
inputs:
  tokens: {shape: [7], dtype: int64}
  extra: [3]
nodes:
  embed: {op: Embedding, in: tokens, num_embeddings: 10, embedding_dim: 6}
  lstm: {op: LSTM, hidden_size: 5}
  last: {op: select, in: lstm.0, dim: 1, index: -1}
  joined: {op: concat, in: [last, extra]}
  score: {op: Linear, out_features: 2}
  state: {op: mean, in: lstm.0, dim: 1}
outputs: {score: score, state: state}
task: {kind: classification, output: score}
"""


def test_integer_inputs_ports_and_a_dict_of_outputs(write_spec):
    compiled = compile_text(write_spec, TWO_IN_TWO_OUT)
    source = compiled.source
    assert (
        "        self, tokens: torch.Tensor, extra: torch.Tensor\n    ) -> dict[str, torch.Tensor]:" in source
    )
    assert "lstm = self.lstm(x)  # 0: (B, 7, 5)" in source
    assert "x = torch.select(lstm[0], 1, -1)  # (B, 5)" in source
    assert 'return {"score": score, "state": x}' in source
    out, _ = run_generated(compiled, random_inputs(compiled))
    assert shapes_of(out) == {"score": (3, 2), "state": (3, 5)}
    predicted = {k: v.shape[1:] for k, v in compiled.shaped.outputs.items()}
    assert predicted == {"score": (2,), "state": (5,)}


def test_lstm_hidden_state_tuple_is_not_a_port_of_its_own(write_spec):
    # LSTM returns (output, (h, c)): port 1 is a tuple, so only port 0 is offered
    nodes = "  lstm: {op: LSTM, hidden_size: 4}\n  r: {op: ReLU, in: lstm.1}"
    with pytest.raises(NncompileError) as info:
        compile_text(write_spec, spec_text("{x: [5, 3]}", nodes))
    [d] = info.value.diagnostics
    assert "has no output '1'" in d.message and "lstm.0" in d.hint


def test_gru_ports_and_an_input_port_is_an_error(write_spec):
    compiled = compile_text(
        write_spec, spec_text("{x: [5, 3]}", "  gru: {op: GRU, hidden_size: 4}\n  h: {op: ReLU, in: gru.1}")
    )
    # torch returns the hidden state as (num_layers, B, hidden), batch_first or not
    assert next(iter(compiled.shaped.outputs.values())).shape == (1, 2, 4)
    with pytest.raises(NncompileError) as info:
        compile_text(write_spec, spec_text("{x: [5, 3]}", "  r: {op: ReLU, in: x.0}"))
    assert "input 'x' has no ports" in info.value.diagnostics[0].message


def test_several_inputs_without_wiring_is_an_error(write_spec):
    with pytest.raises(NncompileError) as info:
        compile_text(write_spec, spec_text("{a: [3], b: [3]}", "  r: ReLU"))
    assert "several inputs" in info.value.diagnostics[0].message


def test_integer_input_reaches_embedding_with_int_dtype(write_spec):
    compiled = compile_text(
        write_spec,
        spec_text(
            "{ids: {shape: [4], dtype: int64}}", "  e: {op: Embedding, num_embeddings: 9, embedding_dim: 2}"
        ),
    )
    assert compiled.shaped.inputs["ids"].dtype == "int64"
    out, _ = run_generated(compiled, {"ids": torch.tensor([[1, 2, 3, 8]])})
    assert out.shape == (1, 4, 2)


ATTENTION = """\
nncompile: 1
name: Net
inputs:
  x: [5, 8]
nodes:
  attn: {op: MultiheadAttention, num_heads: 2}
  pooled: {op: mean, in: attn.0, dim: 1}
outputs: {OUTPUTS}
task: {kind: regression, output: pooled}
"""


def test_attention_weights_are_not_computed_when_nothing_reads_them(write_spec):
    compiled = compile_text(write_spec, ATTENTION.replace("OUTPUTS", "pooled: pooled"))
    assert "h = self.attn(x, x, x, need_weights=False)  # 0: (B, 5, 8)\n" in compiled.source
    _, namespace = run_generated(compiled, random_inputs(compiled))
    model = namespace["Net"]().eval()
    seen = []
    model.attn.register_forward_hook(
        lambda m, args, kwargs, out: seen.append((kwargs, out[1])), with_kwargs=True
    )
    model(**random_inputs(compiled))
    assert seen == [({"need_weights": False}, None)]


def test_attention_weights_read_as_a_port_are_computed(write_spec):
    compiled = compile_text(write_spec, ATTENTION.replace("OUTPUTS", "pooled: pooled, weights: attn.1"))
    assert "need_weights" not in compiled.source
    out, _ = run_generated(compiled, random_inputs(compiled))
    assert shapes_of(out) == {"pooled": (3, 8), "weights": (3, 5, 5)}
