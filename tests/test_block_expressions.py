"""Block parameter expressions over several parameters, text that only looks like one, and an
inferred argument that each use of a block passes to the one class (issue 14, bugs 5 and 6)."""

import pytest
import torch
from graph_helpers import compile_text, random_inputs, run_generated
from nncompile.errors import NncompileError

DECODER = """\
nncompile: 1
name: Net
inputs: {image: [3, 32, 32]}
blocks:
  Up:
    params: {c: 8, k: 3, d: 1}
    inputs: [x, skip]
    nodes:
      up: {op: interpolate, in: x, scale_factor: 2}
      cat: {op: concat, in: [up, skip]}
      conv: {op: Conv2d, out_channels: $c, kernel_size: $k, padding: $d * ($k - 1) // 2, dilation: $d}
      wide: {op: Conv2d, out_channels: $c * $k, kernel_size: 1, padding: ($k - 1) // 2 * $d - 1}
nodes:
  e1: {op: Conv2d, in: image, out_channels: 8, kernel_size: 3, padding: 1}
  e2: {op: Conv2d, out_channels: 16, kernel_size: 3, stride: 2, padding: 1}
  e3: {op: Conv2d, out_channels: 32, kernel_size: 3, stride: 2, padding: 1}
  u1: {op: Up, in: [e3, e2], c: 16}
  u2: {op: Up, in: [u1, e1], c: 8, d: 2}
task: {kind: regression}
"""


def test_expressions_over_several_parameters_with_dollar_anywhere(write_spec):
    compiled = compile_text(write_spec, DECODER)
    assert "padding=d * (k - 1) // 2," in compiled.source
    assert "out_channels=c * k," in compiled.source
    assert "padding=(k - 1) // 2 * d - 1," in compiled.source
    _, namespace = run_generated(compiled, random_inputs(compiled))
    model = namespace["Net"]()
    assert model.u2.conv.padding == (2, 2) and model.u2.conv.dilation == (2, 2)
    assert model.u2.wide.out_channels == 24 and model.u2.wide.padding == (1, 1)
    assert model.u1.wide.padding == (0, 0)


def test_in_channels_after_a_concat_is_passed_by_each_use(write_spec):
    compiled = compile_text(write_spec, DECODER)
    assert "def __init__(\n        self, conv_in_channels: int, c: int = 8" in compiled.source
    assert "in_channels=conv_in_channels," in compiled.source
    # u1: 32 upsampled + 16 skip; u2: 48 (u1's c * k) + 8 skip
    assert "self.u1 = Up(conv_in_channels=48, c=16, k=3, d=1)" in compiled.source
    assert "self.u2 = Up(conv_in_channels=56, c=8, k=3, d=2)" in compiled.source
    out, namespace = run_generated(compiled, random_inputs(compiled))
    assert tuple(out.shape) == (3, 24, 34, 34)  # wide pads by 1 at d=2
    assert namespace["Net"]().u2.conv.in_channels == 56


@pytest.mark.parametrize("value", ["relu_$k", "$k_size", "size$k"])
def test_text_with_a_parameter_inside_is_refused(write_spec, value):
    text = DECODER.replace("scale_factor: 2}", f"scale_factor: 2, mode: {value}}}")
    with pytest.raises(NncompileError) as info:
        compile_text(write_spec, text)
    d = info.value.diagnostics[0]
    assert d.loc.line == 9
    assert "not a parameter" in d.message or "glued to other text" in d.message


def test_a_single_parameter_still_gives_its_value(write_spec):
    text = DECODER.replace("{c: 8, k: 3, d: 1}", "{c: 8, k: 3, d: 1, mode: nearest}").replace(
        "scale_factor: 2}", "scale_factor: 2, mode: $mode}"
    )
    compiled = compile_text(write_spec, text)
    out, _ = run_generated(compiled, random_inputs(compiled))
    assert torch.isfinite(out).all()


def test_a_unet_decoder_block_needs_no_channel_counts(write_spec):
    """Bug 6 alone, with plain `$c` parameters: the concat's channels differ at each use."""
    text = DECODER.replace("padding: $d * ($k - 1) // 2, dilation: $d}", "padding: 1}").replace(
        "      wide: {op: Conv2d, out_channels: $c * $k, kernel_size: 1, padding: ($k - 1) // 2 * $d - 1}\n",
        "",
    )
    compiled = compile_text(write_spec, text)
    assert "self.u1 = Up(conv_in_channels=48, c=16, k=3, d=1)" in compiled.source
    assert "self.u2 = Up(conv_in_channels=24, c=8, k=3, d=2)" in compiled.source
    out, _ = run_generated(compiled, random_inputs(compiled))
    assert tuple(out.shape) == (3, 8, 32, 32)
