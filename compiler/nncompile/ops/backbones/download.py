"""The download guard around the statement that builds a pretrained model (runtime/download.py
holds the class the generated file carries)."""

from __future__ import annotations

import inspect

from ...pyfmt import Arg, Call, literal
from ...runtime.download import _PretrainedDownload


def guard(built, weights_code, index: int = 0, local: str | None = None) -> None:
    """Put the statement built.init[index] (the one that builds the pretrained model) inside
    `with _PretrainedDownload(<weights_code>):`, and carry the helper in the generated file."""
    built.init[index : index + 1] = guarded(built.init[index], weights_code, local)
    carry(built)


def guarded(statement, weights_code, local: str | None = None) -> list:
    """An `__init__` statement as two: `with _PretrainedDownload(<weights_code>):` and it."""
    prefix, expr, comment = statement
    indent = prefix[: len(prefix) - len(prefix.lstrip())]
    args = (Arg(None, weights_code), *([Arg("local", literal(local))] if local else []))
    return [
        (f"{indent}with ", Call("_PretrainedDownload", args, suffix=":"), comment),
        ("    " + prefix, expr, None),
    ]


def carry(built) -> None:
    """Copy `_PretrainedDownload` into the generated file."""
    built.helpers["_PretrainedDownload"] = inspect.getsource(_PretrainedDownload)


def timm_weights(model) -> str:
    """The code naming a timm model's pretrained weights: its Hugging Face repository, or its URL."""
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    return literal(cfg.get("hf_hub_id") or cfg.get("url") or "")
