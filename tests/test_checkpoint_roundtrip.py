"""Checkpoints: hyperparameters are plain values, `load_from_checkpoint` restores a module whose
outputs are identical, and restoring a model built from pretrained weights downloads nothing."""

import pytest
import torch
from conftest import ROOT
from task_helpers import batches, load_generated, trainer
from test_tasks import CASES

PLAIN = (bool, int, float, str, type(None))


def lightning_class(module, name):
    return getattr(module, name)


def outputs_of(lm, inputs):
    lm.eval()
    with torch.no_grad():
        return lm.predict_step(inputs, 0)


def assert_same(a, b):
    pairs = [(a[k], b[k]) for k in a] if isinstance(a, dict) else [(a, b)]
    assert all(torch.equal(x, y) for x, y in pairs)


@pytest.mark.parametrize("name", ["task_multiclass", "task_multilabel", "task_multitask"])
def test_round_trip_gives_identical_outputs(name, tmp_path):
    make, cls_name, _ = CASES[name]
    module = load_generated(ROOT / "specs" / f"{name}.yaml", tmp_path)
    cls = lightning_class(module, cls_name)
    torch.manual_seed(0)
    lm = cls(lr=0.002)
    data = batches(make, 3)
    t = trainer(max_epochs=1)
    t.fit(lm, train_dataloaders=data)
    path = tmp_path / "model.ckpt"
    t.save_checkpoint(path)

    checkpoint = torch.load(path, weights_only=True)  # plain values load with weights_only
    assert checkpoint["hyper_parameters"] == dict(cls().hparams) | {"lr": 0.002}
    for value in checkpoint["hyper_parameters"].values():  # tuples of numbers for lists (class weights)
        assert isinstance(value, PLAIN) or all(isinstance(v, float) for v in value)

    torch.manual_seed(1)  # a different initialisation: everything must come from the file
    restored = cls.load_from_checkpoint(path)
    assert restored.hparams.lr == 0.002
    inputs = next(iter(data))[0]
    assert_same(outputs_of(lm, inputs), outputs_of(restored, inputs))
    for key, value in lm.state_dict().items():
        assert torch.equal(value, restored.state_dict()[key]), key


def test_restoring_a_pretrained_model_downloads_nothing(tmp_path, monkeypatch):
    pytest.importorskip("torchvision")
    import torchvision.models._api as weights_api

    module = load_generated(ROOT / "specs" / "seed1_resnet_head.yaml", tmp_path)
    lm = module.CustomResNetModule(pretrained=False)
    loader = torch.utils.data.DataLoader(
        [(torch.randn(2, 3, 224, 224), torch.tensor([0, 1]))], batch_size=None
    )
    t = trainer(max_steps=1)
    t.fit(lm, train_dataloaders=loader)
    path = tmp_path / "model.ckpt"
    t.save_checkpoint(path)
    assert torch.load(path, weights_only=True)["hyper_parameters"] == {"lr": 0.001, "pretrained": False}

    def no_download(*args, **kwargs):
        raise AssertionError("restoring a checkpoint tried to download weights")

    monkeypatch.setattr(weights_api, "load_state_dict_from_url", no_download)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    with pytest.raises(AssertionError, match="tried to download"):  # the guard does catch downloads
        module.CustomResNet(pretrained=True)
    restored = module.CustomResNetModule.load_from_checkpoint(path)
    x = torch.randn(2, 3, 224, 224)
    assert_same(outputs_of(lm, x), outputs_of(restored, x))
