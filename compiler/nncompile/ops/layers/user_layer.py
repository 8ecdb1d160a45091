"""A user's own layer, `op: package.module.Class`: imported at compile time from the spec's folder
or sys.path, sized on the meta device (or, where the layer does not support meta tensors, by one
tiny CPU run), and imported by the generated file under the same dotted path."""

from __future__ import annotations

import importlib
import inspect
import sys
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from ...errors import SpecError, did_you_mean, did_you_mean_op, first_line
from ...pyfmt import Arg, Call, Entry, Input, Seq, UnsafeValue, dotted, literal
from ..args import check_argument_names
from ..base import Built, TensorInfo, op_failed, set_outputs

# Constructor arguments read from the incoming shape when the layer takes them and the spec does
# not set them: argument -> input dim (1: channels, -1: features).
INFERRED = {
    "in_channels": 1,
    "input_channels": 1,  # torchvision.ops.SqueezeExcitation
    "in_chs": 1,  # timm.layers
    "channels": 1,
    "num_features": 1,
    "in_features": -1,
}
# The same for a list with one entry per input (the values of a dict `in:`): argument -> input dim.
INFERRED_LISTS = {"in_channels_list": 1}  # torchvision.ops.FeaturePyramidNetwork


@dataclass
class UserLayer:
    path: str  # package.module.Class
    takes_dict = True  # `in: {name: ref}` calls the layer with one dict of the tensors

    def build(self, node, inputs: list[TensorInfo], sources: list[str]) -> Built:
        import torch

        cls = self.load(node)
        module_path, _, name = self.path.rpartition(".")
        signature = inspect.signature(cls.__init__)
        named = list(signature.parameters.values())[1:]
        accepted = [p.name for p in named if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        takes_any = any(p.kind is p.VAR_KEYWORD for p in named)
        key_loc = partial(node.doc.key_loc, "nodes", node.id)
        check_argument_names(node, node.params, f"{self.path} argument", key_loc)
        for key in node.params:
            if key not in accepted and not takes_any:
                raise SpecError(
                    f"unknown argument '{key}' for {self.path}",
                    key_loc(key),
                    node=node.id,
                    hint=did_you_mean(key, accepted) or "it takes: " + ", ".join(accepted),
                )
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in node.params.items()}
        keys = node.in_keys
        inferred = {
            arg: inputs[0].shape[dim]
            for arg, dim in INFERRED.items()
            if arg in accepted and arg not in kwargs and keys is None and len(inputs[0].shape) >= 2
        }
        inferred |= {
            arg: [i.shape[dim] for i in inputs]
            for arg, dim in INFERRED_LISTS.items()
            if arg in accepted and arg not in kwargs and all(len(i.shape) >= 2 for i in inputs)
        }
        kwargs.update(inferred)
        notes = []
        try:
            with torch.device("meta"):
                module = cls(**kwargs)
        except Exception as exc:  # noqa: BLE001 - the layer's own argument checks
            raise SpecError(
                f"{self.path}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())}) cannot be built: {exc}",
                node.loc,
                node=node.id,
                hint="check the arguments against the layer's __init__",
            ) from None

        def values(make) -> list:
            tensors = [make(i) for i in inputs]
            return tensors if keys is None else [dict(zip(keys, tensors, strict=True))]

        try:
            with torch.no_grad():
                out = module(*values(TensorInfo.meta))
        except Exception as meta_exc:  # noqa: BLE001 - a layer without meta support: retry on the CPU
            try:
                with torch.no_grad():
                    module = cls(**kwargs)
                    out = module(*values(_cpu))
            except Exception as exc:  # noqa: BLE001 - reported at the node, naming the layer
                hint = f"the error is raised by {self.path}"
                if keys is None and _takes_one_dict(cls):
                    names = ", ".join(f"feat{i}: {s}" for i, s in enumerate(sources))
                    hint = f"{self.path} takes one dict of tensors: write `in: {{{names}}}`"
                raise op_failed(node, exc, inputs, sources, hint=hint) from None
            reason = first_line(meta_exc)
            notes.append(f"{node.id}: {self.path} was sized by a CPU run (meta device: {reason})")
        args = []
        for key, value in kwargs.items():
            try:
                args.append(Arg(key, literal(value)))
            except UnsafeValue as exc:
                raise SpecError(f"argument '{key}': {exc}", node.param_loc(key), node=node.id) from None
        comment = None
        if set(inferred) & set(INFERRED_LISTS):  # one size per input: name them, the shapes are long
            channels = [f"{name} ({i.shape[1]})" for name, i in zip(keys or sources, inputs, strict=True)]
            comment = f"{', '.join(inferred)} inferred from the channels of {', '.join(channels)}"
        elif inferred:
            comment = f"{', '.join(inferred)} inferred from {sources[0]} {inputs[0].comment()}"
        placeholders = [Input(i) for i in range(len(inputs))]
        if keys is not None:  # one dict display: {"feat0": x, "feat1": y}
            placeholders = [
                Seq(tuple(Entry(literal(k), v) for k, v in zip(keys, placeholders, strict=True)), "{}")
            ]
        built = Built(
            init=[(f"self.{node.id} = ", Call(name, tuple(args)), comment)],
            call=Call(f"self.{node.id}", tuple(Arg(None, v) for v in placeholders)),
            out=None,
            inferred=inferred,
            imports={f"from {module_path} import {name}"},
            module=module,
            notes=notes,
        )
        set_outputs(built, out, node, self.path)
        return built

    def load(self, node) -> type:
        """Import the class, looking in the spec's folder first, then sys.path."""
        import torch.nn as nn

        module_path, _, name = self.path.rpartition(".")
        try:
            dotted(self.path)
        except UnsafeValue as exc:
            raise SpecError(
                f"unknown op '{self.path}': {exc}",
                node.op_loc(),
                node=node.id,
                hint="write package.module.Class",
            ) from None
        try:
            module = import_next_to_spec(module_path, node)
        except Exception as exc:  # noqa: BLE001 - the user's module may raise anything on import
            from .. import known_ops

            typo = isinstance(exc, ModuleNotFoundError) and did_you_mean_op(self.path, known_ops())
            raise SpecError(
                f"unknown op '{self.path}': cannot import {module_path} ({type(exc).__name__}: {exc})",
                node.op_loc(),
                node=node.id,
                hint=typo
                or f"put {module_path.replace('.', '/')}.py next to the spec ({spec_folder(node)}) or on PYTHONPATH",
            ) from None
        cls = getattr(module, name, None)
        if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
            found = [n for n, c in vars(module).items() if isinstance(c, type) and issubclass(c, nn.Module)]
            raise SpecError(
                f"unknown op '{self.path}': {module_path} has no nn.Module class '{name}'",
                node.op_loc(),
                node=node.id,
                hint=did_you_mean(name, found) or "its nn.Module classes: " + (", ".join(found) or "none"),
            )
        return cls


def _takes_one_dict(cls) -> bool:
    """Whether the layer's forward() takes one argument annotated as a dict (as FeaturePyramidNetwork)."""
    params = list(inspect.signature(cls.forward).parameters.values())[1:]
    return len(params) == 1 and "dict" in str(params[0].annotation).lower()


def spec_folder(node) -> str:
    """The folder of the spec file that names the node's op: a base's, for a node it inherits."""
    loc = node.op_loc()
    return str(Path(loc.file if loc.line else node.doc.file).resolve().parent)


def import_next_to_spec(module_path: str, node):
    """Import the user's module from the spec's folder first, then sys.path (the folder is on
    sys.path only while importing)."""
    folder = spec_folder(node)
    added = folder not in sys.path
    if added:
        sys.path.insert(0, folder)
    try:
        return importlib.import_module(module_path)
    finally:
        if added:
            sys.path.remove(folder)


def _cpu(info: TensorInfo):
    import torch

    dtype = getattr(torch, info.dtype)
    if dtype.is_floating_point:
        return torch.randn(info.shape, dtype=dtype)
    return torch.zeros(info.shape, dtype=dtype)
