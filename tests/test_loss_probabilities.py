"""A model that ends in a Sigmoid outputs probabilities: a loss that takes probabilities
(BCELoss) is tried on values in (0, 1) and trains, and the default BCEWithLogitsLoss, which would
apply the sigmoid a second time, is refused at the Sigmoid node (issue 14, bug 4)."""

import math

import pytest
import torch
from nncompile import compile_spec
from nncompile.errors import NncompileError
from task_helpers import batches, load_generated, trainer
from torch import nn

SPEC = """\
nncompile: 1
name: Net
inputs: {{x: [8]}}
nodes:
  fc: {{op: Linear, out_features: {width}}}
  prob: Sigmoid
task: {task}
"""


@pytest.mark.parametrize(("kind", "width"), [("binary", 1), ("multilabel", 3)])
def test_bce_loss_after_a_sigmoid_compiles_and_trains(write_spec, tmp_path, kind, width):
    path = write_spec(SPEC.format(width=width, task=f"{{kind: {kind}, loss: BCELoss}}"))
    module = load_generated(path, tmp_path)
    lm = module.NetModule()
    assert isinstance(lm.loss_fn, torch.nn.BCELoss)

    def make(g, n):
        shape = (n,) if kind == "binary" else (n, width)
        return torch.randn(n, 8, generator=g), torch.randint(0, 2, shape, generator=g).float()

    # the loss of a batch is BCELoss on the Sigmoid's output, applied once
    x, y = make(torch.Generator().manual_seed(1), 6)
    with torch.no_grad(), pytest.MonkeyPatch.context() as patch:
        patch.setattr(lm, "log", lambda *args, **kwargs: None)  # outside a Trainer
        probabilities = torch.sigmoid(lm.model.fc(x)).reshape(y.shape)
        torch.testing.assert_close(
            lm._shared_step((x, y), "test"), nn.functional.binary_cross_entropy(probabilities, y)
        )
    t = trainer(max_steps=2)
    t.fit(lm, train_dataloaders=batches(make, 2))
    assert t.global_step == 2
    assert math.isfinite(float(t.callback_metrics["train_loss"]))


@pytest.mark.parametrize(
    ("task", "words"),
    [
        ("{kind: binary}", "(the default loss of a binary head)"),
        ("{kind: multilabel}", "(the default loss of a multilabel head)"),
        ("{kind: binary, loss: BCEWithLogitsLoss}", "applies a sigmoid itself: training"),
    ],
)
def test_a_logits_loss_after_a_sigmoid_is_refused_at_the_sigmoid(write_spec, task, words):
    path = write_spec(SPEC.format(width=1 if "binary" in task else 3, task=task))
    with pytest.raises(NncompileError) as info:
        compile_spec(path)
    d = info.value.diagnostics[0]
    assert words in d.message and "ends in a Sigmoid" in d.message
    assert (d.loc.line, d.node) == (6, "prob")
    assert "loss: BCELoss" in d.hint


def test_bce_loss_on_logits_is_still_refused_by_the_dry_run(write_spec):
    path = write_spec(
        SPEC.format(width=1, task="{kind: binary, loss: BCELoss}").replace("  prob: Sigmoid\n", "")
    )
    with pytest.raises(NncompileError, match="between 0 and 1"):
        compile_spec(path)


def test_the_dry_run_refuses_logits_whatever_the_random_draw(write_spec, monkeypatch):
    """Dummy logits that all happen to fall in [0, 1] (here: every draw does) must not let
    BCELoss on logits through: the dry run holds one logit outside [0, 1] on purpose."""
    import torch

    monkeypatch.setattr(torch, "randn", lambda *shape, **kwargs: torch.rand(*shape, **kwargs))
    path = write_spec(
        SPEC.format(width=1, task="{kind: binary, loss: BCELoss}").replace("  prob: Sigmoid\n", "")
    )
    with pytest.raises(NncompileError, match="between 0 and 1"):
        compile_spec(path)
