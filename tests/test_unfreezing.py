"""Gradual unfreezing (`unfreeze:` on a node), trained for real on a ResNet-18 (random weights,
32x32 images, 3 batches an epoch): what is frozen stays bit-identical (weights and BatchNorm
statistics, under AdamW's weight decay and a OneCycleLR that gives every group a nonzero rate),
each part trains from its epoch or step at the warm-up fraction of the scheduled rate, a run
resumed from a checkpoint of epoch 0 ends bit-identical to one run straight through, and two DDP
processes end with the same weights; plus the errors for wrong `unfreeze:` use."""

import functools
import warnings

import pytest
import pytorch_lightning as pl
import torch
from ddp_jobs import ddp_job
from load_generated import compile_and_load, compile_text
from nncompile.errors import NncompileError
from task_helpers import batches
from task_helpers import trainer as quiet_trainer

SCHEDULER = "  scheduler: {name: OneCycleLR}\n"


def spec_text(unfreeze: str, scheduler: str = SCHEDULER) -> str:
    return (
        "nncompile: 1\nname: Tuned\ninputs:\n  image: [3, 32, 32]\nnodes:\n"
        "  resnet:\n    op: torchvision.resnet18\n    weights: null\n    head: remove\n"
        f"    unfreeze: {unfreeze}\n"
        "  fc: {op: Linear, out_features: 5}\n"
        "task:\n  kind: classification\n  optimizer: {name: AdamW, lr: 1.0e-2, weight_decay: 0.1}\n"
        + scheduler
    )


@functools.cache
def compiled(text: str, folder):
    """Each spec text compiled once per session (compiling a ResNet costs seconds)."""
    return compile_and_load(text, folder)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("unfreezing")


def image_batch(g, batch):
    return torch.randn(batch, 3, 32, 32, generator=g), torch.randint(0, 5, (batch,), generator=g)


def loader():
    return batches(image_batch, 3)


class Snapshots(pl.Callback):
    """The model's state after each epoch, and the optimizer's state size for layer4."""

    def __init__(self):
        self.states, self.layer4_state = [], []

    def on_train_epoch_end(self, trainer, pl_module):
        self.states.append({k: v.clone() for k, v in pl_module.model.state_dict().items()})
        optimizer = trainer.optimizers[0]
        layer4 = list(pl_module.model.resnet.layer4.parameters())
        self.layer4_state.append(sum(len(optimizer.state[p]) for p in layer4))


class Rates(pl.Callback):
    """Per step: each group's scheduled rate (batch start) and the rate it stepped with."""

    def __init__(self):
        self.scheduled, self.used = [], []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.scheduled.append({g.get("unfreeze"): g["lr"] for g in trainer.optimizers[0].param_groups})

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.used.append({g.get("unfreeze"): g["lr"] for g in optimizer.param_groups})


def fit(module_cls, epochs: int, *callbacks, **kwargs):
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lightning = module_cls(**kwargs)
        initial = {k: v.clone() for k, v in lightning.model.state_dict().items()}
        trainer = quiet_trainer(max_epochs=epochs, callbacks=list(callbacks))
        trainer.fit(lightning, loader())
    return lightning, initial, trainer


def test_layer4_trains_from_epoch_1_and_the_rest_stays_frozen(folder):
    result, module = compiled(spec_text("{layer4: 1}"), folder)
    assert "Gradual unfreezing: resnet.layer4 from epoch 1" in result.source
    snapshots = Snapshots()
    lightning, initial, trainer = fit(module.TunedModule, 2, snapshots)
    epoch0, epoch1 = snapshots.states
    backbone = [k for k in initial if k.startswith("resnet.")]
    assert any("running_mean" in k for k in backbone) and any("num_batches_tracked" in k for k in backbone)
    for key in backbone:  # epoch 0: no weight, no BatchNorm statistic of the backbone moved
        assert torch.equal(initial[key], epoch0[key]), key
    assert not torch.equal(initial["fc.weight"], epoch0["fc.weight"])
    assert snapshots.layer4_state[0] == 0  # no optimizer state while frozen
    for key in (
        "resnet.layer4.0.conv1.weight",
        "resnet.layer4.1.bn2.weight",
        "resnet.layer4.0.bn1.running_mean",
    ):
        assert not torch.equal(epoch0[key], epoch1[key]), key
    for key in backbone:
        if not key.startswith("resnet.layer4."):  # layer3 and below: frozen for good
            assert torch.equal(initial[key], epoch1[key]), key
    groups = trainer.optimizers[0].param_groups
    # each part's weights, and its norm weights and biases in a twin without weight decay
    layer4 = len(list(lightning.model.resnet.layer4.parameters()))
    found = sorted((g.get("unfreeze") or "", len(g["params"]), g["weight_decay"] == 0.0) for g in groups)
    assert found == [
        ("", 1, False),
        ("", 1, True),
        ("resnet.layer4", 5, False),
        ("resnet.layer4", layer4 - 5, True),
    ]


@pytest.mark.parametrize(
    ("unfreeze", "expected"),
    [
        # 3 batches an epoch: epoch 1 warms up over its batches (1/3, 2/3, 1)
        ("{at_epoch: {layer4: 1}, warmup_epochs: 1}", [0, 0, 0, 1 / 3, 2 / 3, 1, 1, 1, 1]),
        ("{at_step: {layer4: 2}, warmup_steps: 4}", [0, 0, 1 / 4, 2 / 4, 3 / 4, 1, 1, 1, 1]),
    ],
)
def test_warm_up_scales_the_scheduled_rate(unfreeze, expected, folder):
    """The step uses the fraction of the rate the scheduler set; the scheduler's own rate (and
    so OneCycleLR's curve) is untouched, and the head trains at its full rate throughout."""
    _, module = compiled(spec_text(unfreeze), folder)
    rates = Rates()
    fit(module.TunedModule, 3, rates)
    assert len(rates.used) == 9
    for step, fraction in enumerate(expected):
        scheduled, used = rates.scheduled[step], rates.used[step]
        assert scheduled["resnet.layer4"] > 0 and used[None] == scheduled[None]
        assert used["resnet.layer4"] == pytest.approx(fraction * scheduled["resnet.layer4"], rel=1e-12), step


def test_the_schedule_reads_its_hyperparameters(folder):
    _, module = compiled(spec_text("{at_epoch: {layer4: 1}, warmup_epochs: 1}"), folder)
    rates = Rates()
    fit(module.TunedModule, 1, rates, unfreeze_resnet_layer4=0, unfreeze_resnet_warmup=0.0)
    assert len(rates.used) == 3
    assert all(
        u["resnet.layer4"] == s["resnet.layer4"] > 0 for u, s in zip(rates.used, rates.scheduled, strict=True)
    )


def test_layer_wise_decay_sets_the_rate_each_part_unfreezes_at(folder):
    """`lr_decay` with `unfreeze`: each part's groups carry its depth's rate (layer4 one step
    below the head, layer3 two), held at 0 until its epoch, then stepped at that rate."""
    text = spec_text("{layer4: 1, layer3: 2}", scheduler="").replace(
        "    unfreeze:", "    lr_decay: 0.5\n    unfreeze:"
    )
    _, module = compiled(text, folder)
    rates = Rates()
    lightning, initial, _ = fit(module.TunedModule, 3, rates)
    lr = 1.0e-2
    expected = {None: lr, "resnet.layer4": lr * 0.5, "resnet.layer3": lr * 0.25}
    assert all(s == pytest.approx(expected, rel=1e-12) for s in rates.scheduled)
    for step, used in enumerate(rates.used):  # 3 batches an epoch
        epoch = step // 3
        assert used[None] == pytest.approx(lr, rel=1e-12)
        assert used["resnet.layer4"] == pytest.approx(expected["resnet.layer4"] * (epoch >= 1), rel=1e-12)
        assert used["resnet.layer3"] == pytest.approx(expected["resnet.layer3"] * (epoch >= 2), rel=1e-12)
    final = lightning.model.state_dict()
    for key in ("resnet.layer3.0.conv1.weight", "resnet.layer4.0.conv1.weight"):
        assert not torch.equal(initial[key], final[key]), key
    assert torch.equal(initial["resnet.layer2.0.conv1.weight"], final["resnet.layer2.0.conv1.weight"])


def test_resumed_from_epoch_0_ends_bit_identical(tmp_path):
    """A checkpoint of epoch 0 (layer4 still frozen) resumes into the same parameter groups,
    the same frozen parts and the same place in the warm-up and the cosine schedule."""
    scheduler = "  scheduler: {name: cosine_with_warmup, warmup_steps: 2}\n"
    _, module = compile_and_load(spec_text("{at_epoch: {layer4: 1}, warmup_epochs: 1}", scheduler), tmp_path)
    checkpoints = pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", filename="{epoch}", save_top_k=-1)
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        straight = module.TunedModule()
        quiet_trainer(max_epochs=3, callbacks=[checkpoints], enable_checkpointing=True).fit(
            straight, loader()
        )
        torch.manual_seed(1)  # other initial weights: the checkpoint must restore everything
        resumed = module.TunedModule()
        trainer = quiet_trainer(max_epochs=3)
        trainer.fit(resumed, loader(), ckpt_path=tmp_path / "ckpt" / "epoch=0.ckpt")
    assert trainer.global_step == 9
    final, again = straight.model.state_dict(), resumed.model.state_dict()
    assert not torch.equal(
        final["resnet.layer4.0.conv1.weight"],
        torch.load(tmp_path / "ckpt" / "epoch=0.ckpt", weights_only=True)["state_dict"][
            "model.resnet.layer4.0.conv1.weight"
        ],
    )  # layer4 trained after the checkpoint
    for key in final:
        assert torch.equal(final[key], again[key]), key


TUNED_DDP = ddp_job("tuned", spec_text("{layer4: 1}"), run="unfreeze", module="TunedModule")


@pytest.mark.xdist_group("ddp_launch")  # one worker launches DDP once for every job
def test_ranks_agree_under_ddp(ddp_launch):
    """2 CPU processes (gloo), strategy="ddp" with find_unused_parameters left False: each rank
    sees other batches, layer4 is held through epoch 0 and unfreezes at epoch 1 on both, and both
    end with the same bits."""
    reports = ddp_launch.reports(TUNED_DDP)
    assert [r["world_size"] for r in reports] == [2, 2]
    assert [r["global_step"] for r in reports] == [4, 4]  # 2 epochs of 2 batches per rank
    assert reports[0]["digest"] == reports[1]["digest"]
    for report in reports:  # layer4 held through epoch 0; layer3 and the rest: bit-identical
        assert report["moved"] == [["fc"], ["fc", "resnet.layer4"]]


@pytest.mark.parametrize(
    ("unfreeze", "message"),
    [
        ("{layer9: 1}", "has no submodule 'layer9'"),
        ("{layer4: -1}", "give a whole number >= 0"),
        ("{layer4: 1, layer4.1: 2}", "overlap"),
        ("{at_epoch: {layer4: 1}, warmup_steps: 2}", "unknown key 'warmup_steps'"),
        ("{at_epoch: {layer4: 1}, at_step: {layer3: 5}}", "one of `at_epoch:` and `at_step:`"),
        ("{at_step: {layer4: 1}, warmup_steps: 0.5}", "`warmup_steps` must be a whole number"),
        ("[layer4]", "'unfreeze' must be object"),
    ],
)
def test_errors(unfreeze, message, tmp_path):
    with pytest.raises(NncompileError, match=message):
        compile_text(spec_text(unfreeze), tmp_path)


def test_unfreeze_with_freeze_is_refused(tmp_path):
    text = spec_text("{layer4: 1}").replace("    unfreeze:", "    freeze: true\n    unfreeze:")
    with pytest.raises(NncompileError, match="`unfreeze` and `freeze` cannot be combined"):
        compile_text(text, tmp_path)


def test_lightning_cli_sets_the_schedule(folder, capsys):
    from pytorch_lightning.cli import LightningCLI

    _, module = compiled(spec_text("{at_epoch: {layer4: 1}, warmup_epochs: 1}"), folder)
    args = ["fit", "--model.unfreeze_resnet_layer4", "3", "--model.unfreeze_resnet_warmup", "0.5"]
    with pytest.raises(SystemExit):
        LightningCLI(module.TunedModule, args=[*args, "--print_config"], save_config_callback=None)
    printed = capsys.readouterr().out
    assert "unfreeze_resnet_layer4: 3" in printed and "unfreeze_resnet_warmup: 0.5" in printed
