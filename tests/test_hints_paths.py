"""Errors that point at the right value and hints that name the likely fix: relative weights
paths, `in_channels:`, misspelt submodules, and an adapted stem left frozen (torchvision and
timm, by `trainable:` or `freeze: true`)."""

import pytest
import torch
import torchvision
from backbone_helpers import backbone_spec, fresh
from load_generated import compile_and_load
from nncompile.errors import NncompileError
from nncompile.pipeline import compile_spec


def write(folder, text: str):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "spec.yaml").write_text(text)
    return folder / "spec.yaml"


def error_of(spec):
    with pytest.raises(NncompileError) as info:
        compile_spec(spec)
    [d] = info.value.diagnostics
    return d


def test_missing_relative_weights_file_shows_the_path_tried_and_the_file_beside_the_spec(
    tmp_path, monkeypatch
):
    spec = write(tmp_path / "specs", backbone_spec("torchvision.resnet18", 64, body="weights: w.pth"))
    monkeypatch.chdir(tmp_path)
    d = error_of(spec)
    assert d.message == f"weights file 'w.pth' not found (looked for {tmp_path}/w.pth)"
    assert "next to the spec" not in d.hint
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "specs" / "w.pth")
    d = error_of(spec)
    assert d.hint.startswith(f"there is a w.pth next to the spec ({tmp_path}/specs/w.pth); ")
    assert "write `weights: " in d.hint and "compile from the spec's folder" in d.hint
    monkeypatch.chdir(tmp_path / "specs")  # following the hint: the file is found
    assert compile_spec(spec).shapes["fc"] == (7,)


def test_in_channels_that_do_not_match_the_input_point_at_their_value(tmp_path):
    body = "{weights: null, in_channels: 3}"
    text = backbone_spec("torchvision.resnet18", 64, channels=4).replace(
        "op: torchvision.resnet18\n    head: remove", ""
    )
    text = text.replace("  net:\n", f"  net: {{op: torchvision.resnet18, {body[1:]}\n")
    d = error_of(write(tmp_path, text))
    line = text.splitlines()[d.loc.line - 1]
    assert line[d.loc.col - 1 :].startswith("3}")  # the value, not `op:`
    assert d.message == "in_channels is 3 but the incoming tensor has 4 channels: image gives (B, 4, 64, 64)"
    assert d.hint.startswith("set `in_channels: 4`")


@pytest.mark.parametrize("builder", ["resnet18", "resnet50"])
def test_a_misspelt_submodule_suggests_its_sibling_first(tmp_path, builder):
    d = error_of(
        write(
            tmp_path,
            backbone_spec(f"torchvision.{builder}", 64, body="weights: null\n    trainable: [layer5]"),
        )
    )
    assert d.message == "node 'net' has no submodule 'layer5'"
    assert d.hint.startswith("did you mean 'layer4'") and "layer3.5" not in d.hint


STEM_CASES = [
    # op, tuning, the stem's own name (the generated model's module path), the fixed tuning
    ("torchvision.resnet18", "trainable: [layer4]", "conv1", "trainable: [conv1, layer4]"),
    ("torchvision.resnet18", "freeze: true", "conv1", "trainable: [conv1]"),
    ("timm.convnext_atto", "trainable: [stages.3]", "stem.0", "trainable: [stem.0, stages.3]"),
    ("timm.convnext_atto", "freeze: true", "stem.0", "trainable: [stem.0]"),
    # features_only renames timm's modules: the first convolution the image reaches
    ("timm.convnext_atto", "output: [stages.3]\n    trainable: [stages_3]", "stem_0", None),
]


@pytest.mark.parametrize(("op", "tuning", "stem", "fixed"), STEM_CASES)
def test_an_adapted_stem_left_frozen_is_a_located_warning(tmp_path, op, tuning, stem, fixed):
    """The warning names the stem by the model's own module path, points at the tuning key's
    value, and its hint's fix trains the stem; the generated model does freeze it."""
    if op.startswith("timm."):
        pytest.importorskip("timm")
    after = (
        "  pool: {op: AdaptiveAvgPool2d, output_size: 1}\n  flat: {op: Flatten}\n"
        if "output" in tuning
        else ""
    )
    after += "  fc: {op: Linear, out_features: 7}\n"
    body = "weights: null\n    in_channels: 4\n    {}" + ("" if "output" in tuning else "\n    head: remove")
    text = backbone_spec(op, 64, body.format(tuning), after=after, channels=4)
    result, module = compile_and_load(text, tmp_path)
    [w] = result.warnings
    assert w.severity == "warning" and w.node == "net"
    assert w.message == (
        f"the stem adapted to 4 channels ({stem}) stays frozen, so its filters for the new channels never learn"
    )
    key = tuning.rpartition("\n    ")[2].split(":")[0]
    line = text.splitlines()[w.loc.line - 1]
    assert line[: w.loc.col - 1].strip() == f"{key}:"  # the value of the key that freezes the stem
    conv = fresh(module).net.get_submodule(stem)
    assert conv.in_channels == 4 and not conv.weight.requires_grad
    if fixed is None:
        assert w.hint == f"add {stem} to `trainable:` (`trainable: [{stem}, stages_3]`)"
        return
    if key == "freeze":
        assert w.hint == f"replace `freeze: true` with `{fixed}` (all else stays frozen)"
    else:
        assert w.hint == f"add {stem} to `trainable:` (`{fixed}`)"
    result, module = compile_and_load(
        backbone_spec(op, 64, body.format(fixed), after=after, channels=4), tmp_path
    )
    assert result.warnings == []
    assert fresh(module).net.get_submodule(stem).weight.requires_grad


def test_a_stem_adapted_to_fewer_channels_may_stay_frozen(tmp_path):
    """One channel sums the pretrained filters: nothing new to learn, no warning."""
    text = backbone_spec(
        "torchvision.resnet18", 64, "weights: null\n    in_channels: 1\n    freeze: true", channels=1
    )
    assert compile_spec(write(tmp_path, text)).warnings == []
