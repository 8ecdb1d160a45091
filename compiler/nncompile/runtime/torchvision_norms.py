"""Code the generated file carries (its source is copied there), apart from norms.py because it
needs torchvision, which a spec of torch.nn layers never imports.

`_frozen_batchnorm` is also run by the compiler on the meta device: torchvision's detection
builders use FrozenBatchNorm2d instead of BatchNorm2d in the backbone only when given weights, so
the generated model swaps them itself when built without them, and its layers and state-dict keys
never depend on `pretrained`.
"""

import torchvision
from torch import nn


def _frozen_batchnorm(module: nn.Module, eps: float) -> None:
    """Swap every BatchNorm2d in `module` for torchvision's FrozenBatchNorm2d (fixed
    statistics and affine parameters, held as buffers), as built for pretrained weights."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = torchvision.ops.FrozenBatchNorm2d(child.num_features, eps=eps)
            setattr(module, name, frozen)
        else:
            _frozen_batchnorm(child, eps)
