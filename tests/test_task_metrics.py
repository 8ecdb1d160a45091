"""What the generated metrics compute: classification metrics get probabilities (so logits that
happen to fall in [0, 1] are not read as probabilities), `accuracy` is the fraction correct and
`balanced_accuracy` the mean per-class recall, `hamming` the fraction wrong, `cosine_similarity`
a mean; metrics that keep every prediction of an epoch are left out of training; predict_step
gives what training uses, and Lightning's summary sees the input shapes."""

import re

import pytest
import torch
from conftest import ROOT
from task_helpers import Fixed, load_generated
from torch import nn

SPECS = ROOT / "specs"


def spec_with_metrics(tmp_path, name: str, metrics: str):
    """specs/<name>.yaml with its task's metrics replaced by `metrics` (a YAML flow list)."""
    text = (SPECS / f"{name}.yaml").read_text()
    path = tmp_path / f"{name}.yaml"
    path.write_text(re.sub(r"(?m)^  metrics: .*$", f"  metrics: {metrics}", text, count=1))
    return path


def val_metrics(lm, batch):
    """The val metrics after one step on `batch` (logging is Lightning's: not needed here)."""
    lm.log = lm.log_dict = lambda *a, **kw: None
    lm._shared_step(batch, "val")
    return {k: float(v) for k, v in lm.val_metrics.compute().items()}


def test_binary_metrics_get_probabilities_even_when_logits_fall_in_0_1(tmp_path):
    module = load_generated(SPECS / "task_binary.yaml", tmp_path)
    lm = module.SpamFilterModule()
    logits = torch.tensor([[0.2], [0.4], [0.9], [0.1]])  # all positive: all predict class 1
    lm.model = Fixed(logits)
    got = val_metrics(lm, (torch.randn(4, 16), torch.ones(4)))
    assert got["val_accuracy"] == 1.0  # read as probabilities (threshold 0.5) it would be 0.25


def test_multilabel_metrics_get_probabilities(tmp_path):
    module = load_generated(SPECS / "task_multilabel.yaml", tmp_path)
    lm = module.TaggerModule()
    lm.model = Fixed(torch.full((2, 5), 0.3))  # positive logits: every label predicted on
    got = val_metrics(lm, (torch.randn(2, 20), torch.ones(2, 5)))
    assert got["val_accuracy"] == 1.0 and got["val_f1"] == 1.0


def test_multiclass_scores_are_softmax_probabilities(tmp_path):
    """AUROC ranks scores per class; logits in [0, 1] read as probabilities rank differently from
    their softmax when rows differ in scale. The reference is computed from the softmax."""
    import torchmetrics

    module = load_generated(SPECS / "task_multiclass.yaml", tmp_path)
    lm = module.ShapeClassifierModule()
    g = torch.Generator().manual_seed(0)
    logits = torch.rand(32, 3, generator=g) * torch.rand(32, 1, generator=g)  # all in [0, 1]
    target = torch.randint(0, 3, (32,), generator=g)
    lm.model = Fixed(logits)
    got = val_metrics(lm, (torch.randn(32, 3, 16, 16), target))
    want = torchmetrics.functional.classification.multiclass_auroc(logits.softmax(1), target, 3)
    raw = torchmetrics.functional.classification.multiclass_auroc(logits, target, 3)
    assert abs(float(want) - float(raw)) > 1e-3  # the case tells the two apart
    assert got["val_auroc"] == pytest.approx(float(want), abs=1e-6)


def test_accuracy_is_the_fraction_correct_and_balanced_accuracy_the_mean_recall(tmp_path):
    spec = spec_with_metrics(tmp_path, "task_multiclass", "[accuracy, balanced_accuracy, hamming]")
    lm = load_generated(spec, tmp_path).ShapeClassifierModule()
    target = torch.tensor([0] * 9 + [1])  # imbalanced: 9 of class 0, 1 of class 1
    logits = torch.zeros(10, 3)
    logits[:, 0] = 1.0  # everything predicted as class 0: 90% right
    lm.model = Fixed(logits)
    got = val_metrics(lm, (torch.randn(10, 3, 16, 16), target))
    assert got["val_accuracy"] == pytest.approx(0.9)
    assert got["val_balanced_accuracy"] == pytest.approx(0.5)  # recall 1 on class 0, 0 on class 1
    assert got["val_hamming"] == pytest.approx(0.1)


def test_multilabel_accuracy_is_the_fraction_of_labels_right(tmp_path):
    module = load_generated(SPECS / "task_multilabel.yaml", tmp_path)
    lm = module.TaggerModule()
    target = torch.zeros(4, 5)
    target[0, 0] = 1.0  # 1 positive of 20 labels, predicted negative: 19 of 20 right
    lm.model = Fixed(torch.full((4, 5), -1.0))
    assert val_metrics(lm, (torch.randn(4, 20), target))["val_accuracy"] == pytest.approx(0.95)


def test_cosine_similarity_is_a_mean_over_samples(tmp_path):
    spec = spec_with_metrics(tmp_path, "task_regression", "[cosine_similarity]")
    lm = load_generated(spec, tmp_path).ForecasterModule()
    preds = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 2.0]])
    target = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    lm.model = Fixed(preds)
    want = float(nn.functional.cosine_similarity(preds, target).mean())  # (1 + 0 + 1 + 1) / 4
    assert val_metrics(lm, (torch.randn(4, 24), target))["val_cosine_similarity"] == pytest.approx(want)


def test_training_leaves_out_metrics_that_keep_every_prediction(tmp_path):
    """BinaryAUROC without thresholds keeps each epoch's predictions: not a train metric; with
    `thresholds:` its state is a fixed-size histogram, so training computes it."""
    module = load_generated(SPECS / "task_binary.yaml", tmp_path)
    lm = module.SpamFilterModule()
    assert set(lm.train_metrics.keys(keep_base=True)) == {"accuracy"}
    assert set(lm.val_metrics.keys(keep_base=True)) == {"accuracy", "auroc"}
    spec = spec_with_metrics(tmp_path, "task_binary", "[accuracy, {name: auroc, thresholds: 50}]")
    binned = load_generated(spec, tmp_path).SpamFilterModule()
    assert set(binned.train_metrics.keys(keep_base=True)) == {"accuracy", "auroc"}


def test_binary_predict_step_returns_what_training_uses(tmp_path):
    module = load_generated(SPECS / "task_binary.yaml", tmp_path)
    lm = module.SpamFilterModule().eval()
    x = torch.randn(5, 16)
    with torch.no_grad():
        out = lm.predict_step((x, torch.zeros(5)), 0)
        assert out.shape == (5,)  # the model gives (5, 1); training squeezes it to (5,)
        torch.testing.assert_close(out, lm.model(x).squeeze(1))


@pytest.mark.parametrize(
    "name, cls, sizes",
    [
        ("task_multiclass", "ShapeClassifierModule", [2, 3, 16, 16]),
        ("transformer_tokens", "TokenTransformerModule", [2, 16]),
    ],
)
def test_example_input_array_gives_the_summary_its_shapes(name, cls, sizes, tmp_path):
    from pytorch_lightning.utilities.model_summary import ModelSummary

    lm = getattr(load_generated(SPECS / f"{name}.yaml", tmp_path), cls)()
    assert list(lm.example_input_array.shape) == sizes
    summary = ModelSummary(lm, max_depth=1)
    assert summary.in_sizes[summary.layer_names.index("model")] == sizes


def test_two_inputs_give_a_dict_of_examples(tmp_path):
    lm = load_generated(SPECS / "two_tower_concat.yaml", tmp_path).ImageTabularModule()
    assert {k: list(v.shape) for k, v in lm.example_input_array.items()} == {
        "image": [2, 3, 32, 32],
        "tabular": [2, 8],
    }
    with torch.no_grad():  # a dict is passed as keyword arguments, as the summary does
        assert lm(**lm.example_input_array).shape == (2, 5)
