"""The batch checks the generated file carries (their source is copied there): a batch of the
wrong form fails at once with what was expected and what came, not deep inside the model or,
worse, not at all (a target of the wrong shape broadcasts against the predictions silently)."""

from __future__ import annotations

import torch


def _expect(ok: bool, expected: str, value) -> None:
    """Raise `expected <expected>, got <what value is>` unless `ok`."""
    if not ok:
        got = type(value).__name__
        if isinstance(value, torch.Tensor):
            got = f"a tensor of shape {tuple(value.shape)} and dtype {value.dtype}"
        elif isinstance(value, dict):
            got = f"a dict with keys {sorted(value)}"
        raise ValueError(f"expected {expected}, got {got}")


def _checked_target(target, shape, dtype: torch.dtype, expected: str) -> torch.Tensor:
    """The target as `dtype`, once its shape is checked (it would broadcast silently)."""
    fits = isinstance(target, torch.Tensor) and target.shape == shape
    fits = fits and (dtype.is_floating_point or not target.is_floating_point())
    _expect(fits, f"a target of {expected}", target)
    return target.to(dtype)


def _named_inputs(inputs, names: tuple) -> dict[str, torch.Tensor]:
    """A batch's inputs as the model's keyword arguments (one tensor for a single input)."""
    if isinstance(inputs, torch.Tensor) and len(names) == 1:
        return {names[0]: inputs}
    named = isinstance(inputs, dict) and set(inputs) == set(names)
    _expect(named, f"inputs {names} (a dict, or one tensor for one input)", inputs)
    return inputs


def _unpacked(batch, names: tuple, target_names: tuple | None = None):
    """A batch `(inputs, target)` -> the model's keyword arguments, and the target."""
    pair = isinstance(batch, (list, tuple)) and len(batch) == 2
    _expect(pair, "batches (inputs, target)", batch)
    if target_names is not None:
        keys = isinstance(batch[1], dict) and set(batch[1]) == set(target_names)
        _expect(keys, f"the target as a dict with keys {target_names}", batch[1])
    return _named_inputs(batch[0], names), batch[1]
