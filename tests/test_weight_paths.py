"""Weight-file paths are constructor arguments whose default is the spec's file relative to the
generated file's folder: the generated file loads it from any working directory, carries no
absolute path of the machine it was made on, and a missing file names the argument to pass."""

import importlib.util
import shutil

import pytest
import torch
import torchvision
from nncompile import compile_spec

SPEC = """nncompile: 1
name: Net
inputs:
  image: [3, 32, 32]
nodes:
  resnet: {op: torchvision.resnet18, weights: WEIGHTS, head: remove, strict: STRICT}
  fc: {op: Linear, out_features: 3}
outputs: {logits: fc}
task: {kind: classification}
"""


def generate(tmp_path, monkeypatch, weights: str, strict: bool = True, state=None):
    """Compile in tmp_path (weights in tmp_path/weights/) into tmp_path/models/net.py; import it
    from another working directory."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "weights").mkdir(exist_ok=True)
    torch.manual_seed(1)
    state = state or torchvision.models.resnet18().state_dict()
    torch.save(state, tmp_path / "weights" / "r18.pth")
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC.replace("WEIGHTS", weights).replace("STRICT", str(strict).lower()))
    out = tmp_path / "models" / "net.py"
    out.parent.mkdir(exist_ok=True)
    result = compile_spec(spec, out)
    out.write_text(result.source)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(exist_ok=True)
    monkeypatch.chdir(elsewhere)
    module_spec = importlib.util.spec_from_file_location(f"net_{abs(hash(weights))}", out)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return result, module, state


@pytest.mark.parametrize("absolute", [False, True])
def test_weights_load_from_any_working_directory(absolute, tmp_path, monkeypatch):
    weights = str(tmp_path / "weights" / "r18.pth") if absolute else "weights/r18.pth"
    result, module, state = generate(tmp_path, monkeypatch, weights)
    assert 'resnet_weights: str = os.path.join(HERE, "../weights/r18.pth")' in result.source
    code = result.source.split('"""', 2)[2]  # the header names the spec as it was compiled
    assert str(tmp_path) not in code  # no machine path in a file meant to be copied
    lightning = module.NetModule()
    loaded = lightning.model.resnet.state_dict()
    assert all(torch.equal(loaded[k], state[k]) for k in loaded)
    assert lightning.hparams.resnet_weights == str(tmp_path / "models" / "../weights/r18.pth")


def test_missing_weights_file_names_the_argument(tmp_path, monkeypatch):
    _, module, state = generate(tmp_path, monkeypatch, "weights/r18.pth")
    shutil.move(tmp_path / "weights" / "r18.pth", tmp_path / "elsewhere" / "mine.pth")
    with pytest.raises(FileNotFoundError, match=r"pass its path as `resnet_weights=...`"):
        module.NetModule()
    model = module.Net(resnet_weights="mine.pth")  # a path passed is read as usual (the working directory)
    assert torch.equal(model.resnet.conv1.weight, state["conv1.weight"])
    module.Net(pretrained=False)  # builds without the file


def test_mismatched_keys_are_a_warning(tmp_path, monkeypatch):
    state = torchvision.models.resnet18().state_dict()
    state["extra.weight"] = state.pop("layer4.1.bn2.weight")
    _, module, _ = generate(tmp_path, monkeypatch, "weights/r18.pth", strict=False, state=state)
    with pytest.warns(UserWarning, match=r"missing keys \['layer4.1.bn2.weight'\]"):
        module.Net()
