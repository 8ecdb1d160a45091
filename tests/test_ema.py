"""EMA of the weights (`task: {ema: {decay: ...}}`): the module's own configure_callbacks gives a
plain Trainer Lightning's WeightAveraging. The averaged weights, recomputed here by hand from
the raw weights after every step, differ from the raw ones, give the logged validation loss,
end up in the module after training, and a checkpoint holds both: a run resumed from it ends
bit-identical to one run straight through."""

import warnings

import pytest
import pytorch_lightning as pl
import torch
from load_generated import compile_and_load, compile_text
from nncompile.errors import NncompileError
from task_helpers import batches
from task_helpers import trainer as quiet_trainer

SPEC = """\
nncompile: 1
name: Net
inputs:
  image: [3, 8, 8]
nodes:
  conv: {op: Conv2d, out_channels: 4, kernel_size: 3}
  relu: ReLU
  flat: Flatten
  fc: {op: Linear, out_features: 3}
task:
  kind: classification
  optimizer: {name: SGD, lr: 0.5}
  ema: {decay: 0.9}
"""


def image_batch(g, batch):
    return torch.randn(batch, 3, 8, 8, generator=g), torch.randint(0, 3, (batch,), generator=g)


class RawWeights(pl.Callback):
    """The weights being trained after every optimizer step."""

    def __init__(self):
        self.steps = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.steps.append({k: v.detach().clone() for k, v in pl_module.model.state_dict().items()})


def manual_ema(steps, decay):
    ema = {k: v.double() for k, v in steps[0].items()}  # the first update copies
    for state in steps[1:]:
        ema = {k: decay * ema[k] + (1 - decay) * state[k].double() for k in ema}
    return {k: v.float() for k, v in ema.items()}


def val_loss(model_cls, state, loader) -> float:
    model = model_cls()
    model.load_state_dict(state)
    with torch.no_grad():
        losses = [torch.nn.functional.cross_entropy(model(x), y) for x, y in loader]
    return float(torch.stack(losses).mean())  # equal batch sizes: the mean over samples


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    return compile_and_load(SPEC, tmp_path_factory.mktemp("ema"))


def test_validation_uses_the_averaged_weights(compiled):
    result, module = compiled
    assert "WeightAveraging(multi_avg_fn=get_ema_multi_avg_fn(self.hparams.ema_decay))" in result.source
    raw, val = RawWeights(), batches(image_batch, 2, seed=1)
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lightning = module.NetModule(ema_decay=0.8)  # the hyperparameter sets the decay
        trainer = quiet_trainer(max_epochs=1, callbacks=[raw], num_sanity_val_steps=0)
        trainer.fit(lightning, batches(image_batch, 6), val)
    assert len(raw.steps) == 6
    ema = manual_ema(raw.steps, 0.8)
    assert not torch.allclose(ema["fc.weight"], raw.steps[-1]["fc.weight"], atol=1e-3)
    logged = float(trainer.callback_metrics["val_loss"])
    assert logged == pytest.approx(val_loss(module.Net, ema, val), rel=1e-5)
    assert abs(logged - val_loss(module.Net, raw.steps[-1], val)) > 1e-3
    for key, value in lightning.model.state_dict().items():  # training ends on the average
        torch.testing.assert_close(value, ema[key], rtol=1e-5, atol=1e-6)


def test_checkpoint_holds_both_and_resumes_bit_identical(compiled, tmp_path):
    _, module = compiled
    raw = RawWeights()
    checkpoints = pl.callbacks.ModelCheckpoint(dirpath=tmp_path, filename="{epoch}", save_top_k=-1)
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        straight = module.NetModule()
        options = dict(max_epochs=2, num_sanity_val_steps=0)
        trainer = quiet_trainer(callbacks=[raw, checkpoints], enable_checkpointing=True, **options)
        trainer.fit(straight, batches(image_batch, 4), batches(image_batch, 1, seed=1))
        checkpoint = torch.load(tmp_path / "epoch=0.ckpt", weights_only=True)
        ema = manual_ema(raw.steps[:4], 0.9)
        for key, value in ema.items():
            torch.testing.assert_close(checkpoint["state_dict"][f"model.{key}"], value, rtol=1e-5, atol=1e-6)
            assert torch.equal(checkpoint["current_model_state"][f"model.{key}"], raw.steps[3][key])
        torch.manual_seed(1)
        resumed = module.NetModule()
        quiet_trainer(**options).fit(
            resumed,
            batches(image_batch, 4),
            batches(image_batch, 1, seed=1),
            ckpt_path=tmp_path / "epoch=0.ckpt",
        )
    for key, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key


@pytest.mark.parametrize(
    ("ema", "message"), [("{decay: 1.5}", "between 0 and 1"), ("{rate: 0.9}", "unknown key")]
)
def test_errors(ema, message, tmp_path):
    with pytest.raises(NncompileError, match=message):
        compile_text(SPEC.replace("{decay: 0.9}", ema), tmp_path)


def test_lightning_cli_sets_the_decay(compiled, capsys):
    from pytorch_lightning.cli import LightningCLI

    _, module = compiled
    with pytest.raises(SystemExit):
        LightningCLI(module.NetModule, args=["fit", "--model.ema_decay", "0.95", "--print_config"])
    assert "ema_decay: 0.95" in capsys.readouterr().out


def test_the_average_holds_the_adapters(tmp_path):
    """Adapters (LoRA) under EMA: the adapters are averaged like any weight, the frozen base stays."""
    text = SPEC.replace(
        "conv: {op: Conv2d, out_channels: 4, kernel_size: 3}",
        "conv: {op: Conv2d, out_channels: 4, kernel_size: 3, adapters: [{kind: lora, r: 2}]}",
    )
    _, module = compile_and_load(text, tmp_path)
    raw = RawWeights()
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lightning = module.NetModule()
        quiet_trainer(max_epochs=1, callbacks=[raw]).fit(lightning, batches(image_batch, 4))
    ema = manual_ema(raw.steps, 0.9)
    assert not torch.allclose(ema["conv.lora_B"], raw.steps[-1]["conv.lora_B"], atol=1e-4)
    for key, value in lightning.model.state_dict().items():
        torch.testing.assert_close(value, ema[key], rtol=1e-5, atol=1e-6)
    assert torch.equal(lightning.model.conv.weight, raw.steps[0]["conv.weight"])  # frozen
