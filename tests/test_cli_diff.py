"""`nncompile diff A B` (issue 26) on curated pairs: each edit a model review meets reports exactly
the changes it makes, and `--fail-on` turns the kinds of change into exit codes for CI."""

import functools
import json

import pytest
from conftest import ROOT
from nncompile import compile_spec
from nncompile.tools.model_diff import diff, state_dict_shapes

BASE = """\
nncompile: 1
name: Reviewed
inputs:
  image: [3, 64, 64]
blocks:
  Res:
    params: [c]
    nodes:
      conv: {op: Conv2d, out_channels: $c, kernel_size: 3, padding: 1}
      act: ReLU
      residual: {op: add, in: [act, x]}
nodes:
  resnet:
    op: torchvision.resnet18
    weights: DEFAULT
    head: remove
    unfreeze:
      at_epoch: {layer4: 2}
  fc1: {op: Linear, out_features: 256}
  relu: {op: ReLU}
  fc2: {op: Linear, out_features: 10}
outputs: {logits: fc2}
task:
  kind: classification
  optimizer: {name: AdamW, lr: 1.0e-3}
"""

EDITS = {  # name -> (text of BASE, what replaces it)
    "insert_block": ("nodes:\n  resnet:", "nodes:\n  pre: {op: Res, c: 3, repeat: 2}\n  resnet:"),
    "swap_backbone": ("torchvision.resnet18", "torchvision.resnet34"),
    "rename": ("fc1:", "hidden:"),
    "head_width": ("out_features: 256", "out_features: 128"),
    "freeze": ("fc1: {op: Linear, out_features: 256}", "fc1: {op: Linear, out_features: 256, freeze: true}"),
    "unfreeze_epoch": ("layer4: 2", "layer4: 3"),
}


@pytest.fixture(scope="module")
def specs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pairs")
    (folder / "base.yaml").write_text(BASE)
    for name, (old, new) in EDITS.items():
        assert BASE.count(old) == 1
        (folder / f"{name}.yaml").write_text(BASE.replace(old, new))
    return folder


@functools.cache
def compiled(path):
    return compile_spec(path)


def changes(specs, name):
    return diff(compiled(specs / "base.yaml"), compiled(specs / f"{name}.yaml"))


def test_inserting_a_block(specs):
    found = changes(specs, "insert_block")
    assert found.added == ["pre"]
    assert (found.removed, found.renamed, found.changed, found.shapes) == ([], {}, {}, {})
    assert found.missing == ["pre.0.conv.weight", "pre.0.conv.bias", "pre.1.conv.weight", "pre.1.conv.bias"]
    assert (found.unexpected, found.reshaped) == ([], {})
    assert found.params[1] - found.params[0] == 2 * (3 * 3 * 9 + 3)
    assert found.node_params == {"pre": (0, 2 * (3 * 3 * 9 + 3))}
    assert found.macs[1] > found.macs[0]
    assert found.plan == []
    assert found.kinds() == ["node-added", "params-change", "weights-missing"]


def test_swapping_the_backbone(specs):
    found = changes(specs, "swap_backbone")
    assert found.changed == {"resnet": {"op": ("torchvision.resnet18", "torchvision.resnet34")}}
    assert found.shapes == {}  # both give (B, 512)
    assert found.unexpected == [] and found.reshaped == {}
    assert found.missing and all(
        k.startswith(("resnet.layer1.2.", "resnet.layer2.", "resnet.layer3.", "resnet.layer4."))
        for k in found.missing
    )
    assert found.plan == []
    assert found.kinds() == ["node-changed", "params-change", "weights-missing"]


def test_renaming_a_node(specs):
    found = changes(specs, "rename")
    assert found.renamed == {"fc1": "hidden"}
    assert (found.added, found.removed, found.changed, found.shapes) == ([], [], {}, {})
    assert found.unexpected == ["fc1.weight", "fc1.bias"]
    assert found.missing == ["hidden.weight", "hidden.bias"]
    assert found.plan == []  # the same parameters train the same way under the new name
    assert found.params[0] == found.params[1]
    assert found.node_params == {}
    assert found.kinds() == ["node-renamed", "weights-lost", "weights-missing"]


def test_changing_a_head_width_propagates(specs):
    found = changes(specs, "head_width")
    assert found.changed == {"fc1": {"out_features": (256, 128)}}
    assert found.shapes == {"fc1": ("(B, 256)", "(B, 128)"), "relu": ("(B, 256)", "(B, 128)")}
    assert found.propagated == {"fc1": ["relu", "fc2"]}  # fc2 takes the narrower tensor
    assert found.outputs == {}  # the logits keep their shape
    assert found.node_params == {
        "fc1": (512 * 256 + 256, 512 * 128 + 128),
        "fc2": (256 * 10 + 10, 128 * 10 + 10),
    }
    assert found.reshaped == {
        "fc1.weight": ((256, 512), (128, 512)),
        "fc1.bias": ((256,), (128,)),
        "fc2.weight": ((10, 256), (10, 128)),
    }
    assert found.kinds() == ["node-changed", "shape-change", "params-change", "weights-lost"]


def test_changing_freezing(specs):
    found = changes(specs, "freeze")
    assert found.changed == {}  # `freeze` is tuning, not an argument of the layer
    assert found.plan == [
        "plan fc1.weight: lr 0.001, weight decay 0.01 -> frozen",
        "plan fc1.bias: lr 0.001, weight decay 0 -> frozen",
    ]
    assert found.kinds() == ["plan-change"]


def test_changing_an_unfreeze_epoch(specs):
    found = changes(specs, "unfreeze_epoch")
    assert found.plan == [
        "plan resnet.layer4: lr 0.001, weight decay 0.01, from epoch 2 -> lr 0.001, weight decay 0.01, from epoch 3"
    ]
    assert found.kinds() == ["plan-change"]


def test_state_dict_keys_are_the_generated_modules(specs, tmp_path):
    """The keys the diff compares are those of the generated nn.Module's state dict."""
    from load_generated import load_source

    result = compiled(specs / "insert_block.yaml")
    module = load_source(result.source, tmp_path)
    model = module.Reviewed(pretrained=False)
    assert state_dict_shapes(result) == {k: tuple(v.shape) for k, v in model.state_dict().items()}


@pytest.mark.parametrize(
    ("fail_on", "code"),
    [("", 0), ("node-added", 0), ("shape-change", 1), ("weights-lost,node-added", 1), ("any", 1)],
)
def test_fail_on_sets_the_exit_code(specs, run_cli, fail_on, code):
    args = ["diff", specs / "base.yaml", specs / "head_width.yaml"] + (
        ["--fail-on", fail_on] if fail_on else []
    )
    status, out, err = run_cli(*args)
    assert status == code, err
    assert "changes: node-changed, shape-change, params-change, weights-lost" in out
    assert ("(--fail-on)" in err) == bool(code)


def test_json_format_and_unknown_kind(specs, run_cli):
    status, out, _ = run_cli("diff", specs / "base.yaml", specs / "rename.yaml", "--format", "json")
    assert status == 0
    assert json.loads(out)["renamed"] == {"fc1": "hidden"}
    with pytest.raises(SystemExit):
        run_cli("diff", specs / "base.yaml", specs / "rename.yaml", "--fail-on", "weight-lost")


def test_generated_files_stand_for_their_specs(run_cli, tmp_path):
    """A generated file is diffed as the spec its header names, when it is what that spec
    compiles to now; a stale one is refused."""
    status, out, err = run_cli("diff", "generated/seed1_resnet_head.py", "specs/seed1_resnet_head.yaml")
    assert status == 0, err
    assert out.splitlines()[:2] == ["--- specs/seed1_resnet_head.yaml", "+++ specs/seed1_resnet_head.yaml"]
    assert out.endswith("changes: none\n")
    stale = tmp_path / "stale.py"
    text = (ROOT / "generated" / "seed1_resnet_head.py").read_text()
    stale.write_text(text.replace("-o generated/seed1_resnet_head.py", f"-o {stale}") + "# edited\n")
    status, _, err = run_cli("diff", stale, "specs/seed1_resnet_head.yaml")
    assert status == 3
    assert "is out of date with specs/seed1_resnet_head.yaml" in err
    status, _, err = run_cli("diff", "specs/user_layers/se_block.py", "specs/seed1_resnet_head.yaml")
    assert status == 3
    assert "not a file nncompile generated" in err
