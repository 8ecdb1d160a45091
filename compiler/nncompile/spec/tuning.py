"""The tuning keys any node takes (`freeze`, `trainable`, `lr`, `lr_mult`, `unfreeze`,
`lr_decay`, `train_bn`, `adapters`): declared, and their grammar checked, when the spec loads.

A node's `Tuning` is typed: `freeze` is True or the paths it freezes, `unfreeze` the parsed
schedule. What needs the node's module (does it have a `layer4`? any parameters?) is checked by
the recipes that use them, training/recipes/.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from pydantic import Field, WithJsonSchema, model_validator

from ..errors import Loc, did_you_mean
from .adapters import Adapter, AdapterKeys, parse_adapters
from .checking import Bound, Keys, Number, Parsed, mistake

# The structured forms of `unfreeze:`: the key holding the table, its unit, and its warm-up key.
FORMS = {"at_epoch": ("epoch", "warmup_epochs"), "at_step": ("step", "warmup_steps")}
UNFREEZE_EXAMPLE = (
    "for example `unfreeze: {layer4: 2, layer3: 4}` (epochs) or `unfreeze: {at_step: {layer4: 500}}`"
)


@dataclass(frozen=True)
class Unfreeze:
    """A node's `unfreeze:`: submodule path -> the epoch (or step) it starts training."""

    unit: str  # "epoch" or "step"
    starts: dict[str, int]
    warmup: float  # in the unit; 0: none
    locs: dict[str, Loc]  # path -> where its start is given
    key_locs: dict[str, Loc]  # path -> where the path is written
    warmup_loc: Loc


def _paths(value, info) -> bool | tuple[str, ...]:
    """`freeze`/`trainable`: submodule paths (`freeze` also takes a boolean)."""
    if isinstance(value, bool):
        return value
    if not value or not all(isinstance(p, str) and p for p in value):
        key = info.field_name
        raise mistake(
            f"`{key}` takes a list of submodule paths" + (" or true" if key == "freeze" else ""),
            f"for example `{key}: [layer1, layer2]`",
        )
    return tuple(value)


def _unfreeze(raw: dict, info) -> Unfreeze:
    doc, path = info.context["doc"], (*info.context["path"], "unfreeze")
    if not raw:
        raise mistake("`unfreeze` maps submodules to when each starts training", UNFREEZE_EXAMPLE)
    structured = [k for k in raw if k in FORMS or k in ("warmup_epochs", "warmup_steps")]
    table, unit, at, warmup_key = raw, "epoch", (), None
    if structured:
        forms = [k for k in raw if k in FORMS]
        if len(forms) != 1:
            raise mistake(
                "`unfreeze` takes one of `at_epoch:` and `at_step:`"
                if forms
                else "`unfreeze` has a warm-up but no `at_epoch:` or `at_step:` table",
                UNFREEZE_EXAMPLE,
            )
        (form,) = forms
        unit, warmup_key = FORMS[form]
        for key in raw:
            if key not in (form, warmup_key):
                raise mistake(
                    f"unknown key '{key}' in `unfreeze` with `{form}:`",
                    did_you_mean(key, (form, warmup_key))
                    or f"it takes `{form}:` and `{warmup_key}:`; submodule names go under `{form}:`",
                    at=(key,),
                    key=True,
                )
        table, at = raw[form], (form,)
        if not isinstance(table, dict) or not table:
            raise mistake(
                f"`{form}` maps submodules to the {unit} each starts training", UNFREEZE_EXAMPLE, at=at
            )
    starts: dict[str, int] = {}
    for part, start in table.items():
        if not isinstance(start, int) or isinstance(start, bool) or start < 0:
            raise mistake(
                f"'{part}' starts training at {unit} {start!r}: give a whole number >= 0",
                f"the {unit} (counting from 0) from which '{part}' trains",
                at=(*at, part),
            )
        inside = [p for p in starts if part.startswith(p + ".") or p.startswith(part + ".")]
        if inside:
            raise mistake(
                f"'{part}' and '{inside[0]}' overlap: a parameter would unfreeze twice",
                "list parts that do not contain one another",
                at=(*at, part),
                key=True,
            )
        starts[part] = start
    warmup = raw.get(warmup_key, 0) if warmup_key else 0
    kind = (int,) if unit == "step" else (int, float)
    if not isinstance(warmup, kind) or isinstance(warmup, bool) or warmup < 0:
        raise mistake(
            f"`{warmup_key}` must be a {'whole ' if unit == 'step' else ''}number >= 0, not {warmup!r}",
            f"the {unit}s over which a part's learning rate rises to the scheduled rate",
            at=(warmup_key,),
        )
    return Unfreeze(
        unit,
        starts,
        warmup,
        {part: doc.loc(*path, *at, part) for part in starts},
        {part: doc.key_loc(*path, *at, part) for part in starts},
        doc.loc(*path, warmup_key) if warmup_key else doc.loc(*path),
    )


def _rate(key: str) -> Bound:
    return Bound(f"`{key}` must be a positive number, not {{value!r}}", json=Number, gt=0)


class Tuning(Keys):
    """How a node trains: what is frozen, its learning rate, when its parts unfreeze."""

    freeze: Annotated[bool | tuple[str, ...], Parsed(bool | list, _paths)] = Field(
        False, description="true, or submodule prefixes: weights that training leaves fixed"
    )
    trainable: Annotated[tuple[str, ...] | None, Parsed(list, _paths)] = Field(
        None, description="submodule prefixes that train while the rest of the node is frozen"
    )
    lr: Annotated[Number | None, _rate("lr")] = Field(
        None, description="this node's own learning rate (a parameter group)"
    )
    lr_mult: Annotated[Number | None, _rate("lr_mult")] = Field(
        None, description="this node's learning rate as a multiple of the optimizer's"
    )
    unfreeze: Annotated[Unfreeze | None, Parsed(dict, _unfreeze)] = Field(
        None,
        description="gradual unfreezing: submodule -> the epoch it starts training ({layer4: 2}), or {at_epoch: "
        "{...}, warmup_epochs: N} / {at_step: {...}, warmup_steps: N}; the rest of the node stays frozen",
    )
    lr_decay: Annotated[
        Number | None,
        Bound(
            "`lr_decay` must be a number in (0, 1], not {value!r}",
            "for example `lr_decay: 0.75`: each level below the head trains at 0.75 times the rate above",
            json=Number,
            gt=0,
            le=1,
        ),
    ] = Field(
        None, description="layer-wise decay: each level of depth below the head multiplies the rate by it"
    )
    train_bn: bool = Field(
        False, description="the affine parameters of the node's frozen norm layers still train"
    )
    adapters: Annotated[
        tuple[Adapter, ...] | None,
        Parsed(list, parse_adapters),
        WithJsonSchema({"type": "array", "items": AdapterKeys.model_json_schema()}),
    ] = Field(
        None,
        description="low-rank adapters (LoRA) on the node's layers, [{kind: lora, target, r, alpha, dropout}]: "
        "the node's own weights are frozen, the adapters train",
    )

    @model_validator(mode="after")
    def combined(self):
        """Keys that cannot be set together: one mistake per pair, at the key its message names
        second (dropped by checking.py, so the next pair is found too)."""
        given = self.model_fields_set
        for key in ("freeze", "trainable"):
            if "unfreeze" in given and key in given:
                raise mistake(
                    f"`unfreeze` and `{key}` cannot be combined",
                    "`unfreeze` freezes the whole node but its listed parts, until their epoch; "
                    "a part that trains from the start is listed with epoch 0",
                    at=(key,),
                    key=True,
                )
        if {"freeze", "trainable"} <= given:
            raise mistake(
                "`freeze` and `trainable` cannot be combined",
                "`trainable: [...]` alone freezes everything else in the node",
                at=("trainable",),
                key=True,
            )
        if "adapters" in given and self.freeze is not False:
            raise mistake(
                "`adapters` and `freeze` cannot be combined",
                "a node with adapters is frozen but for its adapters; `trainable: [...]` names parts that train beside them",
                at=("freeze",),
                key=True,
            )
        if {"lr", "lr_mult"} <= given:
            raise mistake("`lr` and `lr_mult` cannot be combined", "pick one", at=("lr_mult",))
        return self

    def given(self, *keys: str) -> bool:
        """Whether the spec sets any of `keys` (`freeze: false` is set)."""
        return any(key in self.model_fields_set for key in keys)
