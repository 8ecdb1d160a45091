"""Hand-written equivalents of the benchmarked specs, written the way a person would write them.

Attribute names follow the spec's node ids where that is natural; `copy_weights` copies the
generated model's weights in by position, so both sides compute the same function.
"""

from __future__ import annotations

from collections import OrderedDict

import pytorch_lightning as pl
import torch
import torchmetrics
import torchvision
from torch import nn


class ResNetHead(nn.Module):
    """specs/seed1_resnet_head.yaml: ResNet-18 without its classifier, then a two-layer head."""

    def __init__(self) -> None:
        super().__init__()
        self.resnet = torchvision.models.resnet18(weights=None)
        self.resnet.fc = nn.Identity()
        self.fc1 = nn.Linear(512, 512)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(512, 10)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.relu(self.fc1(self.resnet(image))))


class ConvBeforeVGG(nn.Module):
    """specs/seed2_conv_before_vgg.yaml: a conv block projected back to 3 channels, VGG-16."""

    def __init__(self) -> None:
        super().__init__()
        self.conv_add = nn.Conv2d(3, 64, kernel_size=3, padding=1)
        self.relu_add = nn.ReLU()
        self.project = nn.Conv2d(64, 3, kernel_size=1)
        self.vgg = torchvision.models.vgg16(weights=None)
        self.vgg.classifier[6] = nn.Identity()
        self.classifier = nn.Linear(4096, 10)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.project(self.relu_add(self.conv_add(image)))
        return self.classifier(self.vgg(x))


class AlexNetFeatures(nn.Module):
    """specs/seed3_alexnet_features.yaml: AlexNet's feature maps pooled, then a two-layer head."""

    def __init__(self) -> None:
        super().__init__()
        self.features = torchvision.models.alexnet(weights=None).features
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(256, 128)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(128, 10)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.flatten(self.pool(self.features(image)))
        return self.fc2(self.relu(self.fc1(x)))


def mlp_chain(layers: int = 64, width: int = 256) -> nn.Sequential:
    """bench/specs/mlp_chain64.yaml as an nn.Sequential: Linear layers with a ReLU between each two."""
    modules: OrderedDict[str, nn.Module] = OrderedDict()
    for i in range(layers):
        modules[f"fc{i}"] = nn.Linear(width, width)
        if i < layers - 1:
            modules[f"act{i}"] = nn.ReLU()
    return nn.Sequential(modules)


def copy_weights(source: nn.Module, target: nn.Module) -> None:
    """Copy every parameter and buffer of `source` into `target`, matched by position and shape."""
    src, dst = source.state_dict(), target.state_dict()
    if len(src) != len(dst):
        raise ValueError(f"{len(src)} tensors in the source, {len(dst)} in the target")
    for (src_key, value), (dst_key, slot) in zip(src.items(), dst.items(), strict=True):
        if value.shape != slot.shape:
            raise ValueError(f"{src_key} {tuple(value.shape)} does not fit {dst_key} {tuple(slot.shape)}")
    target.load_state_dict(dict(zip(dst, src.values(), strict=True)))


class TabularExpertModule(pl.LightningModule):
    """specs/tabular_mlp.yaml's training, as a Lightning expert writes it around the same
    nn.Module: the loss logged every step (unsynced), MAE updated every step and logged per epoch."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.loss_fn = nn.SmoothL1Loss()
        self.train_mae = torchmetrics.regression.MeanAbsoluteError()

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.model(features)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        features, target = batch
        preds = self(features)
        loss = self.loss_fn(preds, target)
        self.log("train_loss", loss, prog_bar=True)
        self.train_mae.update(preds, target)
        self.log("train_mae", self.train_mae, on_step=False, on_epoch=True)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=3.0e-4, weight_decay=1.0e-5)
