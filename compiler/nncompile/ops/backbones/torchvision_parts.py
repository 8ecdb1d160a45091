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
from dataclasses import dataclass, field

from ...errors import SpecError, did_you_mean
from ...pyfmt import Arg, Call, Input, literal, substitute
from ..base import Built, TensorInfo, expect_arity, op_failed, pass_cache, reject_unknown, set_outputs
from . import backbone_options, surgery, weights_file
from .torchvision_weights import FILE_CHOICES, build_as_with_weights, weights_member

KEYS = ("weights", "output", "strict")


@dataclass(frozen=True)
class WholeModel:
    """The torchvision model a part is taken from. Parts with the same `key` whose module paths do
    not overlap come from one build: at compile time (`model_build`) and in the generated
    `__init__` (whole_models.py), where the model is built, and its weights loaded, once."""

    build: Call  # the builder call
    loading: tuple  # __init__ statements that load a weights file into the model, Input(0)
    part: str  # the part's module path in the model: `backbone`
    file: str | None  # the weights file loaded, if any
    strict: bool
    download: object = None  # the weights the build downloads (code), for the offline guard

    @property
    def key(self) -> tuple:
        return (self.build, self.file, self.strict)

    def built_into(self, target: str, comment: str | None) -> list:
        """`__init__` statements that build the model into `target` (inside the download guard
        when it downloads weights) and load its weights file."""
        return [
            *self._guarded((f"{target} = ", self.build, comment)),
            *((p, substitute(e, [target]), c) for p, e, c in self.loading),
        ]

    def solo(self, attr: str) -> list:
        """The statements of a part whose model no other part shares: `self.<node> = ...`."""
        code = surgery.module_path_code(self.part)
        if not self.loading:
            builder = self.build.func.rsplit(".", 1)[-1]
            call = Call(self.build.func, self.build.args, code)
            return self._guarded((f"{attr} = ", call, f"the {self.part} of {builder}"))
        return [*self.built_into(attr, None), (f"{attr} = ", f"{attr}{code}", f"its {self.part}")]

    def _guarded(self, statement) -> list:
        if self.download is None:
            return [statement]
        from . import download  # imports torch

        return download.guarded(statement, self.download)


@dataclass
class ModelBuild:
    """One meta build of a whole model and the parts taken from it so far."""

    model: object
    parts: list[str] = field(default_factory=list)
    memo: dict = field(default_factory=dict)

    def once(self, name: str, make):
        """`make()` the first time `name` is asked for from this build (a build with weights, a
        weights file checked against the model), then the same value."""
        if name not in self.memo:
            self.memo[name] = make()
        return self.memo[name]


def model_build(key: tuple, path: object, make) -> ModelBuild:
    """A build of the model `key` names from which no part overlapping `path` is taken yet, or a
    new one (`make()`): as in the generated `__init__`, so a part's meta module is its own."""
    cache = pass_cache("torchvision_parts")
    builds = cache.setdefault(key, []) if cache is not None else []
    found = next((b for b in builds if not any(overlaps(str(path), p) for p in b.parts)), None)
    if found is None:
        found = ModelBuild(make())
        builds.append(found)
    return found


def overlaps(a: str, b: str) -> bool:
    """Whether one module path is the other or inside it (`backbone`, `backbone.body`)."""
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")


@dataclass
class TorchvisionPart:
    family: str  # one of ops.WHOLE_MODEL_FAMILIES
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
        opts = backbone_options.parse(node, what)
        attr = f"self.{node.id}"
        weights = self.weights(node, opts)
        args = (Arg("weights", weights), *(Arg(k, literal(v)) for k, v in fixed.items()))
        built = Built(
            init=[],
            call=Call(attr, (Arg(None, Input(0)),)),
            out=None,
            imports={"import torchvision"},
            uses_pretrained=opts.weights is not None,
        )
        path = node.params.get("output")
        loading = ()
        if opts.weights_file:  # a state dict of the whole model (BatchNorm2d, as built without weights)
            loading = tuple(weights_file.loading(node, opts.weights_file, opts.strict, built, Input(0)))
        whole = WholeModel(
            Call(f"torchvision.models.{self.family}.{self.builder}", args),
            loading,
            str(path),
            opts.weights_file,
            opts.strict,
            weights.body if built.uses_pretrained and not opts.weights_file else None,
        )
        build = model_build(
            whole.key, path, lambda: surgery.build_meta(lambda: builder(weights=None, **fixed))
        )
        model = build.model
        names = [n for n, _ in model.named_modules() if n]
        if not isinstance(path, str) or path not in names:
            raise SpecError(
                f"{what} needs `output:` naming one of its submodules"
                + (f", not {path!r}" if path is not None else ""),
                node.param_loc("output") if "output" in node.params else node.op_loc(),
                node=node.id,
                hint=did_you_mean(str(path), names) if path else "for example `output: backbone`",
            )
        build.parts.append(path)
        part = built.module = model.get_submodule(path)
        built.whole_model = whole
        built.init = whole.solo(attr)
        if opts.weights_file:
            loc = node.param_loc("weights")
            built.notes += build.once(
                "checked",
                lambda: weights_file.read_and_check(model, opts.weights_file, opts.strict, loc, node.id),
            )
        elif built.uses_pretrained:
            from . import download  # imports torch

            download.carry(built)
            member = torchvision.models.get_model_weights(self.builder)[opts.weights]
            trained = build.once(
                "trained", lambda: build_as_with_weights(lambda: builder(weights=member, **fixed))
            )
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

    from ...runtime.torchvision_norms import _frozen_batchnorm

    plain, pretrained = dict(part.named_modules()), dict(trained.named_modules())
    differ = {n for n, m in pretrained.items() if type(m) is not type(plain.get(n))}
    swapped = {n for n in differ if isinstance(plain.get(n), nn.BatchNorm2d)}
    eps = {pretrained[n].eps for n in swapped}
    if differ != swapped or any(not isinstance(pretrained[n], FrozenBatchNorm2d) for n in swapped):
        raise mismatch(node, what, f"its layers {', '.join(sorted(differ - swapped)[:3])} differ")
    if len(eps) > 1:
        raise mismatch(node, what, f"its frozen norm layers use several eps values {sorted(eps)}")
    attr = f"self.{node.id}"
    if any(not p.requires_grad for p in trained.parameters()) and node.tuning.freeze is not True:
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
