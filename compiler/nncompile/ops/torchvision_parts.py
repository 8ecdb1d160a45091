"""`torchvision.segmentation.<builder>` and `torchvision.detection.<builder>` with
`output: <submodule>`: one part of a torchvision segmentation or detection model (usually its
pretrained `backbone`) as a node.

    encoder:
      op: torchvision.detection.fasterrcnn_resnet50_fpn
      weights: DEFAULT
      output: backbone        # returns {"0": ..., "pool": ...}: ports encoder.0 ... encoder.pool

The part must be the same model with `pretrained=False` as with weights, and torchvision's
builders change it when given weights: segmentation builders add the auxiliary classifier, and
detection builders use FrozenBatchNorm2d in the backbone and freeze its first layers. So the
part is also built "as with weights" on the meta device (the weights are never fetched), the
differences are found by comparison, and each one is made explicit in the generated file:
`aux_loss=True` and `weights_backbone=None` as arguments, `_frozen_batchnorm(...)` where the
norm layers differ, `requires_grad_(True)` so that freezing is the spec's `freeze:` alone.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

from ..errors import SpecError, did_you_mean
from ..pyfmt import Arg, Call, Input, literal
from . import backbone_options, surgery, weights_file
from .base import Built, TensorInfo, expect_arity, op_failed, reject_unknown, set_outputs
from .torchvision_weights import FILE_CHOICES, build_as_with_weights, weights_member

KEYS = ("weights", "output", "strict")
FAMILIES = ("segmentation", "detection")


@dataclass
class TorchvisionPart:
    family: str  # one of FAMILIES
    builder: str

    def build(self, node, inputs: list[TensorInfo], sources: list[str]) -> Built:
        import torch
        import torchvision

        what = f"torchvision.{self.family}.{self.builder}"
        builder = builder_of(node, self.family, self.builder)
        reject_unknown(node, KEYS, what)
        expect_arity(node, inputs, 1)
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
        opts = backbone_options.parse(node, what)
        attr = f"self.{node.id}"
        weights = self.weights(node, opts)
        args = (Arg("weights", weights), *(Arg(k, literal(v)) for k, v in fixed.items()))
        ctor = f"torchvision.models.{self.family}.{self.builder}"
        built = Built(
            init=[],
            call=Call(attr, (Arg(None, Input(0)),)),
            out=None,
            imports={"import torchvision"},
            module=part,
            uses_pretrained=opts.weights is not None,
        )
        if opts.weights_file:  # a state dict of the whole model (BatchNorm2d, as built without weights)
            loc = node.param_loc("weights")
            built.notes += weights_file.read_and_check(model, opts.weights_file, opts.strict, loc, node.id)
            weights_file.emit_loading(node, opts.weights_file, opts.strict, built)
            built.init.insert(0, (f"{attr} = ", Call(ctor, args), None))
            built.init.append((f"{attr} = ", f"{attr}{surgery.module_path_code(path)}", f"its {path}"))
        else:
            call = Call(ctor, args, suffix=surgery.module_path_code(path))
            built.init.append((f"{attr} = ", call, f"the {path} of {self.builder}"))
            built.whole_model = Call(ctor, args)  # other parts of the same model share its build
            if built.uses_pretrained:
                from . import download_helper  # imports torch

                download_helper.guard(built, weights.body)
        if built.uses_pretrained and not opts.weights_file:
            member = torchvision.models.get_model_weights(self.builder)[opts.weights]
            trained = build_as_with_weights(lambda: builder(weights=member, **fixed))
            match_pretrained(node, what, part, trained.get_submodule(path), built)
        try:
            with torch.no_grad():
                out = part(inputs[0].meta())
        except Exception as exc:  # noqa: BLE001 - reported at the node with the incoming shape
            raise op_failed(node, exc, inputs, sources) from None
        set_outputs(built, out, node, what)
        return built

    def weights(self, node, opts):
        if opts.weights is None or opts.weights_file:
            return "None"  # a file is loaded after building
        namespace = f"torchvision.models.{self.family}"
        return weights_member(node, self.builder, namespace, opts.weights, FILE_CHOICES)


def builder_of(node, family: str, name: str):
    """torchvision's builder `name` of the segmentation or detection models, or a located error."""
    import torchvision

    namespace = getattr(torchvision.models, family)
    available = torchvision.models.list_models(module=namespace)
    if name not in available:
        raise SpecError(
            f"unknown torchvision {family} model '{name}'",
            node.op_loc(),
            node=node.id,
            hint=did_you_mean(name, available) or "one of: " + ", ".join(available),
        )
    return getattr(namespace, name)


def match_pretrained(node, what: str, part, trained, built: Built) -> None:
    """Make `part` (built without weights) the module `trained` is, here on the meta device and in
    the generated code, or fail if they differ in a way nncompile cannot mirror."""
    import torch
    import torch.nn as nn
    from torchvision.ops import FrozenBatchNorm2d

    from .norm_helper import _frozen_batchnorm

    plain, pretrained = dict(part.named_modules()), dict(trained.named_modules())
    differ = {n for n, m in pretrained.items() if type(m) is not type(plain.get(n))}
    swapped = {n for n in differ if isinstance(plain.get(n), nn.BatchNorm2d)}
    eps = {pretrained[n].eps for n in swapped}
    if differ != swapped or any(not isinstance(pretrained[n], FrozenBatchNorm2d) for n in swapped):
        raise mismatch(node, what, f"its layers {', '.join(sorted(differ - swapped)[:3])} differ")
    if len(eps) > 1:
        raise mismatch(node, what, f"its frozen norm layers use several eps values {sorted(eps)}")
    attr = f"self.{node.id}"
    if any(not p.requires_grad for p in trained.parameters()) and node.tuning.get("freeze") is not True:
        part.requires_grad_(True)
        built.init.append(
            (
                "",
                Call(f"{attr}.requires_grad_", (Arg(None, "True"),)),
                "torchvision freezes some layers only with weights; here `freeze:` decides",
            )
        )
    batchnorms = {n for n, m in plain.items() if isinstance(m, nn.BatchNorm2d)}
    for root in covering_roots(swapped, batchnorms):
        with torch.device("meta"):
            _frozen_batchnorm(part.get_submodule(root), *eps)
        target = attr + (surgery.module_path_code(root) if root else "")
        built.init.append(
            (
                "",
                Call("_frozen_batchnorm", (Arg(None, target), Arg("eps", literal(*eps)))),
                "FrozenBatchNorm2d layers, as torchvision builds them for the weights",
            )
        )
        built.helpers["_frozen_batchnorm"] = inspect.getsource(_frozen_batchnorm)
    if surgery.state_shapes(part) != surgery.state_shapes(trained):
        raise mismatch(node, what, "its state-dict keys or shapes differ")


def covering_roots(paths: set[str], candidates: set[str]) -> list[str]:
    """The fewest, deepest module paths whose subtrees hold all of `paths` and no other of
    `candidates` (`body` for every BatchNorm2d of a detection backbone's body, say)."""

    def under(root: str) -> set[str]:
        return {c for c in candidates if not root or c == root or c.startswith(root + ".")}

    roots: list[str] = []
    for path in sorted(paths):
        if any(path in under(r) for r in roots):
            continue
        best, held = path, 1
        parts = path.split(".")
        for i in range(len(parts) - 1, -1, -1):
            root = ".".join(parts[:i])
            inside = under(root)
            if not inside <= paths:
                break
            if len(inside) > held:  # climb only while the subtree takes in more of `paths`
                best, held = root, len(inside)
        roots.append(best)
    return roots


def mismatch(node, what: str, problem: str) -> SpecError:
    return SpecError(
        f"{what} with weights builds another model than without them: {problem}",
        node.param_loc("weights"),
        node=node.id,
        hint="use `weights: null`, or take a part (`output:`) outside the differing layers",
    )
