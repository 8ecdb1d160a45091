"""The LightningModule's hyperparameters: every number of `task:` a user would tune (and each
node's `lr`/`lr_mult`) becomes a plain argument of its `__init__`, with the spec's value as its
default, so `save_hyperparameters()` records it (hparams.yaml, checkpoints), LightningCLI sets it
(`--model.weight_decay 0.05`) and `load_from_checkpoint` restores it.

A name is the value's place in the spec, joined by `_`: `weight_decay` (optimizer), `scheduler_gamma`,
`loss_label_smoothing` (`<head>_loss_...` per multitask head), `<head>_weight`, `lr_<node>`,
`lr_mult_<node>`. Lists become tuples; integers given where the class takes a float become floats.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field

from ..errors import SpecError
from ..pyfmt import identifier, literal


@dataclass(frozen=True)
class HParam:
    name: str
    annotation: str
    default: str  # the default's code

    def param(self) -> str:
        return f"{self.name}: {self.annotation} = {self.default}"


@dataclass
class HParams:
    """The hyperparameters in the order they are added (the `__init__` signature's order)."""

    items: list[HParam] = field(default_factory=list)

    def add(
        self, name: str, value, loc, param: inspect.Parameter | None = None, code: str | None = None
    ) -> str:
        """Register `name` with the spec's `value` (`code`: its default written otherwise);
        returns the expression that reads it."""
        if any(h.name == name for h in self.items):
            raise SpecError(
                f"two settings would both be the hyperparameter '{name}'",
                loc,
                hint="rename a node, so that `lr_<node>` and `lr_mult_<node>` names differ",
            )
        annotation, value = _annotation(value, param)
        self.items.append(HParam(identifier(name), annotation, code or literal(value)))
        return f"self.hparams.{name}"

    def params(self) -> list[str]:
        return [h.param() for h in self.items]


def tunable(value) -> bool:
    """Plain numbers, flags, strings and lists of numbers become hyperparameters."""
    if isinstance(value, list):
        return bool(value) and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    return isinstance(value, bool | int | float | str)


def _annotation(value, param: inspect.Parameter | None) -> tuple[str, object]:
    if isinstance(value, bool):
        return "bool", value
    if isinstance(value, str):
        return "str", value
    if isinstance(value, list) and all(isinstance(v, int) for v in value):
        return "tuple[int, ...]", tuple(value)
    if isinstance(value, list):
        return "tuple[float, ...]", tuple(float(v) for v in value)
    if isinstance(value, float) or (param is not None and _takes_float(param)):
        return "float", float(value)
    return "int", value


def _takes_float(param: inspect.Parameter) -> bool:
    return isinstance(param.default, float) or "float" in str(param.annotation)
