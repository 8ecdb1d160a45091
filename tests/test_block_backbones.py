"""Blocks compiled by the same stages as the model: a block's definition is built once, a block may
hold a pretrained backbone (its weights load in the block's class, `pretrained` threaded through
every class down to it), and freezing and learning rates, set on the node that uses the block,
reach inside it by path."""

import pytest
import torch
import torchvision
from graph_helpers import compile_text, run_generated
from nncompile.errors import NncompileError


def error_of(write_spec, text: str) -> NncompileError:
    with pytest.raises(NncompileError) as info:
        compile_text(write_spec, text)
    return info.value


MLP = """\
nncompile: 1
name: Net
inputs: {x: [8]}
blocks:
  B:
    nodes:
      fc1: {op: Linear, out_features: 6}
      act: ReLU
      fc2: {op: Linear, out_features: 4}
nodes:
"""
TASK = "task: {kind: regression}\n"


def test_freeze_and_trainable_on_the_node_using_a_block_take_paths_inside_it(write_spec):
    compiled = compile_text(
        write_spec, MLP + "  b: {op: B, trainable: [fc2]}\n  c: {op: B, freeze: [fc1]}\n" + TASK
    )
    assert "self.b.fc1.requires_grad_(False)" in compiled.source
    assert "self.c.fc1.requires_grad_(False)" in compiled.source
    frozen = (8 * 6 + 6) + (4 * 6 + 6)  # c's input is b's 4 features
    assert f"; {frozen} frozen, {140 - frozen} trainable)." in compiled.source
    _, namespace = run_generated(compiled, {"x": torch.randn(2, 8)})
    model = namespace["Net"]()
    assert [n for n, p in model.named_parameters() if not p.requires_grad] == [
        "b.fc1.weight",
        "b.fc1.bias",
        "c.fc1.weight",
        "c.fc1.bias",
    ]


def test_a_path_that_is_not_inside_the_block_is_located(write_spec):
    err = error_of(write_spec, MLP + "  b: {op: B, freeze: [fc3]}\n" + TASK)
    assert err.diagnostics[0].message == "node 'b' has no submodule 'fc3'"
    assert err.diagnostics[0].hint == "did you mean 'fc2' or 'fc1'?"  # the block's own names
    assert err.diagnostics[0].loc.line == 11


def test_tuning_keys_inside_a_block_are_errors_not_dropped(write_spec):
    text = MLP.replace("fc2: {op: Linear, out_features: 4}", "fc2: {op: Linear, out_features: 4, lr: 0.1}")
    d = error_of(write_spec, text + "  b: B\n" + TASK).diagnostics[0]
    assert d.message == (
        "`lr` on node 'fc2' of block 'B': freezing and learning rates go on the node that uses the block"
    )
    assert (d.loc.line, d.loc.col) == (9, 42)
    assert "`freeze: [fc2]`" in d.hint


def test_a_block_definition_is_checked_once_not_at_every_use(write_spec):
    text = MLP.replace("act: ReLU", "act: {op: ReLU, in: fcl}") + "  a: B\n  b: B\n  c: B\n" + TASK
    err = error_of(write_spec, text)
    assert [d.message for d in err.diagnostics] == ["unknown input 'fcl' [in block 'B']"]
    assert err.diagnostics[0].loc.line == 8


def test_warnings_of_a_block_definition_are_given_once(write_spec):
    text = MLP.replace("nodes:\n      fc1", "output: fc2\n    nodes:\n      fc1")
    text = text.replace("out_features: 4}", "out_features: 4}\n      spare: {op: Tanh, in: fc1}")
    compiled = compile_text(write_spec, text + "  a: B\n  b: B\n" + TASK)
    messages = [w.message for w in compiled.warnings]
    assert messages == [
        "node 'spare' reaches no output; it is left out of the generated model [in block 'B']"
    ]


NESTED = """\
nncompile: 1
name: Net
inputs: {image: [3, 32, 32]}
blocks:
  Features:
    nodes:
      backbone: {op: torchvision.resnet18, weights: DEFAULT, head: remove}
  Encoder:
    params: {width: 16}
    nodes:
      features: Features
      fc: {op: Linear, out_features: $width}
nodes:
  enc: {op: Encoder, freeze: true}
  head: {op: Linear, out_features: 3}
task: {kind: regression}
"""


def test_pretrained_is_threaded_through_nested_block_classes(write_spec):
    compiled = compile_text(write_spec, NESTED)
    source = compiled.source
    assert "    def __init__(self, pretrained: bool = True) -> None:" in source  # Features
    assert "self, width: int = 16, pretrained: bool = True" in source  # Encoder
    assert "self.features = Features(pretrained=pretrained)" in source
    assert "self.enc = Encoder(width=16, pretrained=pretrained)" in source
    assert "class Net(nn.Module):\n    def __init__(self, pretrained: bool = True) -> None:" in source
    assert "            self.backbone = torchvision.models.resnet18(" in source  # inside the `with`
    namespace: dict = {}
    exec(compile(source, "<generated>", "exec"), namespace)
    model = namespace["Net"](pretrained=False)  # no download, no weights file
    out = model.eval()(torch.randn(2, 3, 32, 32))
    assert tuple(out.shape) == (2, 3)


def test_freeze_true_on_a_block_freezes_its_pretrained_weights_and_trains_its_new_layers(write_spec):
    compiled = compile_text(write_spec, NESTED)
    backbone = sum(p.numel() for p in torchvision.models.resnet18().parameters()) - (512 * 1000 + 1000)
    new = (512 * 16 + 16) + (16 * 3 + 3)
    assert (
        f"Parameters: {backbone + new:,} ({backbone:,} pretrained, {new:,} new; "
        f"{backbone:,} frozen, {new:,} trainable)." in compiled.source
    )
    assert "self.enc.features.requires_grad_(False)" in compiled.source  # all the backbone holds
    assert compiled.parameters == (backbone + new, new)


def test_a_weights_file_inside_a_block_is_refused(write_spec, tmp_path):
    weights = tmp_path / "mobilenet.pth"
    torch.save(torchvision.models.mobilenet_v3_small().state_dict(), weights)
    text = (
        "nncompile: 1\nname: Net\ninputs: {image: [3, 32, 32]}\nblocks:\n  B:\n    nodes:\n"
        f"      net: {{op: torchvision.mobilenet_v3_small, weights: {weights}, head: remove}}\n"
        "nodes:\n  b: B\ntask: {kind: regression}\n"
    )
    d = error_of(write_spec, text).diagnostics[0]
    assert d.message.startswith("node 'net' of block 'B' loads a weights file (")
    assert d.message.endswith("), which a block cannot take")
    assert d.loc.line == 7
    assert "top-level `nodes:`" in d.hint


SEGMENTATION = "torchvision.segmentation.deeplabv3_mobilenet_v3_large"


def test_parts_of_one_model_inside_a_block_come_from_one_build(write_spec):
    text = (
        "nncompile: 1\nname: Net\ninputs: {image: [3, 64, 64]}\nblocks:\n  Seg:\n    nodes:\n"
        f"      backbone: {{op: {SEGMENTATION}, weights: null, output: backbone}}\n"
        f"      head: {{op: {SEGMENTATION}, weights: null, output: classifier, in: backbone.out}}\n"
        "nodes:\n  seg: Seg\ntask: {kind: regression}\n"
    )
    source = compile_text(write_spec, text).source
    assert source.count("deeplabv3_mobilenet_v3_large(") == 1
    assert "        self.head = model.classifier" in source
