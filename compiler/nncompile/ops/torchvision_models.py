"""`torchvision.<builder>`: a torchvision classification model as a backbone, with pretrained
weights, its classifier removed or kept, or intermediate feature maps taken with `output:`."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import SpecError, did_you_mean
from ..pyfmt import Arg, Call, Cond, Expr, Input, Seq, UnsafeValue, identifier, literal
from .base import Built, Port, TensorInfo, expect_arity, op_failed, reject_unknown

PARAMS = ("weights", "head", "output")
HEADS = ("keep", "remove")
FEATURE_EXTRACTOR = "from torchvision.models.feature_extraction import create_feature_extractor"


def module_path_code(path: str) -> str:
    """`classifier.6` -> `.classifier[6]`: attribute access for names, indexing for positions."""
    return "".join(f"[{p}]" if p.isdigit() else f".{identifier(p)}" for p in path.split("."))


def find_head(model) -> tuple[str, object] | None:
    """The classification layer: the last Linear/Conv2d producing the class scores."""
    import torch.nn as nn

    found = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and module.out_features == 1000:
            found = (name, module)
        elif isinstance(module, nn.Conv2d) and module.out_channels == 1000:
            found = (name, module)
    return found


@dataclass
class TorchvisionModel:
    builder: str

    def build(self, node, inputs: list[TensorInfo], sources: list[str]) -> Built:
        import torch
        import torchvision

        available = torchvision.models.list_models(module=torchvision.models)
        if self.builder not in available:
            raise SpecError(
                f"unknown torchvision classification model '{self.builder}'",
                node.op_loc(),
                node=node.id,
                hint=did_you_mean(self.builder, available) or "see torchvision.models.list_models()",
            )
        reject_unknown(node, PARAMS, f"torchvision.{self.builder}")
        expect_arity(node, inputs, 1)
        weights_code, uses_pretrained = self.weights(node, torchvision)
        head = node.params.get("head", "keep")
        if head not in HEADS:
            raise SpecError(
                f"unknown head mode {head!r}",
                node.param_loc("head"),
                node=node.id,
                hint=did_you_mean(str(head), HEADS) or "head: keep | remove",
            )
        outputs = self.outputs(node)
        if outputs and head != "keep":
            raise SpecError(
                "`head:` and `output:` cannot be combined",
                node.param_loc("head"),
                node=node.id,
                hint="`output:` already takes feature maps from before the classifier",
            )

        with torch.device("meta"):
            model = torchvision.models.get_model(self.builder, weights=None)
        ctor = Call(f"torchvision.models.{self.builder}", (Arg("weights", weights_code),))
        init = [(f"self.{node.id} = ", ctor, None)]
        built = Built(
            init=init,
            call=Call(f"self.{node.id}", (Arg(None, Input(0)),)),
            out=None,
            imports={"import torchvision"},
            uses_pretrained=uses_pretrained,
        )
        if head == "remove":
            found = find_head(model)
            if found is None:
                raise SpecError(
                    f"cannot find the classification layer of torchvision.{self.builder}",
                    node.param_loc("head"),
                    node=node.id,
                    hint="use `output:` to pick a layer",
                )
            path, layer = found
            _set_submodule(model, path, torch.nn.Identity())
            width = getattr(layer, "in_features", None) or layer.in_channels
            init.append(
                (
                    f"self.{node.id}{module_path_code(path)} = ",
                    Call("nn.Identity"),
                    f"head removed: outputs the {width} features that fed {path}",
                )
            )
        if outputs:
            from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names

            # a module path names that module's output; a graph node name, one operation's
            known = set(get_graph_node_names(model)[1]) | {n for n, _ in model.named_modules() if n}
            for i, name in enumerate(outputs):
                if name not in known:
                    raise SpecError(
                        f"torchvision.{self.builder} has no layer '{name}'",
                        node.doc.loc(
                            "nodes",
                            node.id,
                            "output",
                            *([i] if isinstance(node.params["output"], list) else []),
                        ),
                        node=node.id,
                        hint=did_you_mean(name, known) or "see torchvision's get_graph_node_names",
                    )
            model = create_feature_extractor(model, return_nodes=outputs)
            nodes = Seq(tuple(literal(n) for n in outputs))
            init[0] = (
                init[0][0],
                Call("create_feature_extractor", (Arg(None, ctor), Arg("return_nodes", nodes))),
                None,
            )
            built.imports.add(FEATURE_EXTRACTOR)
        built.module = model
        try:
            with torch.no_grad():
                out = model(inputs[0].meta())
        except Exception as exc:  # noqa: BLE001 - reported at the node with the incoming shape
            raise op_failed(node, exc, inputs, sources, hint=self.stem_hint(model, inputs)) from None
        if len(outputs) == 1:
            built.out = TensorInfo.of(out[outputs[0]])
            built.call = Call(built.call.func, built.call.args, suffix=f"[{literal(outputs[0])}]")
        elif outputs:
            built.ports = {name: Port(TensorInfo.of(out[name]), f"[{literal(name)}]") for name in outputs}
        else:
            built.out = TensorInfo.of(out)
        return built

    def weights(self, node, torchvision) -> tuple[Expr, bool]:
        value = node.params.get("weights")
        if value is None:
            return "None", False
        enum = torchvision.models.get_model_weights(self.builder)
        members = ["DEFAULT", *enum.__members__]
        if value not in members:
            raise SpecError(
                f"unknown weights {value!r} for torchvision.{self.builder}",
                node.param_loc("weights"),
                node=node.id,
                hint=did_you_mean(str(value), members) or "one of: " + ", ".join(members) + ", null",
            )
        return Cond(f"torchvision.models.{enum.__name__}.{value}", "pretrained", "None"), True

    def outputs(self, node) -> list[str]:
        raw = node.params.get("output")
        if raw is None:
            return []
        names = raw if isinstance(raw, list) else [raw]
        if not names or not all(isinstance(n, str) and n for n in names):
            raise SpecError(
                "`output:` takes a module path or a list of them",
                node.param_loc("output"),
                node=node.id,
                hint="for example `output: features` or `output: [layer3, layer4]`",
            )
        try:
            for n in names:
                module_path_code(n)
        except UnsafeValue as exc:
            raise SpecError(f"`output:` {exc}", node.param_loc("output"), node=node.id) from None
        return names

    @staticmethod
    def stem_hint(model, inputs: list[TensorInfo]) -> str | None:
        import torch.nn as nn

        stem = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
        shape = inputs[0].shape
        if stem is not None and len(shape) == 4 and shape[1] != stem.in_channels:
            return (
                f"its stem takes {stem.in_channels} channels but gets {shape[1]}: make the layer before "
                f"it output {stem.in_channels} channels"
            )
        if len(shape) != 4:
            return "torchvision classification models take images (B, 3, H, W)"
        return None


def _set_submodule(model, path: str, module) -> None:
    parent_path, _, name = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    setattr(parent, name, module) if not name.isdigit() else parent.__setitem__(int(name), module)
