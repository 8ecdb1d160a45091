"""The download guard around the statement that builds a pretrained model (runtime/download.py
holds the context managers the generated file carries: torchvision's, and the Hugging Face
Hub's for timm and transformers)."""

from __future__ import annotations

import inspect
from dataclasses import replace

from ...pyfmt import Arg, Call, Cond, literal
from ...runtime.download import _download_hint, _hub_download_hint


def guard(built, weights_code, index: int = 0, local: str | None = None, hub: bool = False) -> None:
    """Put the statement built.init[index] (the one that builds the pretrained model) inside
    `with _download_hint(<weights_code>):` (`_hub_download_hint` for a Hugging Face repository or
    a URL: `hub`), and carry the helper in the generated file."""
    built.init[index : index + 1] = guarded(built.init[index], weights_code, local, hub)
    carry(built, hub)


def guarded(statement, weights_code, local: str | None = None, hub: bool = False) -> list:
    """An `__init__` statement inside `with _download_hint(<weights_code>):`; where it passes
    `weights=<weights_code> if pretrained else None`, that choice is named first, as `weights`."""
    prefix, expr, comment = statement
    indent = prefix[: len(prefix) - len(prefix.lstrip())]
    lines, name = [], weights_code
    chosen = [
        a for a in getattr(expr, "args", ()) if isinstance(a.value, Cond) and a.value.body == weights_code
    ]
    if chosen:
        lines, name = [(f"{indent}weights = ", chosen[0].value, None)], "weights"
        args = tuple(Arg(a.name, "weights") if a in chosen else a for a in expr.args)
        expr = replace(expr, args=args)
    args = (Arg(None, name), *([Arg("local", literal(local))] if local else []))
    return [
        *lines,
        (f"{indent}with ", Call(_helper(hub).__name__, args, suffix=":"), comment),
        ("    " + prefix, expr, None),
    ]


def _helper(hub: bool):
    return _hub_download_hint if hub else _download_hint


def carry(built, hub: bool = False) -> None:
    """Copy the download guard into the generated file."""
    built.helpers[_helper(hub).__name__] = inspect.getsource(_helper(hub))
    built.imports.add("import contextlib")


def timm_weights(model) -> str:
    """The code naming a timm model's pretrained weights: its Hugging Face repository, or its URL."""
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    return literal(cfg.get("hf_hub_id") or cfg.get("url") or "")
