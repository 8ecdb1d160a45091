"""Blocks: one class per block however often it is used, `$` parameters with safe arithmetic,
`repeat`, nested blocks, stable state-dict keys, and located errors for misuse and recursion."""

import re

import pytest
import torch
from conftest import ROOT
from graph_helpers import compile_text, random_inputs, run_generated
from nncompile import compile_spec
from nncompile.errors import NncompileError

BLOCK = """\
nncompile: 1
name: Net
inputs: {image: [3, 16, 16]}
blocks:
  Unit:
    params: {c: 8, k: 3}
    nodes:
      conv: {op: Conv2d, out_channels: $c * 2, kernel_size: [$k, $k], padding: $(k - 1) // 2}
      bn: BatchNorm2d
      act: ReLU
nodes:
  a: {op: Unit, c: 4}
  b: {op: Unit, c: 8, k: 5}
  c: {op: Unit}
  pool: {op: mean, dim: [2, 3]}
task: {kind: regression}
"""


def test_a_block_used_three_times_is_one_class(write_spec):
    compiled = compile_text(write_spec, BLOCK)
    assert compiled.source.count("class Unit(nn.Module):") == 1
    assert "def __init__(self, in_channels: int, c: int = 8, k: int = 3) -> None:" in compiled.source
    assert "out_channels=c * 2" in compiled.source
    assert "kernel_size=(k, k)" in compiled.source
    assert "padding=(k - 1) // 2" in compiled.source
    assert "self.b = Unit(in_channels=8, c=8, k=5)" in compiled.source
    out, namespace = run_generated(compiled, random_inputs(compiled))
    assert tuple(out.shape) == (3, 16)
    model = namespace["Net"]()
    assert model.b.conv.kernel_size == (5, 5) and model.b.conv.padding == (2, 2)
    assert model.c.conv.in_channels == 16 and model.c.conv.out_channels == 16


def test_resnet_spec_has_one_class_for_six_uses_and_stable_state_dict_keys():
    compiled = compile_spec(ROOT / "specs" / "resnet_blocks.yaml")
    assert len(re.findall(r"^class ResBlock\(nn\.Module\):", compiled.source, re.M)) == 1
    assert compiled.source.count("ResBlock(in_channels=") == 6
    _, namespace = run_generated(compiled, random_inputs(compiled))
    keys = list(namespace["SmallResNet"]().state_dict())
    assert "stage1.0.conv1.weight" in keys and "stage3.1.bn2.running_mean" in keys
    assert keys == list(namespace["SmallResNet"]().state_dict())


def test_nested_blocks_and_a_block_with_two_inputs(write_spec):
    text = """\
nncompile: 1
name: Net
inputs: {low: [8, 4, 4], skip: [4, 8, 8]}
blocks:
  Conv:
    params: [c]
    nodes:
      conv: {op: Conv2d, out_channels: $c, kernel_size: 3, padding: 1}
      act: ReLU
  Up:
    params: [c]
    inputs: [x, skip]
    nodes:
      up: {op: interpolate, in: x, scale_factor: 2}
      cat: {op: concat, in: [up, skip]}
      fuse: {op: Conv, c: $c, repeat: 2}
nodes:
  up: {op: Up, in: [low, skip], c: 6}
task: {kind: regression}
"""
    compiled = compile_text(write_spec, text)
    source = compiled.source
    assert source.index("class Up(nn.Module)") < source.index("class Conv(nn.Module)")  # as they are read
    assert "def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:" in source
    assert "nn.Sequential(Conv(in_channels=12, c=c), Conv(in_channels=c, c=c))" in source
    out, _ = run_generated(compiled, random_inputs(compiled))
    assert tuple(out.shape) == (3, 6, 8, 8)


def error_of(write_spec, text: str):
    with pytest.raises(NncompileError) as info:
        compile_text(write_spec, text)
    return info.value.diagnostics[0]


def with_block(nodes: str, uses: str, params: str = "{c: 4}") -> str:
    return (
        "nncompile: 1\nname: Net\ninputs: {x: [8]}\nblocks:\n  B:\n"
        f"    params: {params}\n    nodes:\n{nodes}\nnodes:\n{uses}\ntask: {{kind: regression}}\n"
    )


FC = "      fc: {op: Linear, out_features: $c}"


@pytest.mark.parametrize(
    ("text", "words", "line"),
    [
        (
            with_block("      fc: {op: Linear, out_features: $__import__('os')}", "  b: B"),
            "Call is not allowed",
            8,
        ),
        (
            with_block("      fc: {op: Linear, out_features: $c.real}", "  b: B"),
            "Attribute is not allowed",
            8,
        ),
        (with_block("      fc: {op: Linear, out_features: $c ** 2}", "  b: B"), "Pow is not allowed", 8),
        (with_block("      fc: {op: Linear, out_features: $d}", "  b: B"), "not a parameter", 8),
        (with_block("      fc: {op: Linear, out_features: $c +}", "  b: B"), "cannot read", 8),
        (with_block("      fc: {op: Linear, out_features: $c // 0}", "  b: B"), "cannot be computed", 8),
        (with_block(FC, "  b: {op: B, width: 3}"), "unknown parameter 'width'", 10),
        (with_block(FC, "  b: B", params="[c]"), "needs the parameter `c`", 10),
        (with_block(FC, "  b: {op: B, repeat: 0}"), "repeat must be", 10),
        (with_block(FC, "  b: B").replace("    nodes:", "    inputs: [x, x]\n    nodes:"), "listed twice", 7),
        (with_block(FC, "  b: B").replace("    nodes:", "    inputs: 3\n    nodes:"), "must be array", 7),
        (with_block(FC, "  b: B", params="{self: 1}"), "is a name the generated code uses itself", 5),
        (with_block(FC, "  b: {op: Linear, out_features: $c}"), "outside a block", 10),
        (with_block("      inner: {op: B}", "  b: B"), "block 'B' uses itself: B -> B", 8),
        (with_block("      fc: {op: Linear, out_features: 4, in: y}", "  b: B"), "unknown input 'y'", 8),
        (
            with_block("      fc: {op: Conv2d, out_channels: $c, kernel_size: 1}", "  b: B"),
            "in block 'B' used by node 'b'",
            8,
        ),
    ],
)
def test_block_misuse_is_located(write_spec, text, words, line):
    d = error_of(write_spec, text)
    assert words in d.message
    assert d.loc.line == line


def test_mutual_recursion_is_an_error(write_spec):
    text = """\
nncompile: 1
name: Net
inputs: {x: [8]}
blocks:
  A:
    nodes:
      b: B
  B:
    nodes:
      a: A
nodes:
  a: A
task: {kind: regression}
"""
    d = error_of(write_spec, text)
    assert "uses itself: A -> B -> A" in d.message
    assert d.loc.line == 7


def test_a_parameter_in_forward_code_must_agree_between_uses(write_spec):
    text = with_block(
        "      r: {op: reshape, shape: [$c, -1]}",
        "  a: {op: B, c: 2}\n  fa: flatten\n  b: {op: B, c: 4, in: x}\n  fb: flatten\n  s: {op: concat, in: [fa, fb]}",
    )
    d = error_of(write_spec, text)
    assert "differ in their forward code" in d.message


def test_repeat_chains_copies_in_a_sequential(write_spec):
    compiled = compile_text(write_spec, with_block(FC, "  b: {op: B, repeat: 3}", params="{c: 8}"))
    assert compiled.source.count("B(in_features=") == 3
    assert "self.b = nn.Sequential(" in compiled.source
    _, namespace = run_generated(compiled, random_inputs(compiled))
    assert isinstance(namespace["Net"]().b, torch.nn.Sequential)


def test_summary_counts_a_blocks_parameters_and_macs_over_its_copies():
    rows = {r.node: r for r in compile_spec(ROOT / "specs" / "resnet_blocks.yaml").summary().rows}
    per_copy = 2 * (16 * 16 * 3 * 3) + 2 * (2 * 16)  # two 3x3 convs without bias, two BatchNorms
    assert rows["stage1"].params == 2 * per_copy
    assert rows["stage1"].macs == 2 * 2 * (16 * 16 * 9 * 32 * 32)  # two copies of two convs, at H=W=32


def test_a_block_of_functional_ops_only(write_spec):
    nodes = "      t: {op: transpose, dim0: 1, dim1: 2}\n      m: {op: mean, dim: 2}"
    text = with_block(nodes, "  b: B", params="{}").replace("inputs: {x: [8]}", "inputs: {x: [3, 4]}")
    compiled = compile_text(write_spec, text)
    assert "    def __init__(self) -> None:\n        super().__init__()\n\n    def forward" in compiled.source
    out, _ = run_generated(compiled, random_inputs(compiled))
    assert tuple(out.shape) == (3, 4)


def test_a_block_used_on_inputs_of_different_ranks(write_spec):
    """Found by the random-DAG property test: a block fed a (B, 4, 6) tensor at one use and a
    (B, 5) tensor at another reads its Linear's in_features from the last dim at both."""
    text = """\
nncompile: 1
name: Net
inputs: {a: [4, 6], b: [5]}
blocks:
  Dense:
    params: [c]
    nodes:
      fc: {op: Linear, out_features: $c}
      norm: LayerNorm
nodes:
  wide: {op: Dense, in: a, c: 3}
  flat: {op: Dense, in: b, c: 3}
outputs: {wide: wide, flat: flat}
task: {kind: regression, output: flat}
"""
    compiled = compile_text(write_spec, text)
    assert "def __init__(self, in_features: int, c: int) -> None:" in compiled.source
    assert "self.wide = Dense(in_features=6, c=3)" in compiled.source
    assert "self.flat = Dense(in_features=5, c=3)" in compiled.source
    out, _ = run_generated(compiled, random_inputs(compiled))
    assert tuple(out["wide"].shape) == (3, 4, 3) and tuple(out["flat"].shape) == (3, 3)
