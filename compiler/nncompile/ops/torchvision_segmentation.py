"""`torchvision.segmentation.<builder>` with `output: <submodule>`: one part of a torchvision
segmentation model (usually its pretrained `backbone`) as a node.

    encoder:
      op: torchvision.segmentation.deeplabv3_resnet50
      weights: DEFAULT
      output: backbone        # returns {"out": layer4, "aux": layer3}: ports encoder.out, encoder.aux

The builder's arguments that depend on whether weights are given are passed explicitly
(`aux_loss=True`, `weights_backbone=None`), so the part is the same with `pretrained=False`.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

from ..errors import SpecError, did_you_mean
from ..pyfmt import Arg, Call, Input, literal
from . import surgery
from .base import Built, Port, TensorInfo, expect_arity, op_failed, reject_unknown
from .torchvision_models import weights_member

KEYS = ("weights", "output")


@dataclass
class TorchvisionSegmentationPart:
    builder: str

    def build(self, node, inputs: list[TensorInfo], sources: list[str]) -> Built:
        import torch
        import torchvision

        what = f"torchvision.segmentation.{self.builder}"
        available = torchvision.models.list_models(module=torchvision.models.segmentation)
        if self.builder not in available:
            raise SpecError(
                f"unknown torchvision segmentation model '{self.builder}'",
                node.op_loc(),
                node=node.id,
                hint=did_you_mean(self.builder, available) or "one of: " + ", ".join(available),
            )
        reject_unknown(node, KEYS, what)
        expect_arity(node, inputs, 1)
        builder = getattr(torchvision.models.segmentation, self.builder)
        fixed = {"weights_backbone": None}
        if "aux_loss" in inspect.signature(builder).parameters:
            fixed["aux_loss"] = True
        model = surgery.build_meta(lambda: builder(weights=None, **fixed))
        path = node.params.get("output")
        names = [n for n, _ in model.named_modules() if n]
        if not isinstance(path, str) or path not in names:
            raise SpecError(
                f"{what} needs `output:` naming one of its submodules"
                + (f", not {path!r}" if path is not None else ""),
                node.param_loc("output") if "output" in node.params else node.op_loc(),
                node=node.id,
                hint=did_you_mean(str(path), names) if path else "for example `output: backbone`",
            )
        part = model.get_submodule(path)
        weights = self.weights(node)
        args = (Arg("weights", weights), *(Arg(k, literal(v)) for k, v in fixed.items()))
        ctor = Call(
            f"torchvision.models.segmentation.{self.builder}", args, suffix=surgery.module_path_code(path)
        )
        built = Built(
            init=[(f"self.{node.id} = ", ctor, f"the {path} of {self.builder}")],
            call=Call(f"self.{node.id}", (Arg(None, Input(0)),)),
            out=None,
            imports={"import torchvision"},
            module=part,
            uses_pretrained=weights != "None",
        )
        try:
            with torch.no_grad():
                out = part(inputs[0].meta())
        except Exception as exc:  # noqa: BLE001 - reported at the node with the incoming shape
            raise op_failed(node, exc, inputs, sources) from None
        if isinstance(out, dict):
            built.ports = {str(k): Port(TensorInfo.of(v), f"[{literal(str(k))}]") for k, v in out.items()}
        else:
            built.out = TensorInfo.of(out)
        return built

    def weights(self, node):
        value = node.params.get("weights")
        if value is None:
            return "None"
        return weights_member(node, self.builder, "torchvision.models.segmentation", value, ", null")
