"""specs/video_frame_encoder.yaml, compiled into generated/, equals a hand-written per-frame video
encoder: a block holding a pretrained ResNet-18 and an MLP, run on every frame. Same parameters,
the same state-dict keys (loaded strictly both ways), equal outputs, the backbone's weights read
from the file torchvision caches them in, and `pretrained=False` building without that file."""

import importlib.util
import pickle

import pytest
import torch
import torchvision
from backbone_helpers import cache_weights, random_batchnorm
from conftest import ROOT
from torch import nn

WEIGHTS = torchvision.models.ResNet18_Weights.DEFAULT


class FrameEncoder(nn.Module):
    """One frame -> 128 features: ResNet-18 without its classifier, then a two-layer MLP."""

    def __init__(self, pretrained: bool = True):
        super().__init__()
        self.backbone = torchvision.models.resnet18(weights=WEIGHTS if pretrained else None)
        self.backbone.fc = nn.Identity()
        self.fc1 = nn.Linear(512, 256)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(256, 128)

    def forward(self, frame):
        return self.fc2(self.act(self.fc1(self.backbone(frame))))


class VideoClassifier(nn.Module):
    """(B, T, 3, H, W) -> 10 logits: every frame encoded, the features averaged over time."""

    def __init__(self, pretrained: bool = True):
        super().__init__()
        self.encoder = FrameEncoder(pretrained)
        self.head = nn.Linear(128, 10)

    def forward(self, frames):
        batch, items = frames.shape[:2]
        features = self.encoder(frames.flatten(0, 1)).view(batch, items, -1)
        return self.head(features.mean(dim=1))


def generated_module():
    path = ROOT / "generated" / "video_frame_encoder.py"
    spec = importlib.util.spec_from_file_location("video_frame_encoder", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def count(model: nn.Module, trainable: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable)


def test_the_generated_encoder_equals_the_hand_written_one(torch_home):
    torch.manual_seed(0)
    weights = cache_weights(torch_home, WEIGHTS, torchvision.models.resnet18())  # no download
    module = generated_module()
    generated = module.VideoFrameEncoder().eval()  # pretrained: the backbone reads the cached file
    hand = VideoClassifier().eval()
    assert torch.equal(generated.encoder.backbone.conv1.weight, weights["conv1.weight"])
    assert torch.equal(hand.encoder.backbone.layer4[1].conv2.weight, weights["layer4.1.conv2.weight"])
    assert count(generated) == count(hand) == 11_342_026
    random_batchnorm(generated)
    hand.load_state_dict(generated.state_dict(), strict=True)
    generated.load_state_dict(hand.state_dict(), strict=True)
    frames = torch.randn(2, 5, 3, 112, 112)  # 5 frames: the spec's T is symbolic
    with torch.no_grad():
        assert torch.allclose(generated(frames), hand(frames), atol=1e-5)


def test_the_header_counts_the_blocks_pretrained_and_frozen_weights():
    hand = VideoClassifier(pretrained=False)
    backbone = hand.encoder.backbone
    frozen = sum(count(m) for m in (backbone.conv1, backbone.bn1, backbone.layer1))
    total, pretrained = count(hand), count(backbone)
    header = (ROOT / "generated" / "video_frame_encoder.py").read_text()
    assert (
        f"Parameters: {total:,} ({pretrained:,} pretrained, {total - pretrained:,} new;"
        f" {frozen:,} frozen, {total - frozen:,} trainable)." in header
    )
    generated = generated_module().VideoFrameEncoder(pretrained=False)
    assert count(generated, trainable=True) == total - frozen
    assert not any(p.requires_grad for p in generated.encoder.backbone.layer1.parameters())
    assert all(p.requires_grad for p in generated.encoder.backbone.layer2.parameters())
    generated.train()  # the frozen stage's BatchNorm statistics stay fixed in training mode too
    before = generated.encoder.backbone.layer1[0].bn1.running_mean.clone()
    generated(torch.randn(2, 2, 3, 64, 64))
    assert torch.equal(generated.encoder.backbone.layer1[0].bn1.running_mean, before)
    assert not torch.equal(generated.encoder.backbone.layer2[0].bn1.running_mean, torch.zeros(128))


def test_pretrained_false_builds_without_the_weights_file(torch_home):
    file = torch_home / "hub" / "checkpoints" / WEIGHTS.url.rpartition("/")[2]
    file.write_bytes(b"not a state dict")  # reading it fails; a download is not tried (the file is there)
    module = generated_module()
    assert count(module.VideoFrameEncoder(pretrained=False)) == 11_342_026
    with pytest.raises(pickle.UnpicklingError):  # with pretrained weights, the block's class reads it
        module.VideoFrameEncoder()
