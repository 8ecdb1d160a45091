"""`op: checkpoint`: a model you trained before, as a backbone (the seed article's case: "a
pre-trained Lightning model modified by adding custom layers").

    encoder:
      op: checkpoint
      path: runs/base.ckpt          # a Lightning checkpoint, or a state dict file
      class: mypkg.models.BaseNet   # a LightningModule (load_from_checkpoint), or an nn.Module
      args: {hidden: 64}            # nn.Module only: its constructor arguments
      submodule: model.encoder      # optional: take one part

The class is imported at compile time and built on the meta device with the checkpoint's
hyperparameters; every key of the checkpoint is checked against it. With `pretrained=False` the
generated file builds the same architecture without reading the checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

from ...errors import SpecError, did_you_mean, first_line
from ...pyfmt import Arg, Call, Input, UnsafeValue, dotted, literal
from ..args import check_argument_names
from ..base import Built, TensorInfo, expect_arity, op_failed, reject_unknown, set_outputs
from ..layers.user_layer import import_next_to_spec
from . import surgery, weights_file

KEYS = ("path", "class", "args", "submodule", "strict")


@dataclass
class CheckpointBackbone:
    def build(self, node, inputs: list[TensorInfo], sources: list[str]) -> Built:
        import torch

        reject_unknown(node, KEYS, "checkpoint")
        expect_arity(node, inputs, 1, -1)
        for key in ("path", "class"):
            if not isinstance(node.params.get(key), str) or not node.params[key]:
                raise SpecError(
                    f"checkpoint needs `{key}:`" if key not in node.params else f"`{key}` must be a string",
                    node.param_loc(key) if key in node.params else node.loc,
                    node=node.id,
                    hint="for example `path: runs/base.ckpt` and `class: mypkg.models.BaseNet`",
                )
        path, class_path = node.params["path"], node.params["class"]
        strict = node.params.get("strict", True)
        if not isinstance(strict, bool):
            raise SpecError("`strict` must be true or false", node.param_loc("strict"), node=node.id)
        cls = self.import_class(node, class_path)
        module_name = class_path.rpartition(".")[0]
        loc = node.param_loc("path")
        checkpoint = weights_file.read_file(path, loc, node.id)  # read once: weights and hparams
        state = weights_file.state_dict_in(checkpoint, path, loc, node.id)
        attr = f"self.{node.id}"
        built = Built(
            init=[],
            call=Call(attr, tuple(Arg(None, Input(i)) for i in range(len(inputs)))),
            out=None,
            imports={f"import {module_name}"},
            uses_pretrained=True,
        )
        lightning = _is_lightning(cls)
        if lightning:
            if "args" in node.params:
                raise SpecError(
                    "`args` is for an nn.Module class: a LightningModule takes the checkpoint's hyperparameters",
                    node.param_loc("args"),
                    node=node.id,
                )
            kwargs = self.hparams(node, path, checkpoint)
        else:
            kwargs = node.params.get("args", {})
            if not isinstance(kwargs, dict):
                raise SpecError(
                    "`args` must map argument names to values", node.param_loc("args"), node=node.id
                )
            key_loc = partial(node.doc.key_loc, "nodes", node.id, "args")
            check_argument_names(node, kwargs, f"{class_path} argument", key_loc)
        model = self.meta(node, cls, kwargs)
        built.notes += weights_file.check(model, state, path, strict, loc, node.id)
        part = self.submodule(node, model)
        ctor_args = tuple(Arg(k, literal(v)) for k, v in kwargs.items())
        if lightning:
            file = weights_file.path_arg(node, path, built, "path")
            loaded = Call(
                f"{class_path}.load_from_checkpoint",
                (Arg(None, file), Arg("map_location", '"cpu"'), Arg("weights_only", "True"))
                + ((Arg("strict", "False"),) if not strict else ()),
                suffix=part,
            )
            built.init += [
                ("if pretrained:", "", f"the trained weights of {Path(path).name}"),
                *weights_file.weights_only((f"    {attr} = ", loaded, None), file, built),
                ("else:", "", None),
                (f"    {attr} = ", Call(class_path, ctor_args, suffix=part), None),
            ]
        else:
            built.init.append((f"{attr} = ", Call(class_path, ctor_args), None))
            weights_file.emit_loading(
                node, path, strict, built, f"the trained weights of {Path(path).name}", "path"
            )
            if part:
                built.init.append((f"{attr} = ", f"{attr}{part}", None))
        module = model.get_submodule(node.params["submodule"]) if part else model
        built.module = module
        try:
            with torch.no_grad():
                out = module(*(i.meta() for i in inputs))
        except Exception as exc:  # noqa: BLE001 - reported at the node with the incoming shapes
            raise op_failed(node, exc, inputs, sources) from None
        set_outputs(
            built, out, node, class_path, hint="take a submodule that returns tensors with `submodule:`"
        )
        return built

    @staticmethod
    def import_class(node, class_path: str):
        loc = node.param_loc("class")
        try:
            dotted(class_path)
        except UnsafeValue as exc:
            raise SpecError(f"`class:` {exc}", loc, node=node.id) from None
        module_name, _, name = class_path.rpartition(".")
        try:
            module = import_next_to_spec(module_name, node) if module_name else None
        except Exception as exc:  # noqa: BLE001 - the user's module may raise anything on import
            raise SpecError(
                f"cannot import {module_name}: {exc}",
                loc,
                node=node.id,
                hint="the module defining the class must be next to the spec or on PYTHONPATH when you compile",
            ) from None
        cls = getattr(module, name, None)
        import torch.nn as nn

        if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
            raise SpecError(
                f"{class_path!r} is not an nn.Module or LightningModule class",
                loc,
                node=node.id,
                hint="write the full import path, for example mypkg.models.BaseNet",
            )
        return cls

    @staticmethod
    def hparams(node, path: str, checkpoint) -> dict:
        hparams = checkpoint.get("hyper_parameters", {}) if isinstance(checkpoint, dict) else {}
        check_argument_names(
            node,
            hparams,
            f"{path}: hyperparameter",
            lambda _: node.param_loc("path"),
            hint="the generated code passes the checkpoint's hyperparameters to the class by name: "
            "save them under Python names with save_hyperparameters()",
        )
        try:
            for value in hparams.values():
                literal(value)
        except UnsafeValue as exc:
            raise SpecError(
                f"a hyperparameter in {path} cannot be written into code: {exc}",
                node.param_loc("path"),
                node=node.id,
                hint="save only plain values (numbers, strings, lists) with save_hyperparameters()",
            ) from None
        return dict(hparams)

    @staticmethod
    def meta(node, cls, kwargs: dict):
        try:
            return surgery.build_meta(lambda: cls(**kwargs))
        except Exception as exc:  # noqa: BLE001 - the user's constructor, reported at the node
            raise SpecError(
                f"{cls.__name__}({', '.join(kwargs)}) cannot be built: {first_line(exc)}",
                node.param_loc("class"),
                node=node.id,
            ) from None

    @staticmethod
    def submodule(node, model) -> str:
        """The attribute access for `submodule:` ('' when the whole model is the backbone)."""
        name = node.params.get("submodule")
        if name is None:
            return ""
        names = [n for n, _ in model.named_modules() if n]
        if not isinstance(name, str) or name not in names:
            raise SpecError(
                f"{type(model).__name__} has no submodule {name!r}",
                node.param_loc("submodule"),
                node=node.id,
                hint=did_you_mean(str(name), names) or "its submodules: " + ", ".join(names[:12]),
            )
        return surgery.module_path_code(name)


def _is_lightning(cls) -> bool:
    try:
        import pytorch_lightning as pl
    except ImportError:
        return False
    return issubclass(cls, pl.LightningModule)
