"""Messages for inputs that are wrong in ways the bad-spec corpus cannot hold (they need other
files): each names the real cause, once, and never suggests unsafe loading."""

import pytest
import torch

CHECKPOINT_SPEC = """\
nncompile: 1
name: Net
inputs:
  x: [16]
nodes:
  base: {{op: checkpoint, path: {path}, class: torch.nn.Linear}}
task:
  kind: regression
"""
WEIGHTS_SPEC = """\
nncompile: 1
name: Net
inputs:
  image: [3, 32, 32]
nodes:
  resnet: {{op: torchvision.resnet18, weights: {path}, head: remove}}
task:
  kind: regression
"""


class Pickled:
    """A class a weights-only load refuses: the checkpoint would need its code to be read."""


@pytest.fixture
def refused_file(tmp_path):
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"weight": torch.zeros(4, 16)}, "extra": Pickled()}, path)
    return path


@pytest.mark.parametrize("spec", [CHECKPOINT_SPEC, WEIGHTS_SPEC], ids=["checkpoint", "weights"])
def test_a_folder_given_as_a_file_is_called_a_directory(spec, run_cli, write_spec, tmp_path):
    folder = tmp_path / "weights.pth"
    folder.mkdir()
    code, _, err = run_cli(write_spec(spec.format(path=folder)), "-o", tmp_path / "model.py")
    assert code == 2
    assert f"weights file '{folder}' is a directory" in err and "not found" not in err


@pytest.mark.parametrize("spec", [CHECKPOINT_SPEC, WEIGHTS_SPEC], ids=["checkpoint", "weights"])
def test_weights_only_refusal_names_the_global_and_not_the_unsafe_way(
    spec, refused_file, run_cli, write_spec, tmp_path
):
    code, _, err = run_cli(write_spec(spec.format(path=refused_file)), "-o", tmp_path / "model.py")
    assert code == 2
    assert f"it references the Python object {__name__}.Pickled, which loading would import or run" in err
    assert "weights_only=False" not in err and "weights_only` set to `False" not in err
    assert "\x1b" not in err  # torch's message carries terminal escapes


def test_zero_sized_symbolic_dim_is_one_error(run_cli, write_spec, tmp_path):
    spec = write_spec(
        "nncompile: 1\nname: Net\ndims: {T: 0}\ninputs:\n  x: [4, T]\n"
        "nodes:\n  fc: {op: Linear, out_features: 3}\ntask:\n  kind: regression\n"
    )
    code, _, err = run_cli(spec, "-o", tmp_path / "model.py")
    assert code == 2
    assert f"{spec}:3:11: error: dim 'T' needs a positive example size" in err
    assert "has no example size" not in err and err.count(": error: ") == 1


def test_boolean_optimizer_argument_is_refused(run_cli, write_spec, tmp_path):
    spec = write_spec(
        "nncompile: 1\nname: Net\ninputs:\n  x: [4]\nnodes:\n  fc: {op: Linear, out_features: 3}\n"
        "task: {kind: regression, optimizer: {name: SGD, momentum: on}}\n"
    )
    code, _, err = run_cli(spec, "-o", tmp_path / "model.py")
    assert code == 2 and "`momentum` must be a number, not the boolean true" in err
