"""User layers (`op: package.module.Class`): imported from the spec's folder, sized on the meta
device or by a CPU run with a note, imported by the generated file; failures name the layer."""

import sys

import pytest
from graph_helpers import compile_text, random_inputs, run_generated, spec_text
from nncompile.errors import NncompileError

LAYERS = {
    "scale.py": """\
import torch
from torch import nn


class Scale(nn.Module):
    def __init__(self, channels: int, factor: float = 2.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.factor = factor

    def forward(self, x):
        return x * self.weight[:, None] * self.factor


class NoMeta(nn.Module):
    # .item() needs real data, so the meta device cannot run it
    def forward(self, x):
        keep = int((x.abs().sum() >= 0).item())
        return x[:, :keep]


class Pair(nn.Module):
    def forward(self, x):
        return {"left": x[:, :2], "right": x[:, 2:]}


class Broken(nn.Module):
    def forward(self, x):
        return x @ torch.ones(3, 3, device=x.device)


class Picky(nn.Module):
    def __init__(self, size: int) -> None:
        super().__init__()
        if size < 0:
            raise ValueError("size must be positive")

    def forward(self, x):
        return x


class NotTensor(nn.Module):
    def forward(self, x):
        return 3
""",
    "explodes.py": "raise RuntimeError('boom at import')\n",
}


@pytest.fixture
def layer_folder(tmp_path, monkeypatch):
    package = tmp_path / "mylayers"
    package.mkdir()
    for name, text in LAYERS.items():
        (package / name).write_text(text)
    yield tmp_path
    for name in list(sys.modules):
        if name == "mylayers" or name.startswith("mylayers."):
            del sys.modules[name]


def test_user_layer_is_imported_inferred_and_run(layer_folder, write_spec, monkeypatch):
    text = spec_text("{x: [4, 5]}", "  s: {op: mylayers.scale.Scale, factor: 3.0}")
    compiled = compile_text(write_spec, text)
    assert "from mylayers.scale import Scale" in compiled.source
    assert "self.s = Scale(factor=3.0, channels=4)  # channels inferred from x (B, 4, 5)" in compiled.source
    monkeypatch.syspath_prepend(str(layer_folder))  # as a user puts the spec folder on PYTHONPATH
    inputs = random_inputs(compiled)
    out, _ = run_generated(compiled, inputs)
    assert tuple(out.shape) == (3, 4, 5)
    assert out.allclose(inputs["x"] * 3.0)


def test_layer_without_meta_support_is_sized_on_the_cpu_with_a_note(layer_folder, write_spec):
    compiled = compile_text(write_spec, spec_text("{x: [4, 5]}", "  n: mylayers.scale.NoMeta"))
    assert next(iter(compiled.shaped.outputs.values())).shape == (2, 1, 5)
    assert "n: mylayers.scale.NoMeta was sized by a CPU run (meta device:" in compiled.source


def test_dict_outputs_are_ports(layer_folder, write_spec):
    nodes = "  p: mylayers.scale.Pair\n  r: {op: ReLU, in: p.right}"
    compiled = compile_text(write_spec, spec_text("{x: [5]}", nodes))
    assert next(iter(compiled.shaped.outputs.values())).shape == (2, 3)
    assert 'return self.r(h["right"])  # (B, 3)' in compiled.source


@pytest.mark.parametrize(
    ("op", "words"),
    [
        ("mylayers.missing.Scale", "cannot import mylayers.missing"),
        ("mylayers.explodes.Layer", "cannot import mylayers.explodes (RuntimeError: boom at import)"),
        (
            "mylayers.scale.Scal",
            "unknown op 'mylayers.scale.Scal': mylayers.scale has no nn.Module class 'Scal'",
        ),
        ("mylayers.scale.Broken", "mylayers.scale.Broken fails on its input x (B, 4, 5)"),
        ("mylayers.scale.NotTensor", "returns int, not a tensor"),
        ("mylayers.sc-ale.Scale", "is not a Python identifier"),
    ],
)
def test_a_layer_that_cannot_be_used_is_a_located_error(layer_folder, write_spec, op, words):
    with pytest.raises(NncompileError) as info:
        compile_text(write_spec, spec_text("{x: [4, 5]}", f"  s: {{op: {op}}}"))
    [d] = info.value.diagnostics
    assert words in d.message
    assert d.node == "s" and d.loc.line == 5


def test_a_layer_whose_constructor_refuses_its_arguments(layer_folder, write_spec):
    with pytest.raises(NncompileError) as info:
        compile_text(write_spec, spec_text("{x: [4, 5]}", "  s: {op: mylayers.scale.Picky, size: -1}"))
    [d] = info.value.diagnostics
    assert "mylayers.scale.Picky(size=-1) cannot be built: size must be positive" in d.message


def test_unknown_argument_of_a_user_layer(layer_folder, write_spec):
    with pytest.raises(NncompileError) as info:
        compile_text(write_spec, spec_text("{x: [4, 5]}", "  s: {op: mylayers.scale.Scale, facter: 2.0}"))
    [d] = info.value.diagnostics
    assert "unknown argument 'facter'" in d.message and "'factor'" in d.hint
