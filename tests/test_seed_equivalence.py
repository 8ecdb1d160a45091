"""The compiled seed example 1 equals a correct hand-written version: same parameters, and with the
same weights copied in, the same outputs."""

import importlib.util

import torch
import torchvision
from conftest import ROOT
from torch import nn


class HandWrittenResNet(nn.Module):
    """The seed article's example 1 with its bug fixed: read fc.in_features before replacing fc."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.resnet = torchvision.models.resnet18(weights=None)
        in_features = self.resnet.fc.in_features
        self.resnet.fc = nn.Identity()
        self.fc1 = nn.Linear(in_features, 512)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(512, num_classes)

    def forward(self, x):
        return self.fc2(self.relu(self.fc1(self.resnet(x))))


def load_generated(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "generated" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_seed1_matches_hand_written():
    generated = load_generated("seed1_resnet_head").CustomResNet(pretrained=False).eval()
    hand = HandWrittenResNet().eval()
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(generated) == count(hand) == 11_444_298
    generated.load_state_dict(hand.state_dict(), strict=True)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(generated(x), hand(x))
