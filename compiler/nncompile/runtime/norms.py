"""Code the generated file carries (its source is copied there).

`FrozenBatchNorm` and `_freeze_batchnorm_stats` keep the BatchNorm layers of frozen parts fixed:
the fixed statistics live in the layer itself, so no `train()` call (a fine-tuning callback's, a
user's on a submodule, Lightning's) can put them back into training mode.
"""

import torch
from torch import nn


class FrozenBatchNorm(nn.Module):
    """A BatchNorm layer (1d, 2d or 3d) whose statistics never move, whoever calls train()."""

    def __init__(self, norm: nn.modules.batchnorm._BatchNorm) -> None:
        super().__init__()
        self.eps, self.weight, self.bias = norm.eps, norm.weight, norm.bias
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            self.register_buffer(name, getattr(norm, name))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stats = self.running_mean, self.running_var, self.weight, self.bias
        return nn.functional.batch_norm(x, *stats, False, 0.0, self.eps)


def _freeze_batchnorm_stats(module: nn.Module, parts: tuple[str, ...]) -> None:
    """Each BatchNorm layer under the paths `parts` of `module` ("": all) frozen."""
    kinds = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)
    for name, child in list(module.named_modules()):
        inside = any(p == "" or name == p or name.startswith(p + ".") for p in parts)
        if inside and type(child) in kinds and child.running_mean is not None:
            module.set_submodule(name, FrozenBatchNorm(child))
