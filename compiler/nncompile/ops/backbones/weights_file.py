"""`weights: <local file>`: a state dict (.pth/.pt, or safetensors) loaded into a backbone's own
layers, checked key by key at compile time so a wrong file fails here and not after training.

The generated file loads it with `_load_weights` (runtime/weights.py: never pickled code, and a refused
file named for what it holds), only when `pretrained` is true. The path is a constructor argument
(`<node>_weights`, `<node>_checkpoint`) whose default is the file the spec names, written relative
to the generated file's folder, so the file trains from any working directory and carries no
absolute path of the machine it was generated on.
"""

from __future__ import annotations

from pathlib import Path

from ...errors import SpecError, first_line
from ...pyfmt import Arg, Call, Expr

SUFFIXES = (".pth", ".pt", ".ckpt", ".bin", ".safetensors")
NESTED = ("state_dict", "model")  # keys under which checkpoints commonly hold the state dict
SHOWN = 8  # keys listed per kind in an error


def is_weights_file(value: object) -> bool:
    return isinstance(value, str) and (value.endswith(SUFFIXES) or "/" in value or "\\" in value)


def read(path: str, loc, node_id: str) -> dict:
    """The state dict in a weights file (unwrapping a checkpoint), as the generated code reads it."""
    return state_dict_in(read_file(path, loc, node_id), path, loc, node_id)


def read_file(path: str, loc, node_id: str) -> object:
    """What a weights or checkpoint file holds (never pickled code: weights_only, or safetensors)."""
    file = Path(path)
    if file.is_dir():
        raise SpecError(
            f"weights file '{path}' is a directory",
            loc,
            node=node_id,
            hint="name the weights file itself (a .pth, .pt, .ckpt or .safetensors file)",
        )
    if not file.is_file():
        beside = Path(loc.file).parent / path
        hint = "relative paths are read from the folder you compile (and train) in, not the spec's"
        if not file.is_absolute() and beside.is_file():
            hint = (
                f"there is a {path} next to the spec ({beside}); {hint}: write `weights: {beside}` or "
                "compile from the spec's folder"
            )
        raise SpecError(
            f"weights file '{path}' not found"
            + ("" if file.is_absolute() else f" (looked for {file.absolute()})"),
            loc,
            node=node_id,
            hint=hint,
        )
    try:
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file

            state = load_file(path, device="cpu")
        else:
            import torch

            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise unreadable(path, exc, loc, node_id) from None
    return state


def unreadable(path: str, exc: Exception, loc, node_id: str) -> SpecError:
    """The error for a weights file that cannot be read. One that weights-only loading refused
    says what it holds, as the generated file's `_WeightsOnly` does: torch's own message advises
    loading it with weights_only=False, the step that would run a malicious file's code."""
    from ...runtime.weights import _refused  # imports torch

    refused = _refused(exc)
    if refused is None:
        return SpecError(
            f"cannot read weights file '{path}': {first_line(exc)}",
            loc,
            node=node_id,
            hint="a state dict saved with torch.save(model.state_dict(), path), or a .safetensors file",
        )
    return SpecError(
        f"not loading weights file '{path}': {refused}; nncompile loads only tensors and plain values",
        loc,
        node=node_id,
        hint="if you trust the file, re-save its weights as a plain state dict "
        "(torch.save(model.state_dict(), path)) or as .safetensors; a checkpoint of your own "
        "LightningModule loads once its hyperparameters are plain values (numbers, strings, lists)",
    )


def state_dict_in(state: object, path: str, loc, node_id: str) -> dict:
    """The state dict a file's content is, or holds under one of the NESTED keys."""
    for key in NESTED:
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict):
        raise SpecError(
            f"weights file '{path}' holds a {type(state).__name__}, not a state dict",
            loc,
            node=node_id,
            hint="save model.state_dict() rather than the model",
        )
    return state


def check(model, state: dict, path: str, strict: bool, loc, node_id: str) -> list[str]:
    """Compare a file's state dict with the module's; raise on a mismatch (strict) or a shape
    conflict, else return notes naming what will not be loaded."""
    own = model.state_dict()
    missing = [k for k in own if k not in state and not _filled_on_load(k, state)]
    unexpected = [k for k in state if k not in own]
    conflicts = [
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in state and hasattr(state[k], "shape") and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if conflicts:
        raise SpecError(
            f"weights file '{path}' has tensors of other shapes than the model: " + _listing(conflicts),
            loc,
            node=node_id,
            hint="the file was saved from a different architecture or class count",
        )
    if (missing or unexpected) and strict:
        raise SpecError(
            f"weights file '{path}' does not match the model: "
            f"missing keys {_listing(missing)}; unexpected keys {_listing(unexpected)}",
            loc,
            node=node_id,
            hint="add `strict: false` to load only the matching keys",
        )
    notes = []
    if missing:
        notes.append(f"not in {path} (keep their initialisation): {_listing(missing)}")
    if unexpected:
        notes.append(f"in {path} but not in the model (ignored): {_listing(unexpected)}")
    return notes


def read_and_check(model, path: str, strict: bool, loc, node_id: str) -> list[str]:
    """`check` of the file at `path` against `model`: its notes, or a SpecError at `loc`."""
    return check(model, read(path, loc, node_id), path, strict, loc, node_id)


def emit_loading(
    node, path: str, strict: bool, built, comment: str | None = None, key: str = "weights"
) -> None:
    """Make the generated constructor load the file at `path` (checked already) into
    `self.<node>` when `pretrained`, with `_load_weights`, carried in the generated file."""
    built.init += loading(node, path, strict, built, f"self.{node.id}", comment, key)


def loading(
    node, path: str, strict: bool, built, module: Expr, comment: str | None = None, key: str = "weights"
) -> list:
    """The `__init__` statements of `emit_loading`, loading into `module` (code, or a placeholder)."""
    args = [Arg(None, module), Arg(None, path_arg(node, path, built, key))]
    if not strict:
        args.append(Arg("strict", "False"))
    carry(built, "_load_weights", "_WeightsOnly", "_refused")
    built.imports |= {"import pickle", "import warnings"}
    return [("if pretrained:", "", None), ("    ", Call("_load_weights", tuple(args)), comment)]


def weights_only(statement, file: Call, built) -> list:
    """An `__init__` statement in which a library loads `file` (a `path_arg`: Lightning's
    load_from_checkpoint, timm) as two: `with _WeightsOnly(<the argument>):` and it, so a file
    weights-only loading refuses is named for what it holds, as `_load_weights` does."""
    prefix, expr, comment = statement
    indent = prefix[: len(prefix) - len(prefix.lstrip())]
    carry(built, "_WeightsOnly", "_refused")
    built.imports.add("import pickle")
    return [
        (f"{indent}with ", Call("_WeightsOnly", file.args[:1], suffix=":"), comment),
        ("    " + prefix, expr, None),
    ]


def path_arg(node, path: str, built, key: str = "weights", needed: str | None = None) -> Call:
    """The file at `path` as the constructor argument `<node>_weights` (`<node>_checkpoint` for
    key `path`), checked to exist at run time (when `needed`, code; else always)."""
    name = f"{node.id}_{'checkpoint' if key == 'path' else 'weights'}"
    built.path_args.append((name, str(Path(path).resolve()), node.param_loc(key)))
    carry(built, "_weights_file")
    built.imports.add("import os")
    args = (Arg(None, name), Arg(None, f'"{name}"')) + ((Arg(None, needed),) if needed else ())
    return Call("_weights_file", args)


def carry(built, *names: str) -> None:
    """Copy the runtime/weights.py functions and classes `names` into the generated file."""
    import inspect

    from ...runtime import weights  # imports torch

    for name in names:
        built.helpers[name] = inspect.getsource(getattr(weights, name))


def _filled_on_load(key: str, state: dict) -> bool:
    """BatchNorm fills in a missing `num_batches_tracked` when the file's layer predates it:
    no version-2 metadata (files saved with FrozenBatchNorm2d, safetensors, hand-made dicts)."""
    prefix, _, name = key.rpartition(".")
    version = getattr(state, "_metadata", {}).get(prefix, {}).get("version")
    return name == "num_batches_tracked" and (version is None or version < 2)


def _listing(keys: list[str]) -> str:
    if not keys:
        return "none"
    more = f" and {len(keys) - SHOWN} more" if len(keys) > SHOWN else ""
    return "[" + ", ".join(keys[:SHOWN]) + "]" + more
