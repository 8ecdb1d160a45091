"""Each task kind's generated LightningModule trains 3 steps with a finite loss and logs its
metrics; schedulers step as configured; the batch convention is checked at run time."""

import math

import pytest
import torch
from conftest import ROOT
from task_helpers import batches, load_generated, trainer

SPECS = ROOT / "specs"


def image_classes(g, b):
    return torch.randn(b, 3, 16, 16, generator=g), torch.randint(0, 3, (b,), generator=g)


def tags(g, b):
    return torch.randn(b, 20, generator=g), torch.randint(0, 2, (b, 5), generator=g)


def binary(g, b):
    y = torch.tensor([0.0, 1.0] * (b // 2))
    return torch.randn(b, 16, generator=g), y


def forecast(g, b):
    return torch.randn(b, 24, generator=g), torch.randn(b, 3, generator=g)


def detection(g, b):
    target = {"label": torch.randint(0, 4, (b,), generator=g), "box": torch.rand(b, 4, generator=g)}
    return torch.randn(b, 3, 16, 16, generator=g), target


CASES = {
    "task_multiclass": (
        image_classes,
        "ShapeClassifierModule",
        ["val_accuracy", "val_f1", "val_auroc", "train_accuracy", "train_f1", "train_loss_step"],
    ),
    "task_multilabel": (tags, "TaggerModule", ["val_accuracy", "val_f1", "train_accuracy"]),
    "task_binary": (binary, "SpamFilterModule", ["val_accuracy", "val_auroc", "train_accuracy"]),
    "task_regression": (forecast, "ForecasterModule", ["val_mae", "val_mse", "val_r2", "train_r2"]),
    "task_multitask": (
        detection,
        "DetectorModule",
        ["val_label_accuracy", "val_box_mae", "val_label_loss", "val_box_loss", "train_box_mae"],
    ),
}


@pytest.mark.parametrize("name", CASES)
def test_task_kind_trains_three_steps_and_logs_its_metrics(name, tmp_path):
    make, cls_name, metrics = CASES[name]
    module = load_generated(SPECS / f"{name}.yaml", tmp_path)
    torch.manual_seed(0)
    lm = getattr(module, cls_name)()
    before = [p.detach().clone() for p in lm.parameters()]
    data = batches(make, 3)
    t = trainer(max_epochs=1)
    t.fit(lm, train_dataloaders=data, val_dataloaders=data)
    assert t.global_step == 3
    logged = {k: float(v) for k, v in t.callback_metrics.items()}
    for key in ["train_loss", "val_loss", *metrics]:
        assert key in logged, (key, sorted(logged))
        assert math.isfinite(logged[key]), (key, logged[key])
    assert any(not torch.equal(a, b) for a, b in zip(before, lm.parameters(), strict=True))
    # AUROC keeps every prediction of an epoch: validation and test compute it, training does not
    assert "train_auroc" not in logged


def test_multitask_loss_is_the_weighted_sum_of_head_losses(tmp_path):
    module = load_generated(SPECS / "task_multitask.yaml", tmp_path)
    lm = module.DetectorModule()
    inputs, target = detection(torch.Generator().manual_seed(1), 4)
    logged = {}  # what the step hands Lightning's epoch means (one batch: the means themselves)
    lm.log = lambda name, value, **kw: logged.__setitem__(name, value)
    lm.log_dict = lambda values, **kw: logged.update(values)
    loss = lm._shared_step((inputs, target), "val")
    out = lm.model(inputs)
    label = torch.nn.functional.cross_entropy(out["label"], target["label"])
    box = torch.nn.functional.smooth_l1_loss(out["box"], target["box"])
    torch.testing.assert_close(loss, label + 0.5 * box)
    torch.testing.assert_close(logged["val_box_loss"], box)
    torch.testing.assert_close(logged["val_loss"], label + 0.5 * box)


def test_epoch_values_cover_one_epoch_and_match_an_independent_computation(tmp_path):
    """Loss means and metrics are logged once per epoch and reset: after two epochs, train_loss
    is the mean of the second epoch's step losses, val_* are the final model's on the val data."""
    import pytorch_lightning as pl

    module = load_generated(SPECS / "task_regression.yaml", tmp_path)
    torch.manual_seed(0)
    lm = module.ForecasterModule()
    losses = []

    class Record(pl.Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            losses.clear()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            losses.append(float(outputs["loss"]))

    train, val = batches(forecast, 3), batches(forecast, 2, batch=5, seed=1)
    t = trainer(max_epochs=2, callbacks=[Record()])
    t.fit(lm, train_dataloaders=train, val_dataloaders=val)
    logged = {k: float(v) for k, v in t.callback_metrics.items()}
    assert logged["train_loss"] == pytest.approx(sum(losses) / 3, rel=1e-5)
    with torch.no_grad():
        x = torch.cat([b[0] for b in val])
        y = torch.cat([b[1] for b in val])
        preds = lm.model.eval()(x)
    assert logged["val_mae"] == pytest.approx(float((preds - y).abs().mean()), rel=1e-5)
    assert logged["val_loss"] == pytest.approx(float(torch.nn.functional.huber_loss(preds, y)), rel=1e-5)


def test_custom_kind_trains_through_a_subclass(tmp_path):
    module = load_generated(SPECS / "task_custom.yaml", tmp_path)

    class Contrastive(module.EncoderModule):
        def training_step(self, batch, batch_idx):
            inputs, target = self.unpack_batch(batch)
            a = self(**inputs)
            b = self(signal=inputs["signal"] + 0.01 * torch.randn_like(inputs["signal"]))
            loss = self.loss_fn(a, b, target)
            self.log("train_loss", loss)
            return loss

    def pairs(g, b):
        return torch.randn(b, 32, generator=g), torch.ones(b)

    t = trainer(max_epochs=1)
    t.fit(Contrastive(), train_dataloaders=batches(pairs, 3))
    assert t.global_step == 3
    assert math.isfinite(float(t.callback_metrics["train_loss"]))


def test_custom_kind_without_a_subclass_says_what_to_do(tmp_path):
    module = load_generated(SPECS / "task_custom.yaml", tmp_path)
    with pytest.raises(NotImplementedError, match="override training_step"):
        module.EncoderModule().training_step((torch.randn(2, 32), torch.ones(2)), 0)


def learning_rates(lm, data, steps):
    t = trainer(max_steps=steps)
    seen = []

    class Record(__import__("pytorch_lightning").Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen.append(trainer.optimizers[0].param_groups[0]["lr"])

    t.callbacks.append(Record())
    t.fit(lm, train_dataloaders=data)
    return seen


def test_one_cycle_spans_the_trainers_step_count(tmp_path):
    module = load_generated(SPECS / "task_multilabel.yaml", tmp_path)
    lm = module.TaggerModule()
    lrs = learning_rates(lm, batches(tags, 10), 10)
    scheduler = lm.trainer.lr_scheduler_configs[0].scheduler
    assert scheduler.total_steps == 10
    assert lm.trainer.lr_scheduler_configs[0].interval == "step"
    assert lrs[0] < max(lrs) and lrs[-1] < max(lrs)  # warm up, then anneal
    assert max(lrs) == pytest.approx(0.01, rel=0.05)


def test_cosine_with_warmup_rises_then_decays(tmp_path):
    module = load_generated(SPECS / "task_multiclass.yaml", tmp_path)
    lm = module.ShapeClassifierModule()
    lrs = learning_rates(lm, batches(image_classes, 8), 8)
    peak = 3.0e-3
    assert lrs[0] == pytest.approx(peak * 0.01)
    assert lrs[2] == pytest.approx(peak)  # warm-up over 2 steps
    assert all(a >= b for a, b in zip(lrs[2:], lrs[3:], strict=False))
    assert lrs[-1] < peak / 2


def test_plateau_scheduler_monitors_val_loss(tmp_path):
    module = load_generated(SPECS / "task_binary.yaml", tmp_path)
    lm = module.SpamFilterModule()
    config = lm.configure_optimizers()
    assert config["lr_scheduler"]["monitor"] == "val_loss"
    assert isinstance(config["lr_scheduler"]["scheduler"], torch.optim.lr_scheduler.ReduceLROnPlateau)


def test_class_weights_and_pos_weight_are_buffers_that_follow_the_module(tmp_path):
    multiclass = load_generated(SPECS / "task_multiclass.yaml", tmp_path).ShapeClassifierModule()
    assert torch.equal(multiclass.loss_fn.weight, torch.tensor([1.0, 2.0, 1.0]))
    assert "loss_fn.weight" not in multiclass.state_dict()  # from the hyperparameters (test_hparams.py)
    multilabel = load_generated(SPECS / "task_multilabel.yaml", tmp_path).TaggerModule()
    assert multilabel.loss_fn.pos_weight.dtype == torch.float32
    assert multilabel.to(torch.float64).loss_fn.pos_weight.dtype == torch.float64


@pytest.mark.parametrize(
    "name, batch, message",
    [
        ("task_multiclass", torch.randn(4, 3, 16, 16), r"expected a target of class indices .*, got None"),
        (
            "task_multiclass",
            (torch.randn(4, 3, 16, 16), torch.rand(4)),
            r"class indices \(B,\) of an integer dtype, got a tensor of shape \(4,\) and dtype torch.float32",
        ),
        (
            "task_multiclass",
            ({"img": torch.randn(4, 3, 16, 16)}, torch.zeros(4, dtype=torch.long)),
            r"expected batches \(inputs, target\), inputs \('image',\)",
        ),
        (
            "task_regression",
            (torch.randn(4, 24), torch.randn(4)),
            r"values \(B, 3\), got a tensor of shape \(4,\)",
        ),
        ("task_binary", (torch.randn(4, 16), torch.zeros(4, 1)), r"0/1 labels \(B,\)"),
        (
            "task_multitask",
            (torch.randn(4, 3, 16, 16), torch.zeros(4)),
            r"target as a dict with keys \('label', 'box'\)",
        ),
        ("task_multitask", torch.randn(4, 3, 16, 16), r"target as a dict with keys .*, got None"),
    ],
)
def test_batch_convention_is_checked_with_a_clear_error(name, batch, message, tmp_path):
    module = load_generated(SPECS / f"{name}.yaml", tmp_path)
    lm = next(getattr(module, n) for n in dir(module) if n.endswith("Module") and n != "LightningModule")()
    with pytest.raises(ValueError, match=message):
        lm._shared_step(batch, "train")


def test_multiclass_accepts_any_integer_target_dtype(tmp_path):
    module = load_generated(SPECS / "task_multiclass.yaml", tmp_path)
    lm = module.ShapeClassifierModule()
    lm.log = lm.log_dict = lambda *a, **kw: None
    loss = lm._shared_step((torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 1], dtype=torch.int32)), "val")
    assert torch.isfinite(loss)
