"""Parts of one torchvision model (`output: backbone` and `output: aux_classifier` of the same
builder with the same weights) in one spec: the generated `__init__` builds the model, and loads
its weights, once, into a local variable, and takes each part from it. A part taken twice (two
`output: backbone` nodes) is two models: sharing a module is what `shares:` says, never implied."""

from __future__ import annotations

from .pyfmt import Call, Expr
from .shapes import Shaped


def shared_builds(shaped: Shaped) -> dict[str, list[tuple[str, Expr, str | None]]]:
    """Node id -> its `__init__` statements, for the nodes that take a part of a model another node
    also takes a part of; the first of them builds the model."""
    builds: list[tuple[Call, list[str], list[str]]] = []  # (the build, its node ids, their part paths)
    for node_id, result in shaped.nodes.items():
        whole, path = result.built.whole_model, _part_path(result.built)
        if whole is None or path is None:
            continue
        build = next((b for b in builds if b[0] == whole and not any(_overlap(path, p) for p in b[2])), None)
        if build is None:
            builds.append((whole, [node_id], [path]))
        else:
            build[1].append(node_id)
            build[2].append(path)
    out = {}
    from .ops.download_helper import is_guard  # imports torch

    count = 0
    for whole, node_ids, paths in builds:
        if len(node_ids) == 1:
            continue
        count += 1
        local = "model" if count == 1 else f"model_{count}"
        for k, (node_id, path) in enumerate(zip(node_ids, paths, strict=True)):
            init = []
            for prefix, expr, comment in shaped.nodes[node_id].built.init:
                if expr == Call(whole.func, whole.args, path):
                    indent = prefix[: len(prefix) - len(prefix.lstrip())]  # inside the download guard
                    if k == 0:
                        builder = whole.func.rsplit(".", 1)[-1]
                        init.append(
                            (f"{indent}{local} = ", whole, f"{builder}, built once for {', '.join(node_ids)}")
                        )
                    elif init and is_guard(init[-1]):  # downloaded above, with the first part
                        comment = init.pop()[2] or comment
                        prefix = prefix.removeprefix(indent)
                    expr = f"{local}{path}"
                init.append((prefix, expr, comment))
            out[node_id] = init
    return out


def _part_path(built) -> str | None:
    """The attribute access (`.backbone`) of the statement that builds the whole model."""
    whole = built.whole_model
    for _, expr, _ in built.init:
        if isinstance(expr, Call) and Call(expr.func, expr.args) == whole and expr.suffix:
            return expr.suffix
    return None


def _overlap(a: str, b: str) -> bool:
    return a.startswith(b) or b.startswith(a)
