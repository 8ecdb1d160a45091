"""What every op kind produces for a node: its output shapes and the code that builds and calls it."""

from __future__ import annotations

import contextlib
import contextvars
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from ..errors import NncompileError, SpecError, did_you_mean, first_line
from ..pyfmt import Expr
from ..spec.keys import NodeKeys

if TYPE_CHECKING:
    import torch

    from ..errors import Diagnostic
    from ..shapes.blocks import BlockUse
    from ..spec.model import NodeSpec
    from .backbones.torchvision_parts import WholeModel

META_BATCH = 2  # batch size of the meta tensors (BatchNorm refuses a batch of 1 in training mode)
# Layers and tensors this small are run on the CPU at compile time, on zeros: as exact as the meta
# device, and free, where the first op on the meta device imports torch's meta kernels (torch._dynamo
# and sympy, about 1.8 s), a price a model of small layers need never pay. A dense op's work is at
# most its input's elements times its parameters, so CPU_WORK bounds the time (milliseconds).
CPU_ELEMENTS = 1 << 16
CPU_WORK = 1 << 26
CPU_DTYPES = frozenset({"float32", "float64", "int64", "int32", "bool"})


@dataclass(frozen=True)
class TensorInfo:
    """A tensor's shape (batch dim first) and dtype name. `symbols` (for shape comments only)
    names each dim in terms of the spec's symbolic dims (`H/2`) or holds None for a fixed size."""

    shape: tuple[int, ...]
    dtype: str
    symbols: tuple[str | None, ...] = field(default=(), compare=False)
    # A list, one per sample, instead of a tensor: what it holds ("tensors", "dicts {boxes, ...}"),
    # each of the shape after the batch dim where that is not empty (an image list's example size).
    items: str | None = None
    bands: tuple[str, ...] | None = field(default=None, compare=False)  # an input's `bands:`, channel names

    def comment(self) -> str:
        if self.items is not None:
            each = " (" + ", ".join(map(str, self.shape[1:])) + ")" if self.shape[1:] else ""
            return f"list of B {self.items}{each}"
        dims = [
            "B" if i == 0 and d == META_BATCH else (self.symbols[i] if self.symbols else None) or str(d)
            for i, d in enumerate(self.shape)
        ]
        return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"

    def meta(self) -> torch.Tensor:
        import torch

        return torch.empty(self.shape, dtype=getattr(torch, self.dtype), device="meta")

    def probe(self, cpu: bool) -> torch.Tensor:
        """A tensor of this shape to run an op on: zeros on the CPU (see CPU_ELEMENTS), else meta."""
        import torch

        return torch.zeros(self.shape, dtype=getattr(torch, self.dtype)) if cpu else self.meta()

    @staticmethod
    def of(tensor: torch.Tensor) -> TensorInfo:
        return TensorInfo(tuple(tensor.shape), str(tensor.dtype).removeprefix("torch."))


def runs_on_cpu(inputs: list[TensorInfo], parameters: int = 0) -> bool:
    """Whether an op of `parameters` parameters on `inputs` is small enough to run on the CPU."""
    elements = [math.prod(i.shape) for i in inputs]
    return (
        all(i.dtype in CPU_DTYPES and i.items is None for i in inputs)
        and max(elements, default=0) <= CPU_ELEMENTS
        and parameters <= CPU_ELEMENTS
        and sum(elements) * max(parameters, 1) <= CPU_WORK
    )


# What op kinds build once per pass of the shapes stage over a graph (see `one_pass`).
_PASS_CACHE: contextvars.ContextVar[dict | None] = contextvars.ContextVar("pass_cache", default=None)


@contextlib.contextmanager
def one_pass():
    """One pass of the shapes stage over a graph: op kinds may keep what they build once per pass
    (torchvision_parts: one meta build of a model for all its parts) in `pass_cache`."""
    token = _PASS_CACHE.set({})
    try:
        yield
    finally:
        _PASS_CACHE.reset(token)


def pass_cache(kind: str) -> dict | None:
    """The cache of op kind `kind` for the current pass; None outside one (nothing is kept)."""
    cache = _PASS_CACHE.get()
    return None if cache is None else cache.setdefault(kind, {})


@contextlib.contextmanager
def fake_meta():
    """A fake-tensor mode in which `fake(info)` is a meta tensor of that shape and dtype. Code that
    reads a tensor's values only to take a faster path (transformers skips an all-ones attention
    mask) treats fake tensors as traced and does not read them, which a meta tensor cannot serve."""
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode

    mode = FakeTensorMode(allow_non_fake_inputs=True)

    def fake(info: TensorInfo, device: str = "meta"):
        """`device`: where the module it feeds was built (the CPU for small layers: runs_on_cpu)."""
        if device == "meta":
            return mode.from_tensor(info.meta())
        return torch.empty(info.shape, dtype=getattr(torch, info.dtype), device=device)  # fake in mode

    with mode:
        yield fake


@dataclass(frozen=True)
class Port:
    """One named output of a node with several (`node.name`) and how forward() reaches it."""

    info: TensorInfo
    access: str  # appended to the node's value in code, e.g. '["layer3"]' or '[0]'


@dataclass(frozen=True)
class WeightsInput:
    """What pretrained weights expect of their input, read from their own metadata (no weights
    loaded): the normalisation, the evaluation preprocessing, the training size."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: str  # where they come from, for the generated comment
    resize: tuple[int, ...] | None = None  # torchvision's Resize size: (shorter side,) or (height, width)
    crop: int | None = None  # a centre crop of this size
    interpolation: str = "bilinear"  # torchvision.transforms.InterpolationMode name, lower case
    fixed_size: bool = False  # the architecture takes only `crop` (a ViT's position embeddings)
    scale: bool = True  # integer pixels are divided by their maximum (RGB images), not raw values
    new_channels: int = 0  # input channels the weights never saw: their statistics are an average


@dataclass
class Built:
    """A node after shape propagation: the statements that build it, the call, and what it returns."""

    init: list[tuple[str, Expr, str | None]]  # (target prefix, expression, comment) in __init__
    call: Expr  # the forward() expression, with Input placeholders
    out: TensorInfo | None  # None when the node only has ports
    ports: dict[str, Port] = field(default_factory=dict)
    inferred: dict[str, object] = field(default_factory=dict)
    imports: set[str] = field(default_factory=set)
    module: torch.nn.Module | None = None  # built at compile time (meta, or CPU when small), for counts
    uses_pretrained: bool = False
    notes: list[str] = field(default_factory=list)  # facts for the generated header
    block: BlockUse | None = None  # the block the node uses, each copy's inner graph with shapes
    new_layers: list[str] = field(default_factory=list)  # module paths inside `module` not pretrained
    helpers: dict[str, str] = field(default_factory=dict)  # name -> source of a module-level function
    default_frozen: list[str] = field(default_factory=list)  # frozen when the spec sets no freeze/trainable
    forward_params: list[str] = field(default_factory=list)  # more parameters of the model's forward()
    returns: str | None = None  # the model's return annotation when this node is its output
    shares: str | None = None  # the node whose module this node calls again (it owns no parameters)
    whole_model: WholeModel | None = None  # the torchvision model this node is a part of
    per_item: bool = False  # the call folds dim 1 of its inputs into the batch and unfolds its result
    # constructor arguments holding a file's path: (argument name, the file's absolute path, spec location)
    path_args: list[tuple[str, str, object]] = field(default_factory=list)
    warnings: list[Diagnostic] = field(default_factory=list)  # of severity "warning"
    # port -> the call to make instead when nothing reads that port (the layer then skips
    # computing it: nn.MultiheadAttention's weights with need_weights=False)
    unread_calls: dict[str, Expr] = field(default_factory=dict)
    # parameter names inside `module` that the node's output never reads (no gradient reaches
    # them): frozen whatever the spec says, so DDP and the optimizer see only what trains
    unused: list[str] = field(default_factory=list)
    adapters: list = field(default_factory=list)  # shapes.adapters.Resolved: the node's adapters, resolved
    weights_input: WeightsInput | None = None  # what the node's pretrained weights expect of its input

    def parameter_counts(self) -> tuple[int, int]:
        """(all parameters, those loaded from pretrained weights) of the meta module."""
        if self.module is None:
            return 0, 0
        total = sum(p.numel() for p in self.module.parameters())
        if not self.uses_pretrained:
            return total, 0
        new = sum(p.numel() for path in self.new_layers for p in self.module.get_submodule(path).parameters())
        return total, total - new - sum(a.params for a in self.adapters)


def set_outputs(built: Built, out, node: NodeSpec, what: str, hint: str | None = None) -> None:
    """Record what a node's module returned: one tensor is the node's value; a tuple, list or dict
    holding tensors gives ports (`node.0`, `node.name`; entries that are not tensors get none)."""
    import torch

    from ..pyfmt import literal

    if isinstance(out, torch.Tensor):
        built.out = TensorInfo.of(out)
        return
    if isinstance(out, tuple | list):
        built.ports = {
            str(i): Port(TensorInfo.of(t), f"[{i}]") for i, t in enumerate(out) if isinstance(t, torch.Tensor)
        }
    elif isinstance(out, dict):
        built.ports = {
            str(k): Port(TensorInfo.of(t), f"[{literal(k)}]")
            for k, t in out.items()
            if isinstance(t, torch.Tensor)
        }
    if not built.ports:
        raise SpecError(
            f"{what} returns {type(out).__name__}, not a tensor, a tuple or a dict of tensors",
            node.op_loc(),
            node=node.id,
            hint=hint,
        )


class OpKind(Protocol):
    """An op kind turns a node and its input shapes into a `Built` (or raises a located SpecError).

    One whose arguments can be checked without input shapes also has `check_args(node)`, which
    shapes.py runs on a node whose input failed, so the node's own mistakes are reported too."""

    def build(self, node: NodeSpec, inputs: list[TensorInfo], sources: list[str]) -> Built: ...


def import_optional(node: NodeSpec, package: str):
    """An optional library a node's op needs (timm, transformers), imported only then, or a
    located error with the pip command."""
    import importlib

    try:
        return importlib.import_module(package)
    except ImportError:
        raise SpecError(
            f"{node.op} needs the {package} package, which is not installed",
            node.op_loc(),
            node=node.id,
            hint=f"pip install {package} (or pip install 'nncompile[{package}]')",
        ) from None


def shapes_text(inputs: list[TensorInfo], sources: list[str]) -> str:
    return ", ".join(f"{s} {i.comment()}" for s, i in zip(sources, inputs, strict=True))


def op_failed(
    node: NodeSpec, exc: Exception, inputs: list[TensorInfo], sources: list[str], hint: str | None = None
) -> SpecError:
    """A SpecError for an op that raised on its input, naming the incoming shapes."""
    return SpecError(
        f"{node.op} fails on its input {shapes_text(inputs, sources)}: {first_line(exc)}",
        node.op_loc(),
        node=node.id,
        hint=hint,
    )


def expect_arity(node: NodeSpec, inputs: list[TensorInfo], lo: int, hi: int | None = None) -> None:
    hi = lo if hi is None else hi
    if not lo <= len(inputs) <= (hi if hi >= 0 else len(inputs)):
        want = f"{lo}" if lo == hi else f"at least {lo}" if hi < 0 else f"{lo} to {hi}"
        raise SpecError(
            f"{node.op} takes {want} input(s), got {len(inputs)}",
            node.op_loc(),
            node=node.id,
            hint="list its inputs with `in: [a, b]`",
        )


def reject_unknown(node: NodeSpec, allowed, what: str) -> None:
    """Every key of the node that is neither one of `allowed` (the op's own arguments) nor a key
    any node takes, each with a did-you-mean over both."""
    common = [k for k in NodeKeys.key_names() if k != "op"]
    own = sorted(allowed)
    takes = f"it takes: {', '.join(own)}; every node also takes: " if own else "every node takes: "
    errors = [
        SpecError(
            f"unknown argument '{key}' for {what}",
            node.doc.key_loc("nodes", node.id, key),
            node=node.id,
            hint=did_you_mean(key, [*own, *common]) or takes + ", ".join(common),
        )
        for key in node.params
        if key not in allowed
    ]
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise NncompileError([e.diagnostics[0] for e in errors])
