"""An example user layer for specs/two_tower_features.yaml: squeeze-and-excitation channel gating.

The spec names it `op: user_layers.se_block.SEBlock`; nncompile imports it from the spec's folder at
compile time, and the generated file imports it by the same path, so run the generated file with
this folder (specs/) on PYTHONPATH.
"""

import torch
from torch import nn


class SEBlock(nn.Module):
    """Rescales each channel by a weight computed from the channel means (Hu et al., 2018)."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        self.fc1 = nn.Linear(channels, channels // reduction)
        self.fc2 = nn.Linear(channels // reduction, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = torch.sigmoid(self.fc2(torch.relu(self.fc1(x.mean(dim=(2, 3))))))
        return x * weights[:, :, None, None]
