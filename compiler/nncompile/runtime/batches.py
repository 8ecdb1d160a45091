"""The batch checks the generated file carries (their source is copied there): a batch of the
wrong form fails at once with what was expected and what came, not deep inside the model or,
worse, not at all (a target of the wrong shape broadcasts against the predictions silently)."""

from __future__ import annotations

import torch


def _checked(value, ok: bool, expected: str):
    """`value` if `ok`, else a ValueError: expected <expected>, got <what value is>."""
    if not ok:
        got = type(value).__name__ if value is not None else "None"
        if isinstance(value, torch.Tensor):
            got = f"a tensor of shape {tuple(value.shape)} and dtype {value.dtype}"
        elif isinstance(value, dict):
            got = f"a dict with keys {sorted(value)}"
        raise ValueError(f"expected {expected}, got {got}")
    return value


def _unpacked(batch, names: tuple):
    """A batch `(inputs, target)`, or inputs alone -> the model's kwargs, the target."""
    pair = isinstance(batch, (list, tuple)) and len(batch) == 2
    inputs, target = batch if pair else (batch, None)
    if isinstance(inputs, torch.Tensor) and len(names) == 1:
        inputs = {names[0]: inputs}
    named = isinstance(inputs, dict) and set(inputs) == set(names)
    return _checked(inputs, named, f"batches (inputs, target), inputs {names}"), target


def _target_dict(target, names: tuple) -> dict:
    """The target of several heads, checked: a dict with one entry per head's output."""
    keys = isinstance(target, dict) and set(target) == set(names)
    return _checked(target, keys, f"the target as a dict with keys {names}")


def _checked_target(target, shape, dtype: torch.dtype, expected: str) -> torch.Tensor:
    """The target as `dtype`, once its shape is checked (it would broadcast silently)."""
    fits = isinstance(target, torch.Tensor) and target.shape == shape
    fits = fits and (dtype.is_floating_point or not target.is_floating_point())
    return _checked(target, fits, f"a target of {expected}").to(dtype)
