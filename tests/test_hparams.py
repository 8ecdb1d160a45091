"""The numbers of `task:` (and each node's rate) are hyperparameters of the LightningModule: they
reach the optimizer, the scheduler and the loss from `__init__`, LightningCLI sets them, a
checkpoint records them as plain values; schedulers that set the rate peak at `lr`; and loss
settings never come from a checkpoint's state dict."""

import math
import warnings

import pytest
import torch
from conftest import ROOT
from load_generated import compile_and_load, load_source
from nncompile import compile_spec
from nncompile.errors import NncompileError
from task_helpers import batches
from task_helpers import trainer as quiet_trainer

SPEC = """nncompile: 1
name: Net
inputs:
  x: [6]
nodes:
  fc1: {op: Linear, out_features: 8, lr: 0.05}
  act: {op: ReLU}
  fc2: {op: Linear, out_features: 3, lr_mult: 0.5}
outputs: {logits: fc2}
task:
  kind: multiclass
  loss: {name: CrossEntropyLoss, label_smoothing: 0.1, weight: WEIGHTS}
  optimizer: {name: SGD, lr: 0.1, momentum: 0.9, weight_decay: 0.001}
  scheduler: {name: StepLR, step_size: 2, gamma: 0.5}
"""


def classes(g, batch):
    return torch.randn(batch, 6, generator=g), torch.randint(0, 3, (batch,), generator=g)


def net(tmp_path, weights: str | None = "[1.0, 2.0, 1.0]"):
    text = SPEC.replace("WEIGHTS", weights) if weights else SPEC.replace(", weight: WEIGHTS", "")
    return compile_and_load(text, tmp_path)[1]


def test_task_numbers_are_hyperparameters_with_the_spec_as_default(tmp_path):
    module = net(tmp_path)
    lightning = module.NetModule()
    assert dict(lightning.hparams) == {
        "lr": 0.1,
        "loss_label_smoothing": 0.1,
        "loss_weight": (1.0, 2.0, 1.0),
        "momentum": 0.9,
        "weight_decay": 0.001,
        "scheduler_step_size": 2,
        "scheduler_gamma": 0.5,
        "lr_fc1": 0.05,
        "lr_mult_fc2": 0.5,
    }
    tuned = module.NetModule(
        lr=0.2, momentum=0.5, weight_decay=0.01, scheduler_gamma=0.1, lr_fc1=0.3, lr_mult_fc2=2.0
    )
    config = tuned.configure_optimizers()
    groups = config["optimizer"].param_groups
    # fc1's own, then 2 x lr for fc2; each rate's weight, then its bias without weight decay
    assert [g["lr"] for g in groups] == pytest.approx([0.3, 0.3, 0.4, 0.4])
    assert [(g["momentum"], g["weight_decay"]) for g in groups] == [(0.5, 0.01), (0.5, 0.0)] * 2
    assert config["lr_scheduler"]["scheduler"].gamma == 0.1
    tuned = module.NetModule(loss_weight=(3.0, 1.0, 1.0), loss_label_smoothing=0.0)
    assert torch.equal(tuned.loss_fn.weight, torch.tensor([3.0, 1.0, 1.0]))
    assert tuned.loss_fn.label_smoothing == 0.0


def test_checkpoint_records_plain_hyperparameters(tmp_path):
    module = net(tmp_path)
    lightning = module.NetModule(weight_decay=0.02, lr_fc1=0.07)
    trainer = quiet_trainer(max_steps=1)
    trainer.fit(lightning, batches(classes, 1))
    trainer.save_checkpoint(tmp_path / "run.ckpt")
    saved = torch.load(tmp_path / "run.ckpt", weights_only=True)["hyper_parameters"]
    assert saved["weight_decay"] == 0.02 and saved["lr_fc1"] == 0.07
    restored = module.NetModule.load_from_checkpoint(tmp_path / "run.ckpt")
    assert restored.hparams.weight_decay == 0.02
    assert restored.configure_optimizers()["optimizer"].param_groups[0]["lr"] == 0.07


def test_lightning_cli_sets_the_hyperparameters(tmp_path, capsys):
    """`fit --model.lr ... --model.weight_decay ...`: printed by --print_config, and in the
    optimizer of a fast_dev_run fit."""
    from pytorch_lightning.cli import LightningCLI

    module = net(tmp_path)
    seen = {}

    class Data(__import__("pytorch_lightning").LightningDataModule):
        def train_dataloader(self):
            return batches(classes, 2)

    class Record(module.NetModule):
        def on_train_start(self):
            seen["groups"] = [dict(g, params=None) for g in self.trainer.optimizers[0].param_groups]

    args = ["fit", "--model.lr", "0.3", "--model.weight_decay", "0.05", "--model.lr_fc1", "0.2"]
    with pytest.raises(SystemExit):
        LightningCLI(Record, Data, args=[*args, "--print_config"], save_config_callback=None)
    printed = capsys.readouterr().out
    assert "lr: 0.3" in printed and "weight_decay: 0.05" in printed and "scheduler_gamma: 0.5" in printed
    trainer_args = [
        "--trainer.fast_dev_run",
        "1",
        "--trainer.accelerator",
        "cpu",
        "--trainer.logger",
        "false",
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        LightningCLI(Record, Data, args=args + trainer_args, save_config_callback=None)
    assert [g["lr"] for g in seen["groups"]] == pytest.approx([0.2, 0.2, 0.15, 0.15])
    assert [g["weight_decay"] for g in seen["groups"]] == [0.05, 0.0, 0.05, 0.0]


def one_cycle(step: int, total: int, peak: float) -> float:
    """torch's OneCycleLR by hand: cosine from peak/25 up to the peak over 30% of the steps, then
    down to peak/25/1e4."""
    initial, final = peak / 25, peak / 25 / 1e4
    rise_end = 0.3 * total - 1
    if step <= rise_end:
        start, end, pct = initial, peak, step / rise_end
    else:
        start, end, pct = peak, final, (step - rise_end) / (total - 1 - rise_end)
    return end + (start - end) / 2 * (1 + math.cos(math.pi * pct))


@pytest.mark.parametrize("lr", [1e-3, 1e-1])
def test_one_cycle_peaks_at_the_lr_hyperparameter(lr, tmp_path):
    module = load_source(compile_spec(ROOT / "specs" / "task_multilabel.yaml").source, tmp_path)
    seen = []

    class Record(module.TaggerModule):
        def on_train_batch_start(self, batch, batch_idx):
            seen.append(self.trainer.optimizers[0].param_groups[0]["lr"])

    def tags(g, batch):
        return torch.randn(batch, 20, generator=g), torch.randint(0, 2, (batch, 5), generator=g)

    quiet_trainer(max_epochs=1).fit(Record(lr=lr), batches(tags, 10))
    assert seen == pytest.approx([one_cycle(s, 10, lr) for s in range(10)], rel=1e-6)


def test_one_cycle_max_lr_in_the_spec_is_refused(tmp_path):
    text = SPEC.replace("WEIGHTS", "[1, 1, 1]").replace(
        "{name: StepLR, step_size: 2, gamma: 0.5}", "{name: OneCycleLR, max_lr: 0.5}"
    )
    with pytest.raises(NncompileError, match=r"give the optimizer `lr: 0.5`"):
        compile_and_load(text, tmp_path)


def test_loss_settings_are_not_in_the_state_dict(tmp_path):
    """Class weights come from the spec (the hyperparameters): an old checkpoint loads strictly
    into the module regenerated with other weights, and the new weights are in effect."""
    old = net(tmp_path, "[1.0, 2.0, 1.0]").NetModule()
    state = old.state_dict()
    assert not any(k.startswith("loss_fn.") for k in state)
    new = net(tmp_path, "[1.0, 1.0, 5.0]").NetModule()
    new.load_state_dict(state, strict=True)
    assert torch.equal(new.loss_fn.weight, torch.tensor([1.0, 1.0, 5.0]))
    unweighted = net(tmp_path, None).NetModule()  # the spec drops them
    unweighted.load_state_dict(state, strict=True)
    assert unweighted.loss_fn.weight is None
