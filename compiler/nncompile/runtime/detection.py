"""Code the generated file of a detection task carries (its source is copied there)."""

from __future__ import annotations

import torch


def _map_values(values: dict, prefix: str) -> dict[str, torch.Tensor]:
    """The numbers MeanAveragePrecision computes (map, map_50, ..., mar_100), per-class ones aside."""
    return {
        prefix + name: value
        for name, value in values.items()
        if name.startswith(("map", "mar")) and not name.endswith("_per_class")
    }
