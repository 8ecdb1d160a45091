"""The three example models of issue 14, each against a hand-written reference: a Siamese network
whose two branches share one ResNet-18 (`shares:`), a CNN+LSTM video classifier whose CNN runs on
every frame (`per_item:`), and a CNN with torchvision's SqueezeExcitation by import path. Each has
the reference's parameter count, gives the reference's outputs once the reference loads its state
dict, and trains 2 steps."""

import math

import torch
import torchvision
from backbone_helpers import random_batchnorm
from conftest import ROOT
from task_helpers import batches, load_generated, trainer
from torch import nn


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def same_outputs(generated: nn.Module, reference: nn.Module, **inputs) -> None:
    random_batchnorm(generated)
    reference.load_state_dict(generated.state_dict())  # strict: the same parameters by name
    generated.eval(), reference.eval()
    with torch.no_grad():
        assert torch.allclose(generated(**inputs), reference(**inputs), atol=1e-5)


def train_two_steps(lm, make) -> None:
    t = trainer(max_steps=2)
    t.fit(lm, train_dataloaders=batches(make, 2))
    assert t.global_step == 2
    assert math.isfinite(float(t.callback_metrics["train_loss"]))


class SiameseReference(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = torchvision.models.resnet18(weights=None)
        self.backbone.fc = nn.Identity()
        self.fc1 = nn.Linear(3 * 512, 128)
        self.same = nn.Linear(128, 1)

    def forward(self, left, right):
        a, b = self.backbone(left), self.backbone(right)
        both = torch.cat([a, b, (a - b) * (a - b)], dim=1)
        return self.same(torch.relu(self.fc1(both)))


def test_siamese_branches_share_one_backbone(tmp_path):
    module = load_generated(ROOT / "specs" / "siamese_shared_backbone.yaml", tmp_path)
    model, reference = module.SiameseResNet(), SiameseReference()
    assert count(model) == count(reference) == 11_373_377  # one ResNet-18, not two
    assert count(model) < count(torchvision.models.resnet18(weights=None)) * 2
    left, right = torch.randn(2, 3, 64, 64), torch.randn(2, 3, 64, 64)
    same_outputs(model, reference, left=left, right=right)

    def pairs(g, n):
        inputs = {
            "left": torch.randn(n, 3, 64, 64, generator=g),
            "right": torch.randn(n, 3, 64, 64, generator=g),
        }
        return inputs, torch.randint(0, 2, (n,), generator=g).float()

    lm = module.SiameseResNetModule()
    before = lm.model.backbone.conv1.weight.detach().clone()
    train_two_steps(lm, pairs)
    assert not torch.equal(before, lm.model.backbone.conv1.weight)


class FrameEncoderReference(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16)
        self.conv2, self.bn2 = nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32)

    def forward(self, x):
        x = nn.functional.max_pool2d(torch.relu(self.bn1(self.conv1(x))), 2)
        return torch.relu(self.bn2(self.conv2(x))).mean(dim=(2, 3))


class VideoReference(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = FrameEncoderReference()
        self.lstm = nn.LSTM(32, 64, batch_first=True)
        self.head = nn.Linear(64, 5)

    def forward(self, frames):
        features = torch.stack([self.encoder(frames[:, t]) for t in range(frames.shape[1])], dim=1)
        return self.head(self.lstm(features)[0][:, -1])


def test_video_classifier_runs_its_cnn_on_every_frame(tmp_path):
    module = load_generated(ROOT / "specs" / "video_cnn_lstm.yaml", tmp_path)
    model, reference = module.VideoClassifier(), VideoReference()
    assert count(model) == count(reference)
    for frames in (8, 5):  # T is symbolic: any number of frames
        same_outputs(model, reference, frames=torch.randn(3, frames, 3, 32, 32))

    def clips(g, n):
        return torch.randn(n, 8, 3, 32, 32, generator=g), torch.randint(0, 5, (n,), generator=g)

    train_two_steps(module.VideoClassifierModule(), clips)


class SqueezeExciteReference(nn.Module):
    def __init__(self):
        super().__init__()
        se = torchvision.ops.SqueezeExcitation
        self.conv1, self.bn1, self.se1 = nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), se(32, 8)
        self.conv2, self.bn2, self.se2 = nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), se(64, 16)
        self.head = nn.Linear(64, 10)

    def forward(self, image):
        x = nn.functional.max_pool2d(self.se1(torch.relu(self.bn1(self.conv1(image)))), 2)
        x = self.se2(torch.relu(self.bn2(self.conv2(x))))
        return self.head(x.mean(dim=(2, 3)))


def test_torchvision_ops_layer_by_import_path(tmp_path):
    module = load_generated(ROOT / "specs" / "squeeze_excitation_ops.yaml", tmp_path)
    model, reference = module.SqueezeExciteNet(), SqueezeExciteReference()
    assert isinstance(model.se1, torchvision.ops.SqueezeExcitation)
    assert count(model) == count(reference)
    same_outputs(model, reference, image=torch.randn(2, 3, 32, 32))

    def images(g, n):
        return torch.randn(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g)

    train_two_steps(module.SqueezeExciteNetModule(), images)
