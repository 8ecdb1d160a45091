"""`in:` as a mapping: a node's inputs passed as one dict of tensors, as
torchvision.ops.FeaturePyramidNetwork takes them (issue 14, item 3). Its `in_channels_list` is
inferred, its outputs are ports, and specs/fpn_multiscale_head.yaml (ResNet-18 levels into an FPN,
one head shared across the levels) matches a hand-written reference and trains."""

import math

import pytest
import torch
import torchvision
from conftest import ROOT
from graph_helpers import compile_text, random_inputs, run_generated, spec_text
from nncompile.errors import NncompileError
from task_helpers import batches, load_generated, trainer
from torch import nn
from torchvision.models.feature_extraction import create_feature_extractor
from torchvision.ops import FeaturePyramidNetwork

FPN = "torchvision.ops.FeaturePyramidNetwork"
MAPS = "{a: [8, 16, 16], b: [16, 8, 8]}"


def error_of(write_spec, text: str):
    with pytest.raises(NncompileError) as info:
        compile_text(write_spec, text)
    return info.value.diagnostics[0]


class LevelHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(64, 32, 3, padding=1)

    def forward(self, x):
        return torch.relu(self.conv(x)).mean(dim=(2, 3))


class FPNReference(nn.Module):
    """specs/fpn_multiscale_head.yaml written by hand."""

    def __init__(self):
        super().__init__()
        resnet = torchvision.models.resnet18(weights=None)
        self.backbone = create_feature_extractor(resnet, return_nodes=["layer2", "layer3", "layer4"])
        self.fpn = FeaturePyramidNetwork([128, 256, 512], 64)
        self.head_p3 = LevelHead()
        self.logits = nn.Linear(3 * 32, 10)

    def forward(self, image):
        maps = self.backbone(image)
        levels = self.fpn({"p3": maps["layer2"], "p4": maps["layer3"], "p5": maps["layer4"]})
        return self.logits(torch.cat([self.head_p3(levels[k]) for k in ("p3", "p4", "p5")], dim=1))


def test_fpn_spec_matches_a_hand_written_reference_and_trains(tmp_path):
    module = load_generated(ROOT / "specs" / "fpn_multiscale_head.yaml", tmp_path)
    model, reference = module.FPNMultiscaleClassifier(), FPNReference()
    count = sum(p.numel() for p in model.parameters())
    assert count == sum(p.numel() for p in reference.parameters()) == 11_364_266  # one head, not three
    reference.load_state_dict(model.state_dict())  # strict: the same parameters by name
    image = torch.randn(2, 3, 64, 64)
    model.eval(), reference.eval()
    with torch.no_grad():
        assert torch.allclose(model(image=image), reference(image), atol=1e-5)

    lm = module.FPNMultiscaleClassifierModule()
    before = lm.model.fpn.layer_blocks[0][0].weight.detach().clone()
    t = trainer(max_steps=2)
    t.fit(
        lm,
        train_dataloaders=batches(
            lambda g, n: (torch.randn(n, 3, 64, 64, generator=g), torch.randint(0, 10, (n,), generator=g)), 2
        ),
    )
    assert t.global_step == 2
    assert math.isfinite(float(t.callback_metrics["train_loss"]))
    assert not torch.equal(before, lm.model.fpn.layer_blocks[0][0].weight)


def test_a_mapping_of_several_nodes_is_one_dict_argument_with_ports_out(write_spec):
    nodes = (
        f"  fpn: {{op: {FPN}, in: {{small: b, large: a}}, out_channels: 4}}\n"
        "  up: {op: interpolate, in: fpn.small, scale_factor: 2}\n"
        "  s: {op: add, in: [fpn.large, up]}"
    )
    compiled = compile_text(write_spec, spec_text(MAPS, nodes))
    source = compiled.source
    assert "# in_channels_list inferred from the channels of small (16), large (8)" in source
    assert "FeaturePyramidNetwork(out_channels=4, in_channels_list=(16, 8))" in source
    assert 'fpn = self.fpn({"small": b, "large": a})' in source
    assert "# small: (B, 4, 8, 8), large: (B, 4, 16, 16)" in source
    assert compiled.shapes["fpn"] == {"small": (4, 8, 8), "large": (4, 16, 16)}
    inputs = random_inputs(compiled)
    _, namespace = run_generated(compiled, inputs)
    model = namespace["Net"]().eval()
    assert sorted(k.split(".")[0] for k in model.state_dict()) == ["fpn"] * 8  # stable: the node id
    with torch.no_grad():
        out = model(**inputs)
        levels = model.fpn({"small": inputs["b"], "large": inputs["a"]})
        expected = levels["large"] + nn.functional.interpolate(levels["small"], scale_factor=2)
    assert torch.allclose(out, expected)
    fpn = next(r for r in compiled.summary().rows if r.node == "fpn")
    assert fpn.macs and fpn.params == sum(p.numel() for p in model.fpn.parameters())


def test_a_shared_fpn_takes_a_dict_of_its_own(write_spec):
    inputs = "{a: [8, 16, 16], b: [16, 8, 8], c: [8, 16, 16], d: [16, 8, 8]}"
    nodes = (
        f"  one: {{op: {FPN}, in: {{x: a, y: b}}, out_channels: 4}}\n"
        "  two: {shares: one, in: {u: c, v: d}}\n"
        "  s: {op: add, in: [one.x, two.u]}"
    )
    compiled = compile_text(write_spec, spec_text(inputs, nodes))
    assert 'x = self.one({"u": c, "v": d})  # u: (B, 4, 16, 16), v: (B, 4, 8, 8)' in compiled.source
    out, namespace = run_generated(compiled, random_inputs(compiled))
    assert tuple(out.shape) == (3, 4, 16, 16)


def test_a_mapping_into_an_op_that_takes_tensors_is_a_located_error(write_spec):
    nodes = "  cat: {op: concat, in: {a: a, b: b}}"
    error = error_of(write_spec, spec_text("{a: [8], b: [8]}", nodes))
    assert "`in:` is a mapping, which passes one dict of tensors, but concat takes tensors" in error.message
    assert (error.node, error.loc.line) == ("cat", 5)
    assert "in: [a, b]" in error.hint


def test_an_fpn_given_a_list_names_the_layer_that_failed(write_spec):
    nodes = f"  fpn: {{op: {FPN}, in: [a, b], out_channels: 4}}"
    error = error_of(write_spec, spec_text(MAPS, nodes))
    assert error.node == "fpn" and FPN in error.message
    assert error.hint == f"{FPN} takes one dict of tensors: write `in: {{feat0: a, feat1: b}}`"


def test_a_mapping_key_must_be_a_name(write_spec):
    nodes = f"  fpn: {{op: {FPN}, in: {{a-b: a, y: b}}, out_channels: 4}}"
    error = error_of(write_spec, spec_text(MAPS, nodes))
    assert "`in` key 'a-b' is not a name of letters, digits and _" in error.message
    assert "rename it" in error.hint and (error.loc.line, error.loc.col) == (5, 57)  # the key


def test_number_keys_are_ports(write_spec):
    nodes = (
        f"  fpn: {{op: {FPN}, in: {{0: a, '1': b}}, out_channels: 4}}\n  s: {{op: mean, in: fpn.1, dim: 1}}"
    )
    compiled = compile_text(write_spec, spec_text(MAPS, nodes))
    assert 'self.fpn({"0": a, "1": b})' in compiled.source
    out, _ = run_generated(compiled, random_inputs(compiled))
    assert tuple(out.shape) == (3, 8, 8)
