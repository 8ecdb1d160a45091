"""Code the generated file carries to load local weight files (its source is copied there).

Files are read as data only: `torch.load(..., weights_only=True)`, or safetensors. A file that
references a Python object (a pickle whose loading would import and run `posix.system`) is
refused by torch with a message that advises loading it with `weights_only=False`, the one step
that would run a malicious file's code; `_WeightsOnly` raises instead an error that names the
object. The compiler reads files the same way and words its error with `_refused`.
"""

import os
import pickle
import warnings

import torch
from torch import nn


def _refused(exc: BaseException | None) -> str | None:
    """Why weights-only loading refused a file, from its error `exc`: the Python object the file
    references (`posix.system`, `builtins.eval`, `mypkg.Config`), else torch's reason; None when
    `exc` is no such refusal."""
    while exc is not None and not isinstance(exc, pickle.UnpicklingError):
        exc = exc.__cause__  # a library may wrap it (timm: RuntimeError from it)
    if exc is None:
        return None
    text = str(exc)
    if "GLOBAL " in text:
        name = text.split("GLOBAL ", 1)[1].split()[0]
        if "." not in name:  # torch writes builtins.eval as eval
            name = f"builtins.{name}"
        what = f"the Python object {name}"
        return f"it references {what}, which loading would import or run"
    # torch's own reason, without the advice it wraps it in (exc is raised from it)
    reason = str(exc.__context__ or "").strip().splitlines()
    return "weights-only loading refused it" + (f" ({reason[0]})" if reason else "")


class _WeightsOnly:
    """`with _WeightsOnly(path):` around a weights-only load of the file at `path`: a file it
    refuses is an error that says what the file holds, never advising to load it unsafely."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __enter__(self) -> None:
        pass

    def __exit__(self, kind, exc, traceback) -> None:
        refused = _refused(exc)
        if refused:
            raise pickle.UnpicklingError(
                f"not loading {self.path}: {refused}; if you trust the file,"
                " re-save its weights as a plain state dict or safetensors"
            ) from None  # torch's message advises the unsafe load


def _load_weights(module: nn.Module, path: str, strict: bool = True) -> None:
    """Load a local weights file into `module`: a state dict, or a checkpoint holding one
    under "state_dict" or "model" (read with weights_only=True, or as safetensors)."""
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        state = load_file(path)
    else:
        with _WeightsOnly(path):
            state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(state.get(key), dict):
            state = state[key]
            break
    result = module.load_state_dict(state, strict=strict)
    if result.missing_keys or result.unexpected_keys:
        missing, unexpected = result.missing_keys, result.unexpected_keys
        message = f"{path}: missing keys {missing}, unexpected keys {unexpected}"
        warnings.warn(message, stacklevel=2)


def _weights_file(path: str, argument: str, needed: bool = True) -> str:
    """`path`, once checked to be a file (when `needed`): else an error naming the argument."""
    if needed and not os.path.isfile(path):
        raise FileNotFoundError(
            f"weights file {path!r} not found: pass its path as `{argument}=...`,"
            " or pretrained=False to build the model without it"
        )
    return path
