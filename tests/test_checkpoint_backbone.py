"""`op: checkpoint`: the documented example (docs/examples/checkpoint_backbone) end to end: train
a base LightningModule, save it, compile a spec that loads its encoder as a frozen backbone with
new layers, fine-tune; the loaded weights equal the checkpoint's and stay fixed. Also a state
dict plus an nn.Module class, and the errors."""

import shutil
import sys
import warnings

import pytest
import torch
from conftest import ROOT
from load_generated import compile_text, load_source
from nncompile import compile_spec
from nncompile.errors import NncompileError
from task_helpers import trainer as quiet_trainer

EXAMPLE = ROOT / "docs" / "examples" / "checkpoint_backbone"


@pytest.fixture
def example(tmp_path, monkeypatch):
    """The example folder copied to tmp, importable, with base.ckpt trained and saved."""
    for name in ("base_model.py", "finetune.yaml"):
        shutil.copy(EXAMPLE / name, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    import base_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        base_model.train_base("base.ckpt")
    yield tmp_path
    sys.modules.pop("base_model", None)


def fit(lightning, steps: int):
    data = torch.utils.data.TensorDataset(
        torch.randn(4 * steps, 3, 32, 32), torch.randint(0, 5, (4 * steps,))
    )
    trainer = quiet_trainer(max_steps=steps)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(lightning, torch.utils.data.DataLoader(data, batch_size=4))
    return trainer


def test_fine_tune_a_lightning_checkpoint(example):
    result = compile_spec("finetune.yaml")
    assert "base_model.BaseNet.load_from_checkpoint(" in result.source
    assert "weights_only=True" in result.source  # restoring reads the checkpoint as data
    assert "import nncompile" not in result.source and "from nncompile" not in result.source  # standalone
    module = load_source(result.source, example)
    saved = torch.load("base.ckpt", weights_only=True)["state_dict"]
    torch.manual_seed(1)
    lightning = module.FineTunedModule()
    encoder = {f"encoder.{k}": v.clone() for k, v in lightning.model.encoder.state_dict().items()}
    assert encoder.keys() == {k for k in saved if k.startswith("encoder.")}
    assert all(torch.equal(v, saved[k]) for k, v in encoder.items())
    head_before = lightning.model.fc1.weight.clone()

    trainer = fit(lightning, 3)
    assert trainer.global_step == 3
    after = lightning.model.encoder.state_dict()
    assert all(torch.equal(after[k.removeprefix("encoder.")], v) for k, v in encoder.items())
    assert not torch.equal(lightning.model.fc1.weight, head_before)

    trainer.save_checkpoint("finetuned.ckpt")
    restored = module.FineTunedModule.load_from_checkpoint("finetuned.ckpt", weights_only=False)
    assert restored.hparams.pretrained is False  # the base checkpoint is not needed to restore
    image = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(restored.model.eval()(image), lightning.model.eval()(image))


def test_architecture_without_the_checkpoint(example):
    module = load_source(compile_spec("finetune.yaml").source, example)
    fresh = module.FineTuned(pretrained=False)
    assert list(fresh.state_dict()) == list(module.FineTuned().state_dict())


STATE_DICT_SPEC = """nncompile: 1
name: FromStateDict
inputs:
  image: [3, 32, 32]
nodes:
  encoder:
    op: checkpoint
    path: {path}
    class: base_model.BaseNet
    args: {{hidden: 16}}
{extra}  fc: {{op: Linear, out_features: 5}}
task: {{kind: classification}}
"""


def test_state_dict_with_an_nn_module_class(example):
    import base_model

    torch.manual_seed(2)
    net = torch.nn.Sequential(base_model.BaseNet().encoder)
    torch.save(net.state_dict(), "encoder.pt")
    text = (
        STATE_DICT_SPEC.format(path="encoder.pt", extra="")
        .replace("base_model.BaseNet", "torch.nn.Sequential")
        .replace("    args: {hidden: 16}\n", "")
    )
    with pytest.raises(NncompileError, match="missing keys"):
        compile_text(text, example)  # an empty Sequential has none of the keys
    (example / "encoders.py").write_text(
        "from torch import nn\n\nimport base_model\n\n\n"
        "class Encoder(nn.Sequential):\n"
        "    def __init__(self, hidden: int = 16):\n"
        "        super().__init__(base_model.BaseNet(hidden).encoder)\n"
    )
    result = compile_text(
        STATE_DICT_SPEC.format(path="encoder.pt", extra="    freeze: true\n").replace(
            "base_model.BaseNet", "encoders.Encoder"
        ),
        example,
    )
    assert '_weights_file(encoder_checkpoint, "encoder_checkpoint")' in result.source
    model = load_source(result.source, example).FromStateDict()
    assert all(torch.equal(model.encoder.state_dict()[k], v) for k, v in net.state_dict().items())
    assert not any(p.requires_grad for p in model.encoder.parameters())


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("base_model.BaseNet", "base_model.Missing"), "is not an nn.Module or LightningModule class"),
        (("base_model.BaseNet", "no_such_module.Net"), "cannot import no_such_module"),
        (("submodule: encoder", "submodule: encodr"), "did you mean 'encoder'"),
        (("path: base.ckpt", "path: other.ckpt"), "weights file 'other.ckpt' not found"),
        (("    class: base_model.BaseNet\n", ""), "checkpoint needs `class:`"),
    ],
)
def test_errors(example, edit, message):
    text = (example / "finetune.yaml").read_text().replace(*edit)
    with pytest.raises(NncompileError, match=message):
        compile_text(text, example)


def test_class_module_that_raises_on_import_is_a_located_error(example):
    (example / "exploding.py").write_text("raise RuntimeError('boom at import')\n")
    text = (example / "finetune.yaml").read_text().replace("base_model.BaseNet", "exploding.Net")
    with pytest.raises(NncompileError, match="cannot import exploding: boom at import") as err:
        compile_text(text, example)
    assert err.value.diagnostics[0].loc.line > 0


def test_class_module_is_found_next_to_the_spec(example, tmp_path_factory, monkeypatch):
    """As for user layers: the spec's folder is searched first, PYTHONPATH not needed."""
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(example)])
    monkeypatch.delitem(sys.modules, "base_model")
    spec = example / "next_to_it.yaml"
    spec.write_text((example / "finetune.yaml").read_text().replace("base.ckpt", str(example / "base.ckpt")))
    assert "base_model.BaseNet.load_from_checkpoint" in compile_spec(spec).source
