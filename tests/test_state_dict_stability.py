"""Checkpoint stability: state-dict keys are named after node ids, so recompiling a spec, or
compiling it after adding a node, keeps the keys (and shapes) of the unchanged nodes, and a
checkpoint saved before still loads (a real file: torch.save, and a Lightning checkpoint)."""

import importlib.util
import itertools

import pytest
import torch
from nncompile import compile_spec
from task_helpers import trainer as quiet_trainer

SPEC = """\
nncompile: 1
name: Tabular
inputs:
  features: [12]
nodes:
  fc1: {op: Linear, out_features: 32}
  norm1: {op: BatchNorm1d}
  act1: {op: ReLU}
  fc2: {op: Linear, out_features: 32}
  act2: {op: ReLU}
  head: {op: Linear, out_features: 4}
outputs: {logits: head}
task:
  kind: classification
"""
# One node added in the middle: a 32 -> 32 block, so every other node keeps its shapes.
GROWN = SPEC.replace(
    "  head: {op: Linear",
    "  extra: {op: Linear, out_features: 32}\n  extra_act: {op: GELU}\n  head: {op: Linear",
)
# The same graph with the branch wired explicitly and its nodes listed in another order.
REORDERED = SPEC.replace(
    """  fc2: {op: Linear, out_features: 32}
  act2: {op: ReLU}
  head: {op: Linear, out_features: 4}""",
    """  head: {op: Linear, in: act2, out_features: 4}
  fc2: {op: Linear, in: act1, out_features: 32}
  act2: {op: ReLU, in: fc2}""",
)
_counter = itertools.count()


def load_generated(spec_text: str, tmp_path):
    """Compile spec_text and import the generated file as a fresh module."""
    n = next(_counter)
    spec = tmp_path / f"spec{n}.yaml"
    spec.write_text(spec_text)
    out = tmp_path / f"model{n}.py"
    out.write_text(compile_spec(spec, out).source)
    module_spec = importlib.util.spec_from_file_location(f"generated_stability_{n}", out)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def trained_state(module) -> dict:
    """A Lightning module whose weights and BatchNorm statistics differ from a fresh init."""
    torch.manual_seed(1)
    lit = module.TabularModule()
    with torch.no_grad():
        for p in lit.parameters():
            p.add_(torch.randn_like(p))
        lit.model.norm1.running_mean.add_(1.0)
    return lit


def test_keys_are_node_ids(tmp_path):
    model = load_generated(SPEC, tmp_path).Tabular()
    assert {key.split(".")[0] for key in model.state_dict()} == {"fc1", "norm1", "fc2", "head"}


@pytest.mark.parametrize("variant", [SPEC, REORDERED], ids=["recompiled", "reordered"])
def test_checkpoint_loads_after_recompiling(variant, tmp_path):
    old = trained_state(load_generated(SPEC, tmp_path))
    path = tmp_path / "old.pt"
    torch.save(old.state_dict(), path)

    new = load_generated(variant, tmp_path).TabularModule()
    new.load_state_dict(torch.load(path, weights_only=True))  # strict: exactly the same keys
    old.eval(), new.eval()
    x = torch.randn(3, 12)
    assert torch.equal(old(x), new(x))


def test_checkpoint_loads_after_adding_a_node(tmp_path):
    old = trained_state(load_generated(SPEC, tmp_path))
    path = tmp_path / "old.pt"
    torch.save(old.state_dict(), path)
    saved = torch.load(path, weights_only=True)

    new = load_generated(GROWN, tmp_path).TabularModule()
    result = new.load_state_dict(saved, strict=False)
    assert result.unexpected_keys == []
    assert sorted(result.missing_keys) == ["model.extra.bias", "model.extra.weight"]
    state = new.state_dict()
    for key, value in saved.items():
        assert torch.equal(state[key], value), key


def test_lightning_checkpoint_loads_into_grown_model(tmp_path):

    old_module = load_generated(SPEC, tmp_path)
    old = trained_state(old_module)
    trainer = quiet_trainer(max_steps=1, default_root_dir=tmp_path)
    data = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.randn(8, 12), torch.randint(0, 4, (8,))), batch_size=4
    )
    trainer.fit(old, data)
    path = tmp_path / "old.ckpt"
    trainer.save_checkpoint(path)

    grown = load_generated(GROWN, tmp_path).TabularModule
    new = grown.load_from_checkpoint(path, strict=False, weights_only=True)
    for key, value in old.state_dict().items():
        assert torch.equal(new.state_dict()[key], value), key
