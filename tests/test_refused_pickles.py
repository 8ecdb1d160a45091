"""A weights or checkpoint file whose pickle would run `os.system` on load, through every path that
loads a file: compiling `op: checkpoint` and `weights:`, and the generated module loading it at run
time (`_load_weights`, Lightning's load_from_checkpoint, timm). Each refuses it, names the object
it references, never advises loading with weights_only=False (torch's own message does), and the
command never runs."""

import os
import pickle
import shlex
import sys
import traceback
from collections import OrderedDict

import pytest
import pytorch_lightning as pl
import torch
from load_generated import compile_and_load

CHECKPOINT_SPEC = """\
nncompile: 1
name: Net
inputs:
  x: [16]
nodes:
  base: {{op: checkpoint, path: {path}, class: {cls}, {args}}}
task:
  kind: regression
"""
LINEAR = "torch.nn.Linear", "args: {in_features: 16, out_features: 4}"
WEIGHTS_SPEC = """\
nncompile: 1
name: Net
inputs:
  image: [3, 32, 32]
nodes:
  net: {{op: {op}, weights: {path}, head: remove}}
task:
  kind: regression
"""
LIGHTNING = """\
import pytorch_lightning as pl
from torch import nn


class Tiny(pl.LightningModule):
    def __init__(self, features: int = 16):
        super().__init__()
        self.save_hyperparameters()
        self.fc = nn.Linear(features, 4)

    def forward(self, x):
        return self.fc(x)
"""
UNSAFE_ADVICE = ("weights_only=False", "weights_only` set to `False")


class RunsOnLoad:
    """Unpickling this runs a shell command that creates `marker`."""

    def __init__(self, marker) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


@pytest.fixture
def marker(tmp_path):
    """The file the payload creates; a plain unpickling of the payload does run it."""
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(RunsOnLoad(control)))
    assert control.exists()
    return tmp_path / "ran"


@pytest.fixture
def evil(tmp_path, marker):
    """A checkpoint holding a state dict and the payload."""
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"weight": torch.zeros(4, 16)}, "payload": RunsOnLoad(marker)}, path)
    return path


def assert_refused(text: str, marker) -> None:
    assert "it references the Python object posix.system" in text
    assert not any(advice in text for advice in UNSAFE_ADVICE)
    assert not marker.exists()


def test_checkpoint_op_refuses_the_file(evil, marker, run_cli, write_spec, tmp_path):
    spec = write_spec(CHECKPOINT_SPEC.format(path=evil, cls=LINEAR[0], args=LINEAR[1]))
    code, _, err = run_cli(spec, "-o", tmp_path / "model.py")
    assert code == 2
    assert f"{spec}:6:32: error: node 'base': not loading weights file '{evil}'" in err
    assert_refused(err, marker)
    assert "re-save its weights as a plain state dict" in err


def test_weights_file_is_refused(evil, marker, run_cli, write_spec, tmp_path):
    spec = write_spec(WEIGHTS_SPEC.format(op="torchvision.resnet18", path=evil))
    code, _, err = run_cli(spec, "-o", tmp_path / "model.py")
    assert code == 2
    assert_refused(err, marker)


def test_builtins_are_named_in_full(run_cli, write_spec, tmp_path):
    """torch calls builtins.eval `eval`; the message names its module."""

    class Evaluates:
        def __reduce__(self):
            return eval, ("1",)

    path = tmp_path / "eval.ckpt"
    torch.save({"payload": Evaluates()}, path)
    spec = write_spec(CHECKPOINT_SPEC.format(path=path, cls=LINEAR[0], args=LINEAR[1]))
    code, _, err = run_cli(spec, "-o", tmp_path / "model.py")
    assert code == 2 and "the Python object builtins.eval," in err


def test_a_file_that_is_no_pickle_is_refused_without_the_unsafe_advice(run_cli, write_spec, tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("not weights\n")
    spec = write_spec(CHECKPOINT_SPEC.format(path=path, cls=LINEAR[0], args=LINEAR[1]))
    code, _, err = run_cli(spec, "-o", tmp_path / "model.py")
    assert code == 2 and "weights-only loading refused it (Unsupported operand" in err
    assert not any(advice in err for advice in UNSAFE_ADVICE)


@pytest.fixture
def generate(tmp_path, monkeypatch):
    """Compile a spec text in tmp_path (where weight paths are relative to) and import the file."""

    def compile_in_tmp(text: str):
        monkeypatch.chdir(tmp_path)
        return compile_and_load(text, tmp_path)

    return compile_in_tmp


def refused_at_run_time(build, marker) -> None:
    """`build()` (a generated constructor given the evil file) raises the refusal: what a user
    sees, the whole traceback, names the object and never the unsafe way."""
    with pytest.raises(pickle.UnpicklingError) as refused:
        build()
    assert_refused("".join(traceback.format_exception(refused.value)), marker)


def test_generated_load_weights_refuses_the_file(evil, marker, generate, tmp_path):
    torch.save(torch.nn.Linear(16, 4).state_dict(), tmp_path / "good.pt")
    text = CHECKPOINT_SPEC.format(path=tmp_path / "good.pt", cls=LINEAR[0], args=LINEAR[1])
    _, module = generate(text)
    refused_at_run_time(lambda: module.Net(base_checkpoint=str(evil)), marker)


@pytest.fixture
def tiny_lightning(tmp_path, monkeypatch):
    """A LightningModule class next to the specs: its import path."""
    (tmp_path / "tiny_lightning.py").write_text(LIGHTNING)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "tiny_lightning.Tiny"
    sys.modules.pop("tiny_lightning", None)


def test_generated_load_from_checkpoint_refuses_the_file(evil, marker, generate, tiny_lightning, tmp_path):
    good = tmp_path / "good.ckpt"
    torch.save(
        {
            "state_dict": torch.nn.Sequential(OrderedDict(fc=torch.nn.Linear(16, 4))).state_dict(),
            "hyper_parameters": {"features": 16},
            "pytorch-lightning_version": pl.__version__,
        },
        good,
    )
    text = CHECKPOINT_SPEC.format(path=good, cls=tiny_lightning, args="")
    _, module = generate(text)
    module.Net()  # the good checkpoint loads
    refused_at_run_time(lambda: module.Net(base_checkpoint=str(evil)), marker)


def test_generated_timm_model_refuses_the_file(evil, marker, generate, tmp_path):
    timm = pytest.importorskip("timm")
    torch.save(timm.create_model("test_resnet").state_dict(), tmp_path / "good.pth")
    text = WEIGHTS_SPEC.format(op="timm.test_resnet", path=tmp_path / "good.pth")
    _, module = generate(text)
    refused_at_run_time(lambda: module.Net(net_weights=str(evil)), marker)
