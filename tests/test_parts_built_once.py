"""Two parts of one torchvision model (its backbone and its aux classifier) are taken from one
build of the model: the generated __init__ calls the builder, and so loads the weights, once
(issue 14, bug 8). A part taken twice is two models: sharing is what `shares:` says."""

import functools

import torch
import torchvision
from nncompile import compile_spec
from task_helpers import load_generated

BUILDER = "torchvision.segmentation.deeplabv3_mobilenet_v3_large"
SPEC = f"""\
nncompile: 1
name: Seg
inputs: {{image: [3, 64, 64]}}
nodes:
  backbone: {{op: {BUILDER}, weights: null, output: backbone}}
  head: {{op: {BUILDER}, weights: null, output: classifier, in: backbone.out}}
  aux: {{op: {BUILDER}, weights: null, output: aux_classifier, in: backbone.aux}}
outputs: {{out: head, aux: aux}}
task: {{kind: multiclass, output: out}}
"""


def builds_counted(monkeypatch) -> list:
    builder = torchvision.models.segmentation.deeplabv3_mobilenet_v3_large
    calls = []

    @functools.wraps(builder)  # its signature too: the compiler reads it
    def counted(**kwargs):
        calls.append(kwargs)
        return builder(**kwargs)

    monkeypatch.setattr(torchvision.models.segmentation, "deeplabv3_mobilenet_v3_large", counted)
    return calls


def test_parts_of_one_model_come_from_one_build(write_spec, tmp_path, monkeypatch):
    path = write_spec(SPEC)
    source = compile_spec(path).source
    assert source.count("deeplabv3_mobilenet_v3_large(") == 1
    assert "self.aux = model.aux_classifier" in source
    module = load_generated(path, tmp_path)
    reference = torchvision.models.segmentation.deeplabv3_mobilenet_v3_large(
        weights=None, weights_backbone=None, aux_loss=True
    ).eval()
    calls = builds_counted(monkeypatch)
    model = module.Seg().eval()
    assert len(calls) == 1
    keys = {"backbone": "backbone", "head": "classifier", "aux": "aux_classifier"}
    state = {keys[k.split(".")[0]] + k[k.index(".") :]: v for k, v in model.state_dict().items()}
    reference.load_state_dict(state)  # strict: the three parts are the whole model
    image = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out, features = model(image=image), reference.backbone(image)
        assert torch.allclose(out["out"], reference.classifier(features["out"]), atol=1e-5)
        assert torch.allclose(out["aux"], reference.aux_classifier(features["aux"]), atol=1e-5)


def test_a_part_taken_twice_is_two_models(write_spec, tmp_path, monkeypatch):
    text = SPEC.replace(
        "outputs:", f"  again: {{op: {BUILDER}, weights: null, output: backbone, in: image}}\noutputs:"
    ).replace("aux: aux}", "aux: aux, again: again.out}")
    path = write_spec(text)
    module = load_generated(path, tmp_path)
    calls = builds_counted(monkeypatch)
    model = module.Seg()
    assert len(calls) == 2
    assert model.again is not model.backbone


# --- the compiler, too, builds the model once for its parts (on the meta device) ---------------


def test_the_compiler_builds_the_model_once_for_its_parts(write_spec, monkeypatch):
    calls = builds_counted(monkeypatch)
    compiled = compile_spec(write_spec(SPEC))
    assert len(calls) == 1  # not once per part
    assert compiled.shaped.nodes["aux"].built.module is not compiled.shaped.nodes["backbone"].built.module


def test_with_weights_the_compiler_builds_once_without_and_once_as_with_them(write_spec, monkeypatch):
    calls = builds_counted(monkeypatch)
    source = compile_spec(write_spec(SPEC.replace("weights: null", "weights: DEFAULT"))).source
    assert [c["weights"] is None for c in calls] == [True, False]  # nothing downloaded: meta only
    assert source.count("deeplabv3_mobilenet_v3_large(") == 1


def test_a_part_taken_twice_is_built_twice_by_the_compiler(write_spec, monkeypatch):
    text = SPEC.replace(
        "outputs:", f"  again: {{op: {BUILDER}, weights: null, output: backbone, in: image}}\noutputs:"
    ).replace("aux: aux}", "aux: aux, again: again.out}")
    calls = builds_counted(monkeypatch)
    compiled = compile_spec(write_spec(text))
    assert len(calls) == 2
    nodes = compiled.shaped.nodes
    assert nodes["again"].built.module is not nodes["backbone"].built.module


def test_parts_loading_one_weights_file_are_one_build_and_one_load(write_spec, tmp_path, monkeypatch):
    from nncompile.ops.backbones import weights_file

    reference = torchvision.models.segmentation.deeplabv3_mobilenet_v3_large(
        weights=None, weights_backbone=None, aux_loss=True
    )
    file = tmp_path / "seg.pth"
    torch.save(reference.state_dict(), file)
    path = write_spec(SPEC.replace("weights: null", f"weights: {file}"))
    calls, reads = builds_counted(monkeypatch), []
    read = weights_file.read
    monkeypatch.setattr(weights_file, "read", lambda *args: reads.append(args) or read(*args))
    source = compile_spec(path).source
    assert (len(calls), len(reads)) == (1, 1)
    assert source.count("deeplabv3_mobilenet_v3_large(") == 1
    assert source.count("_load_weights(model, _weights_file(backbone_weights") == 1
    assert "aux_weights" not in source and "head_weights" not in source  # one path argument
    assert "self.aux = model.aux_classifier  # its aux_classifier" in source

    monkeypatch.undo()
    module = load_generated(path, tmp_path)
    calls = builds_counted(monkeypatch)
    model = module.Seg()
    assert len(calls) == 1
    expected = reference.state_dict()
    keys = {"backbone": "backbone", "head": "classifier", "aux": "aux_classifier"}
    for key, value in model.state_dict().items():
        node, _, rest = key.partition(".")
        assert torch.equal(value, expected[f"{keys[node]}.{rest}"]), key
