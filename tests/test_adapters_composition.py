"""LoRA adapters with the other recipes, trained for real: gradual unfreezing (the adapters train
from the start, the base weights an `unfreeze:` part names from its epoch, with their BatchNorm
statistics held until then; the optimizer's groups; a resumed run ends bit-identical), layer-wise
decay across unfreezing parts, and a Lightning checkpoint used as the backbone (`op: checkpoint`):
only its adapters train, and the fine-tuned module's own checkpoint restores with
pretrained=False, as does its adapter-only state dict into a model built from the base checkpoint;
and the located error for `unfreeze:`/`trainable:` naming what an adapter added.
(EMA: tests/test_ema.py; `shares:` and layer-wise decay alone: tests/test_adapters.py.)"""

import functools
import shutil
import sys
import warnings

import pytest
import pytorch_lightning as pl
import torch
from conftest import ROOT
from load_generated import compile_and_load, compile_text
from nncompile.errors import NncompileError
from nncompile.tools.training_plan import training_plan
from task_helpers import batches
from task_helpers import trainer as quiet_trainer

ADAPTERS = '    adapters: [{kind: lora, target: ["layer3.*.conv2", "layer4.*.conv2"], r: 2}]\n'


def spec_text(tuning: str) -> str:
    """A ResNet-18 (random weights, 32x32 images) with adapters on layer3's and layer4's conv2."""
    return (
        "nncompile: 1\nname: Tuned\ninputs:\n  image: [3, 32, 32]\nnodes:\n"
        "  resnet:\n    op: torchvision.resnet18\n    weights: null\n    head: remove\n"
        + ADAPTERS
        + tuning
        + "  fc: {op: Linear, out_features: 5}\n"
        "task:\n  kind: classification\n  optimizer: {name: AdamW, lr: 1.0e-2, weight_decay: 0.1}\n"
    )


@functools.cache
def compiled(text: str, folder):
    return compile_and_load(text, folder)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("adapters")


def image_batch(g, batch):
    return torch.randn(batch, 3, 32, 32, generator=g), torch.randint(0, 5, (batch,), generator=g)


class Snapshots(pl.Callback):
    def __init__(self):
        self.states = []

    def on_train_epoch_end(self, trainer, pl_module):
        self.states.append({k: v.clone() for k, v in pl_module.model.state_dict().items()})


def fit(lightning, epochs: int, *callbacks, ckpt_path=None, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = quiet_trainer(max_epochs=epochs, callbacks=list(callbacks), **options)
        trainer.fit(lightning, batches(image_batch, 3), ckpt_path=ckpt_path)
    return trainer


def moved(before: dict, after: dict) -> set[str]:
    return {k for k in before if not torch.equal(before[k], after[k])}


def test_unfreezing_trains_the_base_weights_from_their_epoch_and_the_adapters_throughout(folder):
    result, module = compiled(spec_text("    unfreeze: {layer4: 1}\n"), folder)
    torch.manual_seed(0)
    lightning = module.TunedModule()
    initial = {k: v.clone() for k, v in lightning.model.state_dict().items()}
    snapshots = Snapshots()
    trainer = fit(lightning, 2, snapshots)
    epoch0, epoch1 = snapshots.states
    adapters = {k for k in initial if ".lora_" in k}
    assert len(adapters) == 8
    assert moved(initial, epoch0) == adapters | {"fc.weight", "fc.bias"}  # layer4's statistics too
    layer4 = {k for k in initial if k.startswith("resnet.layer4.") and ".lora_" not in k}
    assert "resnet.layer4.0.bn1.running_mean" in layer4 and "resnet.layer4.1.conv2.weight" in layer4
    assert moved(epoch0, epoch1) == adapters | {"fc.weight", "fc.bias"} | layer4
    groups = sorted(
        (g.get("unfreeze") or "", len(g["params"]), g["weight_decay"] == 0.0)
        for g in trainer.optimizers[0].param_groups
    )
    layer4_params = len(list(lightning.model.resnet.layer4.parameters())) - 4  # less its adapters
    assert groups == [
        ("", 1, True),
        ("", 1 + 8, False),  # fc.weight and the 8 adapters, layer4's included
        ("resnet.layer4", 5, False),  # its convolutions' base weights
        ("resnet.layer4", layer4_params - 5, True),
    ]
    rows = {(row.unfreeze, row.weight_decay): row.members for row in training_plan(result).rows}
    assert "resnet.layer4.1.conv2.lora_A" in rows[(None, 0.1)]  # `nncompile plan` agrees
    assert len(rows[("resnet.layer4", 0.1)]) == 5


def test_a_run_resumed_before_the_part_unfreezes_ends_bit_identical(folder, tmp_path):
    _, module = compiled(spec_text("    unfreeze: {at_epoch: {layer4: 1}, warmup_epochs: 1}\n"), folder)
    checkpoints = pl.callbacks.ModelCheckpoint(dirpath=tmp_path, filename="{epoch}", save_top_k=-1)
    torch.manual_seed(0)
    straight = module.TunedModule()
    fit(straight, 2, checkpoints, enable_checkpointing=True)
    torch.manual_seed(1)  # other initial weights and adapters: the checkpoint must restore them
    resumed = module.TunedModule()
    assert fit(resumed, 2, ckpt_path=tmp_path / "epoch=0.ckpt").global_step == 6
    final, again = straight.model.state_dict(), resumed.model.state_dict()
    for key in final:
        assert torch.equal(final[key], again[key]), key


def test_an_adapter_in_an_unfreezing_part_keeps_its_layer_depth(folder):
    text = spec_text("    lr_decay: 0.5\n    unfreeze: {layer4: 1}\n")
    _, module = compiled(text, folder)
    lightning = module.TunedModule()
    groups = lightning.configure_optimizers().param_groups
    resnet = lightning.model.resnet

    def group_of(param):
        (found,) = [(g.get("unfreeze"), g["lr"]) for g in groups if any(p is param for p in g["params"])]
        return found

    assert group_of(resnet.layer4[0].conv2.lora_A) == (None, 1.0e-2 * 0.5)
    assert group_of(resnet.layer4[0].conv2.weight) == ("resnet.layer4", 1.0e-2 * 0.5)
    assert group_of(resnet.layer3[1].conv2.lora_B) == (None, 1.0e-2 * 0.25)
    assert not resnet.layer3[1].conv2.weight.requires_grad  # frozen for good


@pytest.mark.parametrize(
    ("tuning", "path", "col"),
    [
        ("    unfreeze: {%s: 1}\n", "layer4.0.conv2.lora_dropout", 16),
        ("    trainable: [%s]\n", "layer4.0.conv2.lora_A", 17),
    ],
)
def test_a_part_of_an_adapter_cannot_be_named(tuning, path, col, tmp_path):
    """What the adapters add trains from the start and is added after the node is frozen: a
    freezing line naming it would fail when the model is built."""
    with pytest.raises(NncompileError) as info:
        compile_text(spec_text(tuning % path), tmp_path)
    found = info.value.diagnostics[0]
    assert found.message == f"node 'resnet' has no submodule '{path}'"
    assert (found.loc.line, found.loc.col) == (11, col)
    assert "layer4.0.conv2" in found.hint


# --- a Lightning checkpoint as the backbone -----------------------------------------------------------

CHECKPOINT_SPEC = """\
nncompile: 1
name: FineTuned
inputs:
  image: [3, 32, 32]
nodes:
  encoder:
    op: checkpoint
    path: base.ckpt
    class: base_model.BaseNet
    submodule: encoder
    adapters: [{kind: lora, target: "0", r: 2}]
  fc: {op: Linear, out_features: 5}
task:
  kind: classification
  optimizer: {name: AdamW, lr: 1.0e-2}
"""


@pytest.fixture
def base_checkpoint(tmp_path, monkeypatch):
    """docs/examples/checkpoint_backbone's base model, importable, trained and saved as base.ckpt."""
    shutil.copy(ROOT / "docs" / "examples" / "checkpoint_backbone" / "base_model.py", tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    import base_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        base_model.train_base("base.ckpt")
    yield tmp_path
    sys.modules.pop("base_model", None)


def test_a_checkpoint_backbone_trains_only_its_adapters_and_restores_without_it(base_checkpoint):
    result, module = compile_and_load(CHECKPOINT_SPEC, base_checkpoint)
    torch.manual_seed(0)
    lightning = module.FineTunedModule()
    trained = {n for n, p in lightning.model.named_parameters() if p.requires_grad}
    assert trained == {"encoder.0.lora_A", "encoder.0.lora_B", "fc.weight", "fc.bias"}
    saved = torch.load("base.ckpt", weights_only=True)["state_dict"]
    initial = {k: v.clone() for k, v in lightning.model.state_dict().items()}
    assert all(torch.equal(initial[k], v) for k, v in saved.items() if k.startswith("encoder."))
    trainer = fit(lightning, 1)
    assert moved(initial, lightning.model.state_dict()) == trained  # BatchNorm statistics fixed

    trainer.save_checkpoint("finetuned.ckpt")
    torch.manual_seed(1)
    restored = module.FineTunedModule.load_from_checkpoint("finetuned.ckpt", weights_only=False)
    assert restored.hparams.pretrained is False  # built without reading base.ckpt
    image = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = lightning.model.eval()(image)
        assert torch.equal(restored.model.eval()(image), expected)
        fresh = module.FineTuned().eval()  # the base checkpoint's weights, new adapters and head
        assert not torch.allclose(fresh(image), expected)
        fresh.load_adapter_state_dict(lightning.model.adapter_state_dict())
        assert torch.equal(fresh(image), expected)
