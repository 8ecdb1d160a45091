"""Any torch.nn layer class by name (`Linear`, `nn.Linear`, `torch.nn.Linear`), with the
constructor arguments a person would compute by hand inferred from the incoming shape."""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass

from ...errors import SpecError
from ...pyfmt import Arg, Call, Input, UnsafeValue, literal
from ..args import check_number
from ..base import (
    Built,
    TensorInfo,
    expect_arity,
    op_failed,
    reject_unknown,
    runs_on_cpu,
    set_outputs,
    shapes_text,
)

LAST, CHANNEL = -1, 1  # which input dim an inferred argument reads

# class name -> {argument: (input index, dim)}. The one table of inferred arguments.
INFERRED = {
    "Linear": {"in_features": (0, LAST)},
    "Bilinear": {"in1_features": (0, LAST), "in2_features": (1, LAST)},
    **{
        f"Conv{k}": {"in_channels": (0, CHANNEL)}
        for k in ("1d", "2d", "3d", "Transpose1d", "Transpose2d", "Transpose3d")
    },
    **{
        f"{n}{k}": {"num_features": (0, CHANNEL)}
        for n in ("BatchNorm", "InstanceNorm")
        for k in ("1d", "2d", "3d")
    },
    "SyncBatchNorm": {"num_features": (0, CHANNEL)},
    "GroupNorm": {"num_channels": (0, CHANNEL)},
    "LayerNorm": {"normalized_shape": (0, LAST)},
    "RMSNorm": {"normalized_shape": (0, LAST)},
    "MultiheadAttention": {"embed_dim": (0, LAST)},
    "TransformerEncoderLayer": {"d_model": (0, LAST)},
    "TransformerDecoderLayer": {"d_model": (0, LAST)},
    **{n: {"input_size": (0, LAST)} for n in ("LSTM", "GRU", "RNN", "LSTMCell", "GRUCell", "RNNCell")},
}
# Layers whose time/sequence dim is second only with batch_first=True; nncompile tensors are
# batch-first, so it is set unless the spec says otherwise.
BATCH_FIRST = frozenset(
    {
        "LSTM",
        "GRU",
        "RNN",
        "MultiheadAttention",
        "TransformerEncoderLayer",
        "TransformerDecoderLayer",
        "Transformer",
        "TransformerEncoder",
        "TransformerDecoder",
    }
)
# The rank (batch included) a layer needs, where torch would silently read a smaller one as
# unbatched input and so mistake the batch dim for channels.
SPATIAL_RANK = {"1d": (3,), "2d": (4,), "3d": (5,)}
RANK_EXCEPTIONS = {"BatchNorm1d": (2, 3), "InstanceNorm1d": (3,), "Flatten": None}
DIM_NAMES = {3: "(B, C, L)", 4: "(B, C, H, W)", 5: "(B, C, D, H, W)", 2: "(B, C)"}
SET_BY_SUBCLASS = {"RNNBase": ("mode",)}  # RNNBase(mode, ...): LSTM/GRU/RNN pass their own mode
CONTAINERS = frozenset(
    {"Sequential", "ModuleList", "ModuleDict", "ParameterList", "ParameterDict", "Module", "Container"}
)


def constructor_params(cls) -> list[inspect.Parameter]:
    """The named constructor parameters; classes declared as `__init__(*args, **kwargs)` (LSTM,
    GRU, RNN) take those of the first base that names them, less what the class sets itself."""
    for klass in cls.__mro__:
        params = [
            p
            for p in list(inspect.signature(klass.__init__).parameters.values())[1:]
            if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]
        if params:
            return [p for p in params if p.name not in SET_BY_SUBCLASS.get(klass.__name__, ())]
    return []


@functools.cache
def nn_class_names() -> list[str]:
    import torch.nn as nn

    return sorted(
        n
        for n, c in vars(nn).items()
        if isinstance(c, type) and issubclass(c, nn.Module) and n not in CONTAINERS and not n.startswith("_")
    )


@dataclass
class TorchNN:
    name: str  # the class name in torch.nn

    def build(self, node, inputs: list[TensorInfo], sources: list[str]) -> Built:
        import torch
        import torch.nn as nn

        cls = getattr(nn, self.name)
        params = constructor_params(cls)
        names = [p.name for p in params]
        self.check_args(node)
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in node.params.items()}
        self.check_rank(node, inputs, sources)
        inferred = self.infer(node, kwargs, inputs, sources)
        if self.name in BATCH_FIRST and "batch_first" in names and "batch_first" not in kwargs:
            inferred["batch_first"] = True
        kwargs.update(inferred)
        missing = [p.name for p in params if p.default is p.empty and p.name not in kwargs]
        if missing:
            raise SpecError(
                f"nn.{self.name} needs " + ", ".join(f"`{m}`" for m in missing),
                node.loc,
                node=node.id,
                hint=f"add `{missing[0]}: ...` to node '{node.id}'",
            )
        self.check_layer_counts(node, kwargs)
        try:
            with torch.device("meta"):
                module = cls(**kwargs)
        except Exception as exc:  # noqa: BLE001 - the layer's own argument checks, reported at the node
            raise SpecError(
                f"nn.{self.name}({_kwargs_text(kwargs)}) cannot be built: {exc}",
                node.loc,
                node=node.id,
                hint="check the arguments against the torch.nn documentation",
            ) from None
        parameters = sum(p.numel() for p in module.parameters())
        cpu = runs_on_cpu(inputs, parameters)
        if cpu:  # built again on the CPU, where initialising it leaves the caller's random state alone
            with torch.random.fork_rng(devices=[]):
                module = cls(**kwargs)
        args = [t.probe(cpu) for t in inputs]
        if self.name == "MultiheadAttention" and len(args) == 1:
            args = args * 3  # self-attention: query = key = value
        try:
            with torch.no_grad():
                out = module(*args)
        except Exception as exc:  # noqa: BLE001 - shape errors surface here
            raise op_failed(node, exc, inputs, sources) from None
        call_args = tuple(Arg(None, Input(i % len(inputs))) for i in range(len(args)))
        built = Built(
            init=[
                (
                    f"self.{node.id} = ",
                    self.constructor(node, params, kwargs),
                    self.note(inferred, inputs, sources),
                )
            ],
            call=Call(f"self.{node.id}", call_args),
            out=None,
            inferred=inferred,
            module=module,
        )
        if self.name == "MultiheadAttention":  # the attention weights (port 1) cost time and memory
            built.unread_calls["1"] = Call(f"self.{node.id}", (*call_args, Arg("need_weights", "False")))
        set_outputs(built, out, node, f"nn.{self.name}")
        return built

    def check_args(self, node) -> None:
        """The node's keys against the constructor's parameters (device and dtype are nncompile's)."""
        import torch.nn as nn

        params = constructor_params(getattr(nn, self.name))
        reject_unknown(node, [p.name for p in params if p.name not in ("device", "dtype")], f"nn.{self.name}")
        for param in params:
            if param.name in node.params:
                check_number(param, node.params[param.name], node.param_loc(param.name), node.id)

    @staticmethod
    def check_layer_counts(node, kwargs: dict) -> None:
        from ...limits import MAX_LAYER_COUNT

        for key, value in kwargs.items():
            if (
                key.startswith("num_")
                and key.endswith("layers")
                and isinstance(value, int)
                and value > MAX_LAYER_COUNT
            ):
                raise SpecError(
                    f"{key} is {value}, above nncompile's limit of {MAX_LAYER_COUNT:,}",
                    node.param_loc(key),
                    node=node.id,
                    hint="is that a typo?",
                )

    def check_rank(self, node, inputs: list[TensorInfo], sources: list[str]) -> None:
        ranks = RANK_EXCEPTIONS.get(self.name, SPATIAL_RANK.get(self.name[-2:]))
        if not ranks or not inputs:
            return
        rank = len(inputs[0].shape)
        if rank not in ranks:
            want = " or ".join(DIM_NAMES[r] for r in ranks)
            hint = f"reshape its input to {want}"
            if rank < min(ranks):
                hint = (
                    "the input has no spatial dims: if it comes from a backbone, take its feature maps "
                    "with `output:` (for example `output: features`) instead of its classifier output"
                )
            raise SpecError(
                f"nn.{self.name} needs input {want}, got {shapes_text(inputs[:1], sources[:1])}",
                node.op_loc(),
                node=node.id,
                hint=hint,
            )

    def infer(self, node, kwargs: dict, inputs: list[TensorInfo], sources: list[str]) -> dict:
        inferred = {}
        for arg, (index, dim) in INFERRED.get(self.name, {}).items():
            expect_arity(node, inputs, index + 1, -1)
            shape = inputs[index].shape
            if len(shape) < 2:
                raise SpecError(
                    f"nn.{self.name} needs a feature dim, got {shapes_text(inputs, sources)}",
                    node.op_loc(),
                    node=node.id,
                )
            value = shape[dim]
            if arg in kwargs:
                given = kwargs[arg]
                if given != value and given != (value,):
                    raise SpecError(
                        f"{arg} is {given!r} but the incoming tensor has {value} "
                        f"({'features' if dim == LAST else 'channels'}): {sources[index]} gives "
                        f"{inputs[index].comment()}",
                        node.param_loc(arg),
                        node=node.id,
                        hint=f"remove `{arg}:` and nncompile infers it ({value}), or fix the layer that "
                        f"feeds '{node.id}'",
                    )
            else:
                inferred[arg] = value
        return inferred

    def constructor(self, node, params, kwargs: dict) -> Call:
        order = [p.name for p in params]
        args = []
        for key in sorted(kwargs, key=lambda k: (order.index(k) if k in order else len(order), k)):
            try:
                args.append(Arg(key, literal(kwargs[key])))
            except UnsafeValue as exc:
                raise SpecError(f"argument '{key}': {exc}", node.param_loc(key), node=node.id) from None
        return Call(f"nn.{self.name}", tuple(args))

    @staticmethod
    def note(inferred: dict, inputs: list[TensorInfo], sources: list[str]) -> str | None:
        from_shape = [k for k in inferred if k != "batch_first"]
        if not from_shape:
            return "batch_first: nncompile tensors put the batch first" if inferred else None
        return f"{', '.join(from_shape)} inferred from {sources[0]} {inputs[0].comment()}"


def _kwargs_text(kwargs: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
