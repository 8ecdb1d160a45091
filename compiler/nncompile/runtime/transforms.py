"""The evaluation preprocessing a generated LightningModule's `transforms()` returns: the
pipeline the pretrained weights' own transforms run, built with torchvision.transforms.v2."""

import torch
from torchvision.transforms import v2


def _eval_transforms(resize, crop, mode, scale, mean=None, std=None) -> v2.Compose:
    """Resize (`resize`: [shorter side] or [height, width]; `mode`: the interpolation's name),
    centre crop, a float tensor (`scale`: integer pixels divided by their maximum, as
    torchvision's presets do), and normalisation when `mean` is given (None where the model
    normalises its input itself)."""
    steps = []
    if resize is not None:
        mode = v2.InterpolationMode(mode)
        steps.append(v2.Resize(resize, interpolation=mode, antialias=True))
    if crop is not None:
        steps.append(v2.CenterCrop(crop))
    steps += [v2.ToImage(), v2.ToDtype(torch.float32, scale=scale)]
    if mean is not None:
        steps.append(v2.Normalize(mean, std))
    return v2.Compose(steps)
