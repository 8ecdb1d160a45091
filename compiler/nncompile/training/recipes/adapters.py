"""The code of the nodes' `adapters:` (LoRA), resolved by the shapes stage (shapes/adapters.py):
the `_add_lora` statement that adds each entry's adapters to its explicit list of layers (after the
node is frozen, so the adapters alone train), the model's `merge_adapters()`, its adapter-only
state dict, and the hyperparameters r, alpha and dropout of each entry."""

from __future__ import annotations

import inspect
import textwrap
from dataclasses import dataclass, field

from ...pyfmt import Arg, Call, Seq, literal
from ...runtime import adapters as lora
from ...shapes.adapters import compact

CARRIED = (
    "LoRALinear",
    "LoRAConv2d",
    "LoRAEmbedding",
    "_conv_settings",
    "_embedding_settings",
    "_lora_init",
    "_merged",
    "_add_lora",
    "_merge_lora",
    "_trained_state",
    "_load_trained_state",
)

METHODS = '''
    def merge_adapters(self) -> None:
        """Fold each LoRA adapter into its layer's weight, leaving plain nn.Linear, nn.Conv2d
        and nn.Embedding layers: the same outputs without adapter operations (inference, export)."""
        _merge_lora(self)

    def adapter_state_dict(self) -> dict[str, torch.Tensor]:
        """The parameters that train (the adapters, and what trains beside them such as a new
        head): all that fine-tuning changes, a small fraction of state_dict()."""
        return _trained_state(self)

    def load_adapter_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Load what adapter_state_dict() saved into a model built with the same spec."""
        _load_trained_state(self, state)'''


@dataclass
class AdapterPlan:
    init: dict[str, list] = field(default_factory=dict)  # node id -> the statements adding its adapters
    methods: list[str] = field(default_factory=list)
    helpers: dict[str, str] = field(default_factory=dict)
    args: list[tuple[str, object, object]] = field(default_factory=list)  # model arguments: name, value, loc


def plan_adapters(shaped) -> AdapterPlan:
    plan = AdapterPlan()
    for node_id, result in shaped.nodes.items():
        resolved = result.built.adapters
        for found in resolved:
            adapter = found.adapter
            suffix = f"_{node_id}" + (f"_{adapter.index}" if len(resolved) > 1 else "")
            names = {}
            for key, value in (("r", adapter.r), ("alpha", adapter.alpha), ("dropout", adapter.dropout)):
                names[key] = f"lora_{key}{suffix}"
                plan.args.append((names[key], value, adapter.r_loc if key == "r" else adapter.loc))
            paths = Seq(tuple(literal(p) for p in found.paths), "()")
            call = Call(
                "_add_lora",
                (Arg(None, f"self.{node_id}"), Arg(None, paths), *(Arg(k, n) for k, n in names.items())),
            )
            what = ", ".join(adapter.targets) if adapter.targets else "the node itself"
            comment = f"LoRA adapter {adapter.index} ({what}): trains beside the frozen weights"
            prefix = f"self.{node_id} = " if found.paths == ("",) else ""
            plan.init.setdefault(node_id, []).append((prefix, call, comment))
    if plan.init:
        plan.methods = METHODS.splitlines()
        plan.helpers = {name: inspect.getsource(getattr(lora, name)) for name in CARRIED}
    return plan


def header_lines(shaped) -> list[str]:
    """The header's account of the adapters: each entry, its settings and the layers it adapts."""
    lines = []
    for node_id, result in shaped.nodes.items():
        for found in result.built.adapters:
            a = found.adapter
            what = ", ".join(a.targets) if a.targets else "the node itself"
            count = f"{len(found.paths)} {'/'.join(found.types)} layer{'s' if len(found.paths) != 1 else ''}"
            entry = (
                f"{node_id}, adapter {a.index} (r={a.r}, alpha={a.alpha:g}, dropout={a.dropout:g}) on {what}: "
                f"{count}, {found.params:,} parameters:"
            )
            lines += textwrap.wrap(entry, 110, initial_indent="  ", subsequent_indent="    ")  # ruff's limit
            lines += textwrap.wrap(compact(found.paths), 84, initial_indent="    ", subsequent_indent="    ")
    if lines:
        lines.insert(
            0, "LoRA adapters (they train, with `trainable:` parts; merge_adapters() folds them in):"
        )
    return lines
