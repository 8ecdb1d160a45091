"""Functional ops and merges: the predicted shape equals the real one, the code is a plain torch
call, and misuse is a located SpecError that says which dim is wrong and where each side came from."""

import pytest
from graph_helpers import compile_text, random_inputs, run_generated, spec_text
from nncompile.errors import NncompileError

X = "{x: [4, 6, 8]}"
# (inputs, node lines, predicted shape without the batch dim, a fragment of the generated call)
CASES = {
    "flatten": (X, "  f: flatten", (192,), "torch.flatten(x, start_dim=1)"),
    "flatten_range": (X, "  f: {op: flatten, start_dim: 1, end_dim: 2}", (24, 8), "end_dim=2"),
    "reshape": (X, "  r: {op: reshape, shape: [24, 8]}", (24, 8), "torch.reshape(x, (-1, 24, 8))"),
    "reshape_infer": (X, "  r: {op: reshape, shape: [-1, 4]}", (48, 4), "torch.reshape(x, (len(x), -1, 4))"),
    "view": (X, "  r: {op: view, shape: [8, 24]}", (8, 24), "torch.reshape"),
    "permute": (X, "  p: {op: permute, dims: [0, 3, 1, 2]}", (8, 4, 6), "torch.permute(x, (0, 3, 1, 2))"),
    "transpose": (X, "  t: {op: transpose, dim0: 1, dim1: 2}", (6, 4, 8), "torch.transpose(x, 1, 2)"),
    "unsqueeze": (X, "  u: {op: unsqueeze, dim: 1}", (1, 4, 6, 8), "torch.unsqueeze(x, 1)"),
    "squeeze": ("{x: [4, 1, 8]}", "  s: {op: squeeze, dim: 2}", (4, 8), "torch.squeeze(x, 2)"),
    "select": (X, "  s: {op: select, dim: 2, index: -1}", (4, 8), "torch.select(x, 2, -1)"),
    "slice": (X, "  s: {op: slice, dim: 3, start: 2, end: 6}", (4, 6, 4), "torch.narrow(x, 3, 2, 4)"),
    "softmax": (X, "  s: softmax", (4, 6, 8), "torch.softmax(x, dim=-1)"),
    "log_softmax": (X, "  s: {op: log_softmax, dim: 1}", (4, 6, 8), "torch.log_softmax(x, dim=1)"),
    "mean": (X, "  m: {op: mean, dim: [2, 3]}", (4,), "torch.mean(x, dim=(2, 3))"),
    "sum_keepdim": (X, "  m: {op: sum, dim: 1, keepdim: true}", (1, 6, 8), "keepdim=True"),
    "max": (X, "  m: {op: max, dim: -1}", (4, 6), "torch.amax(x, dim=-1)"),
    "interpolate": (
        X,
        "  i: {op: interpolate, scale_factor: 2}",
        (4, 12, 16),
        "interpolate(x, scale_factor=2",
    ),
    "interpolate_size": (
        X,
        "  i: {op: interpolate, size: [3, 5], mode: bilinear, align_corners: false}",
        (4, 3, 5),
        'size=(3, 5), mode="bilinear", align_corners=False',
    ),
    "pad": (X, "  p: {op: pad, pad: [1, 1, 2, 0]}", (4, 8, 10), "torch.nn.functional.pad(x, (1, 1, 2, 0))"),
    "matmul": (
        "{a: [5, 3], b: [3, 7]}",
        "  m: {op: matmul, in: [a, b]}",
        (5, 7),
        "torch.matmul(a, b)",
    ),
    "einsum": (
        "{a: [5, 3], b: [3, 7]}",
        "  e: {op: einsum, in: [a, b], equation: 'bij,bjk->bik'}",
        (5, 7),
        'torch.einsum("bij,bjk->bik", a, b)',
    ),
    "stack": ("{a: [5], b: [5]}", "  s: {op: stack, in: [a, b]}", (2, 5), "torch.stack([a, b], dim=1)"),
    "add_broadcast": ("{a: [4, 6], b: [1, 6]}", "  s: {op: add, in: [a, b]}", (4, 6), "a + b"),
    "sub": ("{a: [5], b: [5]}", "  s: {op: sub, in: [a, b]}", (5,), "a - b"),
    "mul3": ("{a: [5], b: [5], c: [5]}", "  s: {op: mul, in: [a, b, c]}", (5,), "a * b * c"),
    "chunk_port": (X, "  c: {op: chunk, chunks: 2, dim: 3}\n  o: {op: ReLU, in: c.1}", (4, 6, 4), "[1]"),
    "split_port": (
        X,
        "  c: {op: split, split_size: [2, 6], dim: 3}\n  o: {op: ReLU, in: c.1}",
        (4, 6, 6),
        "torch.split(x, (2, 6), dim=3)",
    ),
}


@pytest.mark.parametrize("case", CASES, ids=str)
def test_op_predicts_its_real_shape(case, write_spec):
    inputs, nodes, shape, fragment = CASES[case]
    compiled = compile_text(write_spec, spec_text(inputs, nodes))
    predicted = next(iter(compiled.shaped.outputs.values())).shape
    assert predicted[1:] == shape
    assert fragment in compiled.source
    out, _ = run_generated(compiled, random_inputs(compiled, batch=3))
    assert tuple(out.shape) == (3, *shape)


def error_of(write_spec, inputs: str, nodes: str):
    with pytest.raises(NncompileError) as info:
        compile_text(write_spec, spec_text(inputs, nodes))
    [diagnostic] = info.value.diagnostics
    return diagnostic


def test_add_names_the_disagreeing_dim_and_both_sources(write_spec):
    d = error_of(
        write_spec,
        "{image: [3, 32, 32]}",
        "  conv_a: {op: Conv2d, out_channels: 64, kernel_size: 3, padding: 1}\n"
        "  conv_b: {op: Conv2d, in: image, out_channels: 128, kernel_size: 3, padding: 1}\n"
        "  both: {op: add, in: [conv_a, conv_b]}",
    )
    assert d.node == "both"
    assert "dim 1 disagrees" in d.message
    assert "64 from conv_a (B, 64, 32, 32), 128 from conv_b (B, 128, 32, 32)" in d.message
    assert d.loc.line == 7  # the `both` node's op


@pytest.mark.parametrize(
    ("inputs", "nodes", "words"),
    [
        (X, "  s: {op: squeeze, dim: 1}", "has size 4, not 1"),
        (X, "  r: {op: reshape, shape: [5, 5]}", "does not fit"),
        (X, "  p: {op: permute, dims: [1, 0, 2, 3]}", "keeps the batch dim 0 first"),
        (X, "  m: {op: mean, dim: 0}", "is the batch dim"),
        (X, "  m: {op: mean, dim: 7}", "out of range"),
        (X, "  f: {op: flatten, start_dim: 3, end_dim: 1}", "comes before"),
        (X, "  s: {op: select, dim: 1, index: 9}", "out of range"),
        (X, "  s: {op: slice, dim: 1, start: 3, end: 1}", "is empty"),
        (X, "  s: {op: split, split_size: [3, 3], dim: 3}", "add up to 6"),
        (X, "  s: {op: softmax, axis: 1}", "unknown argument 'axis'"),
        (X, "  s: {op: softmax, dim: one}", "must be an integer"),
        (X, "  c: {op: chunk, chunks: 2}\n  o: {op: ReLU, in: c.5}", "has no output '5'"),
        (X, "  c: {op: chunk, chunks: 2}\n  o: {op: ReLU, in: c}", "returns several values"),
        (X, "  i: {op: interpolate}", "exactly one of"),
        ("{a: [5, 3], b: [4, 7]}", "  m: {op: matmul, in: [a, b]}", "must equal"),
        ("{a: [5, 3]}", "  e: {op: einsum, equation: 'bi->b; import os'}", "is not of the form"),
        ("{a: [5, 3]}", "  e: {op: einsum, equation: 'bi->b'}", "has 2 letters"),
        ("{a: [5], b: [5, 1]}", "  s: {op: add, in: [a, b]}", "one rank"),
        ("{a: [5], b: [6]}", "  s: {op: stack, in: [a, b]}", "equal sizes in dim 1"),
        ("{a: [5], b: [6]}", "  s: {op: sub, in: [a, b, a]}", "takes 2 input(s)"),
    ],
)
def test_misuse_is_a_located_spec_error(write_spec, inputs, nodes, words):
    d = error_of(write_spec, inputs, nodes)
    assert words in d.message
    assert d.loc is not None and d.loc.line >= 5
    assert d.node is not None
