"""`shares:` (a node's module applied again to other inputs), `per_item:` (a dim folded into the
batch around one node or block), library classes by import path, and the note that a block used
twice holds two sets of weights."""

import pytest
import torch
from graph_helpers import compile_text, random_inputs, run_generated, spec_text
from nncompile.errors import NncompileError

TWO = "{a: [8], b: [8]}"


def error_of(write_spec, text: str):
    with pytest.raises(NncompileError) as info:
        compile_text(write_spec, text)
    return info.value.diagnostics[0]


def test_a_shared_linear_is_one_attribute_called_twice(write_spec):
    nodes = (
        "  fa: {op: Linear, in: a, out_features: 4}\n  fb: {shares: fa, in: b}\n  s: {op: add, in: [fa, fb]}"
    )
    compiled = compile_text(write_spec, spec_text(TWO, nodes))
    assert compiled.source.count("nn.Linear(") == 1
    assert "x = self.fa(b)  # (B, 4)" in compiled.source
    out, namespace = run_generated(compiled, random_inputs(compiled))
    model = namespace["Net"]()
    assert sum(p.numel() for p in model.parameters()) == 8 * 4 + 4
    a, b = torch.randn(2, 8), torch.randn(2, 8)
    with torch.no_grad():
        assert torch.allclose(model(a=a, b=b), model.fa(a) + model.fa(b))
    row = next(r for r in compiled.summary().rows if r.node == "fb")
    assert (row.op, row.params, row.macs) == ("shares fa", 0, 32)
    assert 'n_fb["fb<br/>shares fa"]' in compiled.render_graph()


def test_a_shared_block_is_one_instance_and_its_header_does_not_warn(write_spec):
    text = (
        "nncompile: 1\nname: Net\ninputs: {a: [3, 8, 8], b: [3, 8, 8]}\nblocks:\n  Enc:\n    nodes:\n"
        "      conv: {op: Conv2d, out_channels: 4, kernel_size: 3}\n      pool: {op: mean, dim: [2, 3]}\n"
        "nodes:\n  ea: {op: Enc, in: a}\n  eb: {shares: ea, in: b}\n  s: {op: concat, in: [ea, eb]}\n"
        "task: {kind: regression}\n"
    )
    compiled = compile_text(write_spec, text)
    assert compiled.source.count("Enc(in_channels=3)") == 1
    assert "= self.ea(b)  # (B, 4)" in compiled.source
    assert "do not share weights" not in compiled.source
    out, namespace = run_generated(compiled, random_inputs(compiled))
    assert tuple(out.shape) == (3, 8)
    assert sum(p.numel() for p in namespace["Net"]().parameters()) == 3 * 4 * 9 + 4


def test_a_block_used_twice_says_its_copies_do_not_share_weights(write_spec):
    text = (
        "nncompile: 1\nname: Net\ninputs: {a: [8]}\nblocks:\n  B:\n    nodes:\n"
        "      fc: {op: Linear, out_features: 8}\n"
        "nodes:\n  one: B\n  two: B\ntask: {kind: regression}\n"
    )
    compiled = compile_text(write_spec, text)
    note = "Block B: used 2 times, as 2 copies that do not share weights."
    assert note in compiled.source  # the header
    assert note in compiled.summary().text()
    assert any(note in n for n in compiled.summary().to_dict()["notes"])


@pytest.mark.parametrize(
    ("nodes", "words", "line"),
    [
        ("  fa: {op: Linear, in: a, out_features: 4}\n  fb: {shares: fx, in: b}", "unknown node 'fx'", 6),
        ("  fa: {op: Linear, in: a, out_features: 4}\n  fb: {shares: fb, in: b}", "is itself", 6),
        (
            "  fa: {op: Linear, in: a, out_features: 4}\n  fb: {shares: fa, in: b}\n  fc: {shares: fb, in: a}",
            "shares 'fa' in turn",
            7,
        ),
        (
            "  fa: {op: Linear, in: a, out_features: 4}\n  fb: {shares: fa, in: b, out_features: 3}",
            "takes no `out_features`",
            6,
        ),
        (
            "  fa: {op: Linear, in: a, out_features: 4}\n  fb: {shares: fa, in: b, freeze: true}",
            "no `freeze`",
            6,
        ),
        ("  fa: {op: mean, in: a, dim: 1}\n  fb: {shares: fa, in: b}", "no weights to share", 6),
        ("  fa: {op: Linear, in: a, out_features: -4}\n  fb: {shares: fa, in: b}", "cannot be built", 5),
        (
            "  fa: {op: Linear, in: a, out_features: 4}\n  fb: {shares: fa, in: c}",
            "in_features = 8 for 'fa' but 6",
            6,
        ),
        (
            "  fa: {op: Linear, in: a, out_features: 4}\n  fb: {shares: fa, in: fa}",
            "in_features = 8 for 'fa' but 4",
            6,
        ),
    ],
)
def test_sharing_mistakes_are_located(write_spec, nodes, words, line):
    d = error_of(write_spec, spec_text("{a: [8], b: [8], c: [6]}", nodes))
    assert words in d.message
    assert d.loc.line == line


def test_a_shared_conv_accepts_another_image_size(write_spec):
    nodes = (
        "  ca: {op: Conv2d, in: a, out_channels: 4, kernel_size: 3}\n  pa: {op: mean, dim: [2, 3]}\n"
        "  cb: {shares: ca, in: b}\n  pb: {op: mean, dim: [2, 3]}\n  s: {op: add, in: [pa, pb]}"
    )
    compiled = compile_text(write_spec, spec_text("{a: [3, 16, 16], b: [3, 24, 24]}", nodes))
    assert "= self.ca(b)  # (B, 4, 22, 22)" in compiled.source
    out, _ = run_generated(compiled, random_inputs(compiled))
    assert tuple(out.shape) == (3, 4)


def test_per_item_folds_a_later_dim_and_brings_the_items_back_at_dim_1(write_spec):
    nodes = "  fc: {op: Linear, out_features: 4, per_item: 2}"
    compiled = compile_text(write_spec, spec_text("{x: [6, 5, 6]}", nodes))
    assert "torch.flatten(torch.movedim(x, 2, 1), 0, 1)" in compiled.source
    assert "# (B*5, 6, 4) -> (B, 5, 6, 4)" in compiled.source
    x = torch.randn(3, 6, 5, 6)
    _, namespace = run_generated(compiled, {"x": x})
    model = namespace["Net"]().eval()
    with torch.no_grad():
        out = model(x=x)
        expected = torch.stack([model.fc(x[:, :, i]) for i in range(5)], dim=1)
    assert torch.allclose(out, expected, atol=1e-6)


def test_per_item_comments_show_the_folded_input(write_spec):
    nodes = "  conv: {op: Conv2d, out_channels: 4, kernel_size: 3, per_item: 1}"
    compiled = compile_text(write_spec, spec_text("{x: [5, 3, 8, 8]}", nodes))
    assert "# in_channels inferred from x (B*5, 3, 8, 8)" in compiled.source
    assert "# (B*5, 4, 6, 6) -> (B, 5, 4, 6, 6)" in compiled.source
    row = compiled.summary().rows[0]
    assert row.macs == 5 * 4 * 27 * 36  # every frame counted


@pytest.mark.parametrize(
    ("inputs", "nodes", "words"),
    [
        ("{x: [5, 8]}", "  fc: {op: Linear, out_features: 4, per_item: 3}", "has no dim 3"),
        ("{x: [5, 8]}", "  fc: {op: Linear, out_features: 4, per_item: 0}", "is the batch dim"),
        (
            "{a: [5, 8], b: [4, 8]}",
            "  s: {op: concat, in: [a, b], dim: 1, per_item: 1}",
            "whose size differs between the inputs",
        ),
        ("{x: [5, 8]}", "  c: {op: chunk, chunks: 2, per_item: 1}", "returns one tensor"),
    ],
)
def test_per_item_mistakes_are_located(write_spec, inputs, nodes, words):
    d = error_of(write_spec, spec_text(inputs, nodes))
    assert words in d.message
    assert d.loc.line == 5


@pytest.mark.parametrize(
    ("node", "cls"),
    [
        ("{op: torchvision.ops.SqueezeExcitation, squeeze_channels: 4}", "SqueezeExcitation"),
        ("{op: torchvision.models.segmentation.deeplabv3.DeepLabHead, num_classes: 3}", "DeepLabHead"),
        ("{op: timm.layers.SqueezeExcite, rd_ratio: 0.25}", "SqueezeExcite"),
    ],
)
def test_library_layers_by_import_path_with_inferred_channels(write_spec, node, cls):
    nodes = f"  conv: {{op: Conv2d, out_channels: 16, kernel_size: 3, padding: 1}}\n  layer: {node}"
    compiled = compile_text(write_spec, spec_text("{x: [3, 16, 16]}", nodes))
    assert f"import {cls}\n" in compiled.source
    assert "=16)" in compiled.source.split("self.layer = ")[1].split("\n")[0]  # the inferred channels
    out, namespace = run_generated(compiled, random_inputs(compiled))
    assert isinstance(namespace["Net"]().layer, namespace[cls])
    assert out.shape[0] == 3


def test_a_model_builder_still_goes_to_the_builder(write_spec):
    d = error_of(write_spec, spec_text("{x: [3, 16, 16]}", "  m: {op: torchvision.resnet1800}"))
    assert "resnet1800" in d.message and "import" not in d.message
