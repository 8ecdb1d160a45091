"""The located error of a submodule path that a node's module does not have (`freeze`,
`trainable`, `unfreeze`), with the nearest sibling as the hint."""

from __future__ import annotations

from ...errors import SpecError, did_you_mean


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
