"""A function the generated file carries (its source is copied there) and the compiler runs on the
meta device, so the stem nncompile sizes is the stem the generated model builds."""

import torch
from torch import nn


def _adapt_stem(conv: nn.Conv2d, in_channels: int) -> nn.Conv2d:
    """`conv` rebuilt for `in_channels` input channels, keeping its (pretrained) filters.

    timm's rule (adapt_input_conv): one channel sums the RGB filters; N channels repeat
    them and scale them by 3/N, so the activations keep their pretrained scale.
    """
    weight = conv.weight.detach()
    channels = weight.shape[1]
    if in_channels == 1:
        weight = weight.sum(dim=1, keepdim=True)
    else:
        repeat = -(-in_channels // channels)
        weight = weight.repeat(1, repeat, 1, 1)[:, :in_channels]
        weight = weight * (channels / in_channels)
    new = nn.Conv2d(
        in_channels,
        conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=conv.bias is not None,
        padding_mode=conv.padding_mode,
    )
    with torch.no_grad():
        new.weight.copy_(weight)
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    return new


def _stem_by_band(conv: nn.Conv2d, sources: list, new_bands: str) -> nn.Conv2d:
    """`conv` rebuilt for one input channel per entry of `sources`: an int is the pretrained
    input channel whose filter slice the channel gets unchanged; None is a band the weights never
    saw, which starts as the mean of the pretrained slices (`mean`), at zero (`zero`), or as the
    new layer's own random initialisation (`random`)."""
    weight = conv.weight.detach()
    new = nn.Conv2d(
        len(sources),
        conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=conv.bias is not None,
        padding_mode=conv.padding_mode,
    )
    with torch.no_grad():
        for channel, source in enumerate(sources):
            if source is not None:
                new.weight[:, channel] = weight[:, source]
            elif new_bands == "mean":
                new.weight[:, channel] = weight.mean(dim=1)
            elif new_bands == "zero":
                new.weight[:, channel] = 0
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    return new
