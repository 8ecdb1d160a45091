"""Symbolic dims: `[3, H, W]` with example sizes under `dims:`; the graph is checked at two sizes,
shape comments show the symbols, and a node that only works at one size is a located error."""

import pytest
import torch
from graph_helpers import compile_text, run_generated, spec_text
from nncompile.errors import NncompileError
from nncompile.shapes.propagate import symbol_of
from nncompile.spec.model import DimSpec

CNN = """\
  conv: {op: Conv2d, out_channels: 4, kernel_size: 3}
  pool: {op: MaxPool2d, kernel_size: 2}
  up: {op: interpolate, scale_factor: 2}
  flat: flatten
"""


def test_comments_name_the_symbols_and_the_model_runs_at_other_sizes(write_spec):
    compiled = compile_text(write_spec, spec_text("{image: [3, H, W]}", CNN, extra="dims: {H: 16, W: 20}\n"))
    source = compiled.source
    assert "x = self.conv(image)  # (B, 4, H-2, W-2)" in source
    assert "x = self.pool(x)  # (B, 4, (H-2)/2, (W-2)/2)" in source
    assert "return torch.flatten(x, start_dim=1)  # (B, ?)" in source  # no simple form: honest
    assert "Symbolic dims H, W: shapes checked at H=16, W=20 and at H=32, W=60." in source
    for h, w in ((16, 20), (9, 31)):
        out, _ = run_generated(compiled, {"image": torch.randn(2, 3, h, w)})
        assert out.shape == (2, 4 * ((h - 2) // 2 * 2) * ((w - 2) // 2 * 2))


def test_a_linear_after_flatten_only_works_at_one_size(write_spec):
    nodes = "  flat: flatten\n  fc: {op: Linear, out_features: 3}"
    with pytest.raises(NncompileError) as info:
        compile_text(write_spec, spec_text("{image: [2, H, W]}", nodes, extra="dims: {H: 4, W: 4}\n"))
    [d] = info.value.diagnostics
    assert d.node == "fc" and d.loc.line == 7
    assert "only works at one input size" in d.message
    assert "in_features = 32 at H=4, W=4 but 192 at H=8, W=12" in d.message


def test_a_fixed_reshape_fails_at_the_check_size(write_spec):
    nodes = "  r: {op: reshape, shape: [2, 16]}"
    with pytest.raises(NncompileError) as info:
        compile_text(write_spec, spec_text("{x: [seq, 2]}", nodes, extra="dims: {seq: 16}\n"))
    [d] = info.value.diagnostics
    assert d.message.startswith("at seq=32 (the check size; the example size works): reshape to [2, 16]")


def test_explicit_check_sizes_and_mean_over_a_symbolic_dim(write_spec):
    nodes = "  m: {op: mean, dim: 1}\n  fc: {op: Linear, out_features: 3}"
    compiled = compile_text(write_spec, spec_text("{x: [seq, 8]}", nodes, extra="dims: {seq: [10, 13]}\n"))
    assert "at seq=10 and at seq=13" in compiled.source
    assert compiled.shaped.inputs["x"].comment() == "(B, seq, 8)"


@pytest.mark.parametrize(
    ("extra", "inputs", "words"),
    [
        ("", "{x: [3, H]}", "symbolic dim 'H' has no example size"),
        ("dims: {H: 0}\n", "{x: [3, H]}", "needs a positive example size"),
        ("dims: {H: [8, 8]}\n", "{x: [3, H]}", "lists the same size twice"),
        ("dims: {H: [8, 9, 10]}\n", "{x: [3, H]}", "needs a positive example size"),
        ("dims: {1H: 8}\n", "{x: [3, 4]}", "is not an identifier"),
    ],
)
def test_bad_dims_are_located_errors(write_spec, extra, inputs, words):
    with pytest.raises(NncompileError) as info:
        compile_text(write_spec, spec_text(inputs, "  r: ReLU", extra=extra))
    assert words in info.value.diagnostics[0].message
    assert info.value.diagnostics[0].loc.line in (3, 4)


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        (8, 8, None),
        (16, 32, "H"),
        (8, 16, "H/2"),
        (48, 96, "3*H"),
        (14, 30, "H-2"),
        (7, 15, "(H-2)/2"),
        (16 * 20, 32 * 60, "H*W"),
        (7, 9, "?"),
    ],
)
def test_symbol_names(first, second, expected):
    dims = {"H": DimSpec("H", 16, 32, None), "W": DimSpec("W", 20, 60, None)}
    assert symbol_of(first, second, dims) == expected
