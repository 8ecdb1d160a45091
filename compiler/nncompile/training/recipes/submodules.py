"""The paths a spec may name inside a node's module (`freeze`, `trainable`, `unfreeze`), and
the located error of one it does not have, with the nearest sibling as the hint."""

from __future__ import annotations

from ...errors import SpecError, did_you_mean
from ...runtime.adapters import _lora_parameters


def nameable(module, parameters: bool) -> set[str]:
    """The submodule paths of `module` (and its parameter paths, if `parameters`), less what its
    LoRA adapters added (`lora_A`, `lora_B`, `lora_dropout`): they train whatever the spec says,
    and the generated file adds them after it freezes, so no freezing line may name them."""
    added = {id(p) for p in _lora_parameters(module)}
    adapted = [n for n, m in module.named_modules() if any(id(p) in added for p in m.parameters(False))]
    names = {n for n, _ in module.named_modules() if n and not any(_inside(n, a) for a in adapted)}
    if parameters:
        names |= {n for n, p in module.named_parameters() if id(p) not in added}
    return names


def _inside(path: str, root: str) -> bool:
    return root == "" or path.startswith(root + ".")


def no_submodule(node, path: str, names: set[str], loc) -> SpecError:
    tops = sorted({n.split(".")[0] for n in names})
    return SpecError(
        f"node '{node.id}' has no submodule '{path}'",
        loc,
        node=node.id,
        # a sibling at the same depth first: `layer5` -> layer4, not layer3.5
        hint=did_you_mean(path, [n for n in names if n.count(".") == path.count(".")])
        or did_you_mean(path, sorted(names))
        or "its submodules: " + ", ".join(tops),
    )
