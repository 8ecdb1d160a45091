"""Errors that point at the right value and hints that name the likely fix: relative weights
paths, `in_channels:`, misspelt submodules, and an adapted stem left frozen."""

import pytest
import torch
import torchvision
from backbone_helpers import backbone_spec
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


def test_an_adapted_stem_left_frozen_is_a_warning(tmp_path):
    body = "weights: null\n    in_channels: 4\n    trainable: [{}]"
    frozen = compile_spec(
        write(tmp_path / "a", backbone_spec("torchvision.resnet18", 64, body.format("layer4"), channels=4))
    )
    [w] = frozen.warnings
    assert w.severity == "warning" and w.node == "net"
    assert w.message == (
        "the stem adapted to 4 channels (conv1) stays frozen, so its filters for the new channels never learn"
    )
    assert w.hint == "add conv1 to `trainable:` (`trainable: [conv1, layer4]`)"
    fixed = compile_spec(
        write(
            tmp_path / "b",
            backbone_spec("torchvision.resnet18", 64, body.format("conv1, layer4"), channels=4),
        )
    )
    assert fixed.warnings == []
