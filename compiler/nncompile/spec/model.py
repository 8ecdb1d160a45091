"""Stage 1, load: a YAML spec file -> a typed `Spec` whose every part knows its source location.

Each mapping's keys are declared once, in keys.py, and validated there (checking.py words the
mistakes); this module checks what needs more than one mapping (dims, references, names, which
keys a task kind takes) and builds the typed `Spec` the later stages read.
"""

from __future__ import annotations

import hashlib
import keyword
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from ..errors import Collector, Loc, NncompileError, SpecError
from ..limits import MAX_TENSOR_ELEMENTS
from . import compose, yamlsrc
from .checking import Keys, check, json_type, number_hint
from .keys import (
    FORMAT_VERSION,
    BlockKeys,
    EmaKeys,
    HeadKeys,
    InputKeys,
    LossKeys,
    MetricKeys,
    NodeKeys,
    NormalizeKeys,
    OptimizerKeys,
    SchedulerKeys,
    SpecKeys,
    TaskKeys,
)
from .tuning import Tuning


@dataclass(frozen=True)
class Ref:
    """A reference to a value: an input, a node, or one port of a node (`node.port`)."""

    node: str
    port: str | None
    loc: Loc

    def __str__(self) -> str:
        return self.node if self.port is None else f"{self.node}.{self.port}"


@dataclass
class InputSpec:
    name: str
    shape: tuple[int, ...]  # example sizes (a symbolic dim at its example size)
    dtype: str
    loc: Loc
    symbols: tuple[str | None, ...] = ()  # per dim: the symbol's name, or None for a fixed size
    is_list: bool = False  # a list of tensors of free size, one per sample (`list: true`)
    bands: tuple[str, ...] | None = None  # the name of each channel (`bands:`)
    # `normalize:`: "weights", or the (mean, std) per channel given by hand; None: left as it comes
    normalize: str | tuple[tuple[float, ...], tuple[float, ...]] | None = None
    normalize_loc: Loc | None = None


@dataclass
class DimSpec:
    """A symbolic dim: the graph is compiled at `example` and checked again at `check`."""

    name: str
    example: int
    check: int
    loc: Loc


@dataclass
class NodeSpec:
    id: str
    op: str
    inputs: tuple[Ref, ...] | None  # None: take the node above (the implicit chain)
    params: dict[str, object]  # every key but the common ones, for the op kind to validate
    loc: Loc
    doc: yamlsrc.Document = field(repr=False)  # a BlockDocument for the nodes of a block
    tuning: Tuning = field(default_factory=Tuning)  # how it trains: freezing, learning rate, unfreezing
    shares: str | None = None  # the node whose module this one applies again (`op` is that node's)
    per_item: int | None = None  # the input dim folded into the batch around the op
    # `in:` as a mapping: the op takes one dict, these keys in order, of the `inputs` tensors
    in_keys: tuple[str, ...] | None = None

    def param_loc(self, key: str) -> Loc:
        return self.doc.loc("nodes", self.id, key)

    def op_loc(self) -> Loc:
        return self.doc.loc("nodes", self.id, "op")


@dataclass
class OutputSpec:
    name: str
    ref: Ref


@dataclass
class CallSpec:
    """A class the spec names with its arguments: a loss, a metric, an optimizer or a scheduler."""

    name: str | None  # None: the default for its place
    args: dict[str, object]
    loc: Loc  # the whole entry
    arg_locs: dict[str, Loc] = field(default_factory=dict)

    def arg_loc(self, key: str) -> Loc:
        return self.arg_locs.get(key, self.loc)


@dataclass
class MetricSpec:
    log_name: str  # the name it is logged under, after the stage prefix
    call: CallSpec


@dataclass
class HeadSpec:
    """One trained output: its kind, loss, weight in the total loss, and metrics."""

    output: str | None  # None: the model's only output
    kind: str
    loss: CallSpec
    weight: float
    metrics: list[MetricSpec] | None  # None: the kind's default metrics
    loc: Loc
    output_loc: Loc  # where the output is named (the task's `output:` or the head's key)


@dataclass
class OptimizerSpec:
    name: str
    lr: float
    args: dict[str, object]
    loc: Loc
    arg_locs: dict[str, Loc] = field(default_factory=dict)
    decay_norm_and_bias: bool = False  # False: norm layers, biases and tokens get no weight decay


@dataclass
class SchedulerSpec:
    call: CallSpec
    interval: str | None  # None: the scheduler's natural interval
    frequency: int
    monitor: str | None
    loc: Loc


@dataclass
class TaskSpec:
    kind: str
    heads: list[HeadSpec]  # one for every kind but multitask (several) and custom (none)
    optimizer: OptimizerSpec
    scheduler: SchedulerSpec | None
    loc: Loc
    loss: CallSpec | None = None  # custom only: a loss made available as self.loss_fn
    aux: str | None = None  # segmentation only: the auxiliary output (None: `aux` if the model has it)
    aux_weight: float = 0.5  # segmentation only: its weight in the loss (torchvision's reference: 0.5)
    ema: EmaSpec | None = None  # an exponential moving average of the weights


@dataclass
class EmaSpec:
    decay: float
    loc: Loc


@dataclass
class BlockSpec:
    """A reusable subgraph: `params` maps each parameter to its default (REQUIRED: none)."""

    name: str
    params: dict[str, object]
    inputs: list[str]
    nodes: list[NodeSpec]
    output: Ref | None  # None: the last node
    loc: Loc


REQUIRED = object()  # the default of a block parameter that every use must set


class BlockDocument:
    """The spec document seen from inside one block: the path ("nodes", id, key) of a block's node
    locates ("blocks", name, "nodes", id, key), so op kinds report block nodes at their own lines."""

    def __init__(self, doc: yamlsrc.Document, block: str):
        self.parent, self.block = doc, block
        self.file, self.text, self.data = doc.file, doc.text, doc.data

    def loc(self, *path) -> Loc:
        return self.parent.loc("blocks", self.block, *path)

    def key_loc(self, *path) -> Loc:
        return self.parent.key_loc("blocks", self.block, *path)


@dataclass
class Spec:
    path: str  # as given by the user, for messages and the generated header
    sha256: str
    name: str
    inputs: list[InputSpec]
    nodes: list[NodeSpec]
    outputs: list[OutputSpec]
    task: TaskSpec | None  # None for the inner graph of a block
    doc: yamlsrc.Document = field(repr=False)
    dims: dict[str, DimSpec] = field(default_factory=dict)
    blocks: dict[str, BlockSpec] = field(default_factory=dict)
    bases: tuple[compose.Source, ...] = ()  # the spec files `extends:` merged under it
    overrides: tuple[str, ...] = ()  # the `--set path=value` options merged over it

    def node(self, node_id: str) -> NodeSpec:
        return self._by_id[node_id]

    @cached_property
    def _by_id(self) -> dict[str, NodeSpec]:  # a dict, so a 10,000-node spec is not quadratic
        return {n.id: n for n in self.nodes}


def load(path: str | Path, errors: Collector | None = None, overrides: Sequence[str] = ()) -> Spec:
    """Read and validate a spec file, its bases (`extends:`) merged under it and its `overrides`
    (`--set path=value`) over it. With `errors`, mistakes that leave the graph intact (an unknown
    top-level key, a node's tuning key, anything in `task:`) go there and the spec is returned, so
    the later stages can still check the graph; without it they are raised."""
    return _validated(compose.load(path, overrides), errors)


def loads(
    text: str,
    file: str = "<spec>",
    sha256: str | None = None,
    errors: Collector | None = None,
    overrides: Sequence[str] = (),
) -> Spec:
    sha256 = sha256 or hashlib.sha256(text.encode("utf-8")).hexdigest()
    return _validated(compose.compose(text, file, sha256, overrides), errors)


def _validated(composed: compose.Composed, errors: Collector | None) -> Spec:
    spec = _Validator(composed.doc).spec(composed.sources[0].sha256, errors)
    spec.bases = tuple(dict.fromkeys(composed.sources[1:]))  # a base two others extend, once
    spec.overrides = composed.overrides
    return spec


def is_identifier(name: object) -> bool:
    return isinstance(name, str) and name.isidentifier() and name.isascii() and not keyword.iskeyword(name)


DICT_KEY = re.compile(r"[A-Za-z0-9_]+")  # a key of an `in:` mapping: a port name of the node's output


def parse_ref(text: object, loc: Loc) -> Ref:
    if not isinstance(text, str) or not text:
        raise SpecError(f"a reference must be a node name or `node.port`, not {text!r}", loc)
    node, _, port = text.partition(".")
    if not node or (port == "" and text.endswith(".")):
        raise SpecError(f"malformed reference '{text}'", loc, hint="write `node` or `node.port`")
    return Ref(node, port or None, loc)


class _Validator:
    def __init__(self, doc: yamlsrc.Document):
        self.doc = doc
        self.errors = Collector()
        self.graph_mistakes = 0  # those among the errors that leave the graph unchecked
        self.bad_dims: set[str] = set()  # dims already reported: a shape using one says nothing more

    def add(self, err: SpecError, graph: bool = True) -> None:
        """Report a mistake; `graph=False`: one the graph can be checked in spite of (a tuning key,
        anything in `task:`), so the later stages still run and report theirs."""
        self.errors.add(err)
        self.graph_mistakes += graph

    def keys(self, model: type[Keys], raw: dict, path: tuple, what: str, graph: bool = True):
        """`raw` validated with its keys' model, each mistake reported; None when a required key
        is missing or wrong."""
        checked = check(model, raw, path, self.doc, what)
        for _, err in checked.errors:
            self.add(err, graph)
        return checked.value

    def spec(self, sha256: str, later: Collector | None = None) -> Spec:
        data = self.doc.data
        if not isinstance(data, dict):
            raise SpecError(
                "the spec's top level must be a mapping",
                self.doc.loc(),
                hint="start with `nncompile: 1` then `name:`, `inputs:`, `nodes:`, `task:`",
            )
        checked = check(SpecKeys, data, (), self.doc, "the spec")
        for key, err in checked.errors:  # unknown keys leave the rest checkable, wrong ones do not
            self.add(err, graph=key in SpecKeys.model_fields)
        top = checked.value
        if top is None or self.graph_mistakes:
            self.errors.raise_if_any()
        if top.nncompile != FORMAT_VERSION:
            raise SpecError(
                f"unsupported spec format version {top.nncompile!r}",
                self.doc.loc("nncompile"),
                hint=f"this nncompile reads `nncompile: {FORMAT_VERSION}`",
            )
        if not is_identifier(top.name):
            raise SpecError(
                f"name {top.name!r} is not a Python identifier",
                self.doc.loc("name"),
                hint="use a class name such as CustomResNet",
            )
        dims = self.dims(top.dims or {})
        inputs = self.inputs(top.inputs, dims)
        nodes = self.nodes(top.nodes)
        outputs = self.outputs(top.outputs, nodes)
        blocks = self.blocks(top.blocks or {})
        graph_ok = not self.graph_mistakes
        task = self.task(top.task)
        if later is not None and graph_ok:
            later.add(NncompileError(self.errors.diagnostics))
        else:
            self.errors.raise_if_any()
        return Spec(self.doc.file, sha256, top.name, inputs, nodes, outputs, task, self.doc, dims, blocks)

    def dims(self, raw: dict) -> dict[str, DimSpec]:
        out = {}
        for name, value in raw.items():
            loc = self.doc.loc("dims", name)
            sizes = value if isinstance(value, list) else [value]
            if not is_identifier(name):
                self.add(SpecError(f"dim name {name!r} is not an identifier", loc, hint="for example H"))
            elif len(sizes) not in (1, 2) or not all(
                isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in sizes
            ):
                self.bad_dims.add(name)
                self.add(
                    SpecError(
                        f"dim '{name}' needs a positive example size or two, got {value!r}",
                        loc,
                        hint=f"for example `{name}: 64` (checked at 64 and 128) or `{name}: [64, 96]`",
                    )
                )
            elif len(sizes) == 2 and sizes[0] == sizes[1]:
                self.bad_dims.add(name)
                self.add(SpecError(f"dim '{name}' lists the same size twice", loc))
            else:
                # default check sizes differ in ratio per dim (x2, x3, ...) so each dim can be told apart
                check = sizes[1] if len(sizes) == 2 else (2 + len(out)) * sizes[0]
                out[name] = DimSpec(name, sizes[0], check, loc)
        return out

    def blocks(self, raw: dict) -> dict[str, BlockSpec]:
        out = {}
        for name, body in raw.items():
            path = ("blocks", name)
            loc = self.doc.key_loc(*path)
            if not is_identifier(name):
                self.add(SpecError(f"block name {name!r} is not a Python identifier", loc))
                continue
            if not isinstance(body, dict):
                self.add(SpecError(f"block '{name}' must be a mapping with `nodes:`", loc))
                continue
            block = self.keys(BlockKeys, body, path, f"block '{name}'")
            if block is None:  # no `nodes:`
                continue
            params = block.params if block.params is not None else {}
            for i, param in enumerate(params):
                if not is_identifier(param):
                    where = (*path, "params", i) if isinstance(params, list) else (*path, "params")
                    self.add(
                        SpecError(f"block parameter {param!r} is not an identifier", self.doc.loc(*where))
                    )
            if isinstance(params, list):  # required parameters (not a list of dicts: those were reported)
                params = dict.fromkeys((p for p in params if is_identifier(p)), REQUIRED)
            for i, inp in enumerate(block.inputs):
                if inp in block.inputs[:i]:
                    self.add(
                        SpecError(f"block input '{inp}' is listed twice", self.doc.loc(*path, "inputs", i))
                    )
                elif not is_identifier(inp):
                    self.add(
                        SpecError(
                            f"block input {inp!r} is not an identifier", self.doc.loc(*path, "inputs", i)
                        )
                    )
            nodes = self.nodes(block.nodes, BlockDocument(self.doc, name))
            output = None
            if block.output is not None:
                try:
                    output = parse_ref(block.output, self.doc.loc(*path, "output"))
                except SpecError as err:
                    self.add(err)
            out[name] = BlockSpec(name, dict(params), list(block.inputs), nodes, output, loc)
        return out

    def inputs(self, raw: dict, dims: dict[str, DimSpec]) -> list[InputSpec]:
        if not raw:
            raise SpecError(
                "`inputs` must map at least one input name to a shape",
                self.doc.loc("inputs"),
                hint="for example `inputs: {image: [3, 224, 224]}`",
            )
        out = []
        for name, value in raw.items():
            path = ("inputs", name)
            dtype, is_list, keys = "float32", False, None
            if isinstance(value, dict):
                keys = self.keys(InputKeys, value, path, f"input '{name}'")
                if keys is None:  # no shape
                    continue
                dtype, is_list, value, path = keys.dtype, keys.is_list, keys.shape, (*path, "shape")
            symbols = (
                tuple(d if isinstance(d, str) else None for d in value) if isinstance(value, list) else ()
            )
            shape = self.shape(value, path, dims)
            loc = self.doc.key_loc("inputs", name)
            spec = InputSpec(name, shape, dtype, loc, symbols if any(symbols) else (), is_list)
            if keys is not None and shape:
                self.channels(spec, keys)
            out.append(spec)
        return out

    def channels(self, spec: InputSpec, keys: InputKeys) -> None:
        """`bands:` and `normalize:` of an input, checked against its channels (dim 0 of its shape)."""
        path = ("inputs", spec.name)
        channels = spec.shape[0]
        if keys.bands is not None:
            spec.bands = self.bands(keys.bands, channels, path)
        if keys.normalize is None:
            return
        spec.normalize_loc = self.doc.loc(*path, "normalize")
        if isinstance(keys.normalize, str):
            if keys.normalize == "weights":
                spec.normalize = "weights"
            else:
                self.add(
                    SpecError(
                        f"unknown normalisation {keys.normalize!r}",
                        spec.normalize_loc,
                        hint="`normalize: weights` (from the pretrained weights) or `normalize: {mean: [...], std: [...]}`",
                    )
                )
            return
        given = self.keys(NormalizeKeys, keys.normalize, (*path, "normalize"), "`normalize:`")
        if given is None:
            return
        stats = []
        for key in ("mean", "std"):
            values = getattr(given, key)
            at = self.doc.loc(*path, "normalize", key)
            numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
            if not numbers or len(values) not in (1, channels):
                self.add(
                    SpecError(
                        f"`normalize: {key}` must be {channels} numbers, one per channel, not {values!r}",
                        at,
                        hint=f"the input has {channels} channels (dim 0 of its shape)",
                    )
                )
                return
            if key == "std" and any(v <= 0 for v in values):
                self.add(SpecError(f"`normalize: std` must be positive, not {values!r}", at))
                return
            stats.append(tuple(float(v) for v in values) * (channels if len(values) == 1 else 1))
        spec.normalize = (stats[0], stats[1])

    def bands(self, bands: list, channels: int, path: tuple) -> tuple[str, ...] | None:
        """The band names, one per channel, none twice."""
        at = self.doc.loc(*path, "bands")
        for i, band in enumerate(bands):
            if not isinstance(band, str) or not band:
                self.add(SpecError(f"band {band!r} is not a name", self.doc.loc(*path, "bands", i)))
                return None
            if band in bands[:i]:
                self.add(
                    SpecError(
                        f"band {band!r} is listed twice",
                        self.doc.loc(*path, "bands", i),
                        hint="each channel has its own band name",
                    )
                )
                return None
        if len(bands) != channels:
            self.add(
                SpecError(
                    f"`bands:` names {len(bands)} bands but the input has {channels} channels",
                    at,
                    hint="name one band per channel (dim 0 of `shape`)",
                )
            )
            return None
        return tuple(bands)

    def shape(self, value, path: tuple, dims: dict[str, DimSpec]) -> tuple[int, ...]:
        if not isinstance(value, list):
            self.add(
                SpecError(
                    "a shape must be a list of dims without the batch dim",
                    self.doc.loc(*path),
                    hint="for example [3, 224, 224]",
                )
            )
            return ()
        shape = []
        ok = True
        for i, dim in enumerate(value):
            if isinstance(dim, str) and dim in dims:
                shape.append(dims[dim].example)
                continue
            good = isinstance(dim, int) and not isinstance(dim, bool) and dim > 0
            ok = ok and good
            if isinstance(dim, str) and dim in self.bad_dims:
                pass  # its size was reported under `dims:`
            elif isinstance(dim, str) and is_identifier(dim):
                self.add(
                    SpecError(
                        f"symbolic dim '{dim}' has no example size",
                        self.doc.loc(*path, i),
                        hint=f"add `dims: {{{dim}: 64}}` at the top level (any size the model accepts)",
                    )
                )
            elif not good:
                self.add(
                    SpecError(
                        f"dim {dim!r} is not a positive integer or a symbol name",
                        self.doc.loc(*path, i),
                        hint=number_hint(dim, integer=True),
                    )
                )
            shape.append(dim)
        if ok and math.prod(shape) > MAX_TENSOR_ELEMENTS:
            self.add(
                SpecError(
                    f"shape {value} has {math.prod(shape):,} elements per sample, more than the "
                    f"limit of {MAX_TENSOR_ELEMENTS:,}",
                    self.doc.loc(*path),
                    hint="is a dim mistyped? the limit is in nncompile/limits.py",
                )
            )
        return tuple(shape)

    def nodes(self, raw: dict, doc=None) -> list[NodeSpec]:
        doc = doc or self.doc
        if not raw:
            raise SpecError(
                "`nodes` must map at least one node id to a node",
                doc.loc("nodes"),
                hint="for example `nodes: {fc: {op: Linear, out_features: 10}}`",
            )
        out = []
        for node_id, body in raw.items():
            if node := self.node(node_id, {"op": body} if isinstance(body, str) else body, doc):
                out.append(node)
        return out

    def node(self, node_id: str, body, doc) -> NodeSpec | None:
        path = ("nodes", node_id)
        if not isinstance(body, dict):
            self.add(
                SpecError(f"node '{node_id}' must be a mapping with an `op`", doc.loc(*path), node=node_id)
            )
            return None
        if "op" not in body and "shares" not in body:
            self.add(
                SpecError(
                    f"node '{node_id}' is missing the required key 'op'",
                    doc.loc(*path),
                    hint=f"add `op:` ({NodeKeys.model_fields['op'].description})",
                )
            )
        checked = check(NodeKeys, body, path, doc, f"node '{node_id}'", node=node_id)
        for key, err in checked.errors:  # a tuning key's mistake leaves the graph checkable
            self.add(err, graph=key not in Tuning.model_fields)
        keys = checked.value
        if "shares" in body:
            if not self.sharing(node_id, body, keys.shares, path, doc):
                return None
        elif keys.op is None:
            return None
        inputs = in_keys = None
        if keys.in_ is not None:
            try:
                inputs, in_keys = self.wiring(keys.in_, path, doc)
            except SpecError as err:
                self.add(err)
                return None
            if not inputs:
                self.add(SpecError("`in` lists no inputs", doc.loc(*path, "in"), node=node_id))
                return None
        return NodeSpec(
            node_id,
            keys.op or "",  # "" for a node that shares another's module
            inputs,
            dict(keys.model_extra),
            doc.key_loc(*path),
            doc,
            keys.tuning(),
            keys.shares,
            keys.per_item,
            in_keys,
        )

    def wiring(self, raw, path: tuple, doc) -> tuple[tuple[Ref, ...], tuple[str, ...] | None]:
        """A node's `in:`: one reference, a list of them, or a mapping `{name: ref}` whose names
        key the one dict of tensors the op takes (`torchvision.ops.FeaturePyramidNetwork`)."""
        if isinstance(raw, dict):
            for key in raw:  # yamlsrc makes every key a string
                if not DICT_KEY.fullmatch(key):
                    raise SpecError(
                        f"`in` key {key!r} is not a name of letters, digits and _",
                        doc.key_loc(*path, "in", key),
                        node=path[-1],
                        hint="the keys become the layer's dict keys and its ports: rename it, for example feat0",
                    )
            refs = tuple(parse_ref(r, doc.loc(*path, "in", k)) for k, r in raw.items())
            return refs, tuple(raw)
        if isinstance(raw, list):
            return tuple(parse_ref(r, doc.loc(*path, "in", i)) for i, r in enumerate(raw)), None
        return (parse_ref(raw, doc.loc(*path, "in")),), None

    def sharing(self, node_id: str, body: dict, shares: str | None, path: tuple, doc) -> bool:
        """A node with `shares:` names the node it applies again and takes only `in` and `per_item`."""
        extra = [k for k in body if k not in ("shares", "in", "per_item")]
        for key in extra:
            self.add(
                SpecError(
                    f"node '{node_id}' shares the module of '{body['shares']}', so it takes no `{key}`",
                    doc.key_loc(*path, key),
                    node=node_id,
                    hint="a shared module is built, frozen and tuned once, at the node it shares: "
                    "set arguments there; this node takes `in:` (and `per_item:`)",
                )
            )
        return shares is not None and not extra

    def outputs(self, raw, nodes: list[NodeSpec]) -> list[OutputSpec]:
        if raw is None:
            if not nodes:
                return []
            last = nodes[-1]
            return [OutputSpec(last.id, Ref(last.id, None, last.loc))]
        # (name, reference, location); a string or list names each output after its node
        if isinstance(raw, str):
            entries = [(raw.split(".")[0], raw, self.doc.loc("outputs"))]
        elif isinstance(raw, list):
            entries = [(str(r).split(".")[0], r, self.doc.loc("outputs", i)) for i, r in enumerate(raw)]
        else:
            entries = [(name, r, self.doc.loc("outputs", name)) for name, r in raw.items()]
        out: list[OutputSpec] = []
        for name, ref, loc in entries:
            if any(o.name == name for o in out):
                self.add(
                    SpecError(
                        f"two outputs are named '{name}'",
                        loc,
                        hint=f"name them with a mapping: `outputs: {{{name}_a: ..., {name}_b: ...}}`",
                    )
                )
                continue
            if not is_identifier(name):
                self.add(SpecError(f"output name {name!r} is not a Python identifier", loc))
                continue
            try:
                out.append(OutputSpec(name, parse_ref(ref, loc)))
            except SpecError as err:
                self.add(err)
        return out

    def task(self, raw: dict) -> TaskSpec | None:
        path = ("task",)
        task = self.keys(TaskKeys, raw, path, "the task", graph=False)
        if task is None:  # no kind
            return None
        kind, loc = task.kind, self.doc.loc(*path)
        optimizer = self.optimizer(task.optimizer or {}, (*path, "optimizer"))
        scheduler = (
            self.scheduler(task.scheduler, (*path, "scheduler")) if task.scheduler is not None else None
        )
        heads: list[HeadSpec] = []
        loss = None
        if kind == "multitask":
            self.reject(
                raw,
                path,
                ("output", "loss", "metrics"),
                "a multitask task sets these per head, under `heads:`",
            )
            heads = self.heads(task.heads, (*path, "heads"))
        elif kind == "detection":
            self.reject(
                raw,
                path,
                ("loss", "metrics", "heads", "aux", "aux_weight"),
                "a detection model computes its own losses; validation logs mAP",
            )
            output_loc = self.doc.loc(*path, "output")
            heads = [HeadSpec(task.output, "detection", CallSpec(None, {}, loc), 1.0, [], loc, output_loc)]
        elif kind == "custom":
            self.reject(
                raw, path, ("output", "metrics", "heads"), "a custom task's training_step is yours to write"
            )
            if task.loss is not None:
                loss = self.call(task.loss, (*path, "loss"), LossKeys, "the loss")
        else:
            self.reject(raw, path, ("heads",), "`heads:` is for `kind: multitask`")
            if kind != "segmentation":
                self.reject(raw, path, ("aux", "aux_weight"), "`aux:` is for `kind: segmentation`")
            heads = [self.head(task, path, kind, task.output, self.doc.loc(*path, "output"))]
        ema = self.ema(task.ema, (*path, "ema")) if task.ema is not None else None
        return TaskSpec(kind, heads, optimizer, scheduler, loc, loss, task.aux, float(task.aux_weight), ema)

    def ema(self, raw: dict, path: tuple) -> EmaSpec:
        ema = self.keys(EmaKeys, raw, path, "the EMA", graph=False)
        return EmaSpec(float(ema.decay), self.doc.loc(*path))

    def reject(self, raw: dict, path: tuple, keys: tuple[str, ...], hint: str) -> None:
        for key in keys:
            if key in raw:
                self.add(
                    SpecError(
                        f"`{key}` does not apply to a task of kind {raw.get('kind')!r}",
                        self.doc.key_loc(*path, key),
                        hint=hint,
                    ),
                    graph=False,
                )

    def heads(self, raw: dict | None, path: tuple) -> list[HeadSpec]:
        if not raw:
            self.add(
                SpecError(
                    "a multitask task needs `heads:` mapping each trained output to its loss",
                    self.doc.loc(*path),
                    hint="for example `heads: {label: {kind: multiclass}, box: {kind: regression, weight: 0.5}}`",
                ),
                graph=False,
            )
            return []
        out = []
        for name, body in raw.items():
            head_path = (*path, name)
            if not isinstance(body, dict):
                self.add(
                    SpecError(
                        f"head '{name}' must be a mapping with a `kind`",
                        self.doc.loc(*head_path),
                        hint="for example `{kind: regression, loss: SmoothL1Loss, weight: 0.5}`",
                    ),
                    graph=False,
                )
                continue
            head = self.keys(HeadKeys, body, head_path, f"head '{name}'", graph=False)
            if head is not None:
                output_loc = self.doc.key_loc(*head_path)
                out.append(self.head(head, head_path, head.kind, str(name), output_loc, float(head.weight)))
        return out

    def head(
        self,
        keys: TaskKeys | HeadKeys,
        path: tuple,
        kind: str,
        output: str | None,
        output_loc: Loc,
        weight=1.0,
    ) -> HeadSpec:
        """A trained output, from the task's keys (one head) or one of its `heads:`."""
        if keys.loss is not None:
            loss = self.call(keys.loss, (*path, "loss"), LossKeys, "the loss")
        else:
            loss = CallSpec(None, {}, self.doc.loc(*path))
        metrics = self.metrics(keys.metrics, (*path, "metrics")) if keys.metrics is not None else None
        return HeadSpec(output, kind, loss, weight, metrics, self.doc.loc(*path), output_loc)

    def call(self, raw, path: tuple, model: type[Keys], what: str) -> CallSpec:
        """`Name`, or `{name: Name, ...its arguments}`."""
        if isinstance(raw, str):
            return self.named(raw, {}, path, what)
        if isinstance(raw, dict):
            keys = self.keys(model, raw, path, what, graph=False)
            if keys is None:  # no name
                return CallSpec(None, {}, self.doc.loc(*path))
            return self.named(keys.name, keys.model_extra, path, what)
        self.add(
            SpecError(
                f"{what} must be a name or a mapping with `name:`, not {json_type(raw)}",
                self.doc.loc(*path),
                hint="for example `CrossEntropyLoss` or `{name: CrossEntropyLoss, label_smoothing: 0.1}`",
            ),
            graph=False,
        )
        return CallSpec(None, {}, self.doc.loc(*path))

    def named(self, name: str | None, args: dict, path: tuple, what: str) -> CallSpec:
        """A class the spec names, with its arguments."""
        if name is not None and not is_identifier(name):
            self.add(
                SpecError(f"{what}: {name!r} is not a class or metric name", self.doc.loc(*path, "name")),
                graph=False,
            )
            name = None
        return CallSpec(name, dict(args), self.doc.loc(*path), {k: self.doc.key_loc(*path, k) for k in args})

    def metrics(self, raw: list | dict, path: tuple) -> list[MetricSpec]:
        """A list of metrics (`[accuracy, {name: f1, average: macro}]`) logged under their names, or
        a mapping from the logged name to a metric (`{top5: {name: accuracy, top_k: 5}}`)."""
        if isinstance(raw, list):
            entries = [(None, item, (*path, i)) for i, item in enumerate(raw)]
        else:
            entries = [(str(key), item, (*path, key)) for key, item in raw.items()]
        out: list[MetricSpec] = []
        for log_name, item, item_path in entries:
            call = self.call({} if item is None else item, item_path, MetricKeys, "a metric")
            call.name = call.name or log_name
            if call.name is None:
                self.add(SpecError("a metric needs a `name:`", self.doc.loc(*item_path)), graph=False)
                continue
            log_name = log_name or call.name
            if not is_identifier(log_name):
                self.add(
                    SpecError(f"metric name {log_name!r} is not an identifier", self.doc.key_loc(*item_path)),
                    graph=False,
                )
            elif any(m.log_name == log_name for m in out):
                self.add(
                    SpecError(
                        f"metric '{log_name}' is listed twice",
                        self.doc.loc(*item_path),
                        hint="name each one: `metrics: {top1: accuracy, top5: {name: accuracy, top_k: 5}}`",
                    ),
                    graph=False,
                )
            else:
                out.append(MetricSpec(log_name, call))
        return out

    def optimizer(self, raw: dict, path: tuple) -> OptimizerSpec:
        opt = self.keys(OptimizerKeys, raw, path, "the optimizer", graph=False)
        if not is_identifier(opt.name):
            self.add(
                SpecError(
                    f"optimizer name {opt.name!r} is not a torch.optim class name",
                    self.doc.loc(*path, "name"),
                    hint="for example AdamW, SGD or Adam",
                ),
                graph=False,
            )
        args = dict(opt.model_extra)
        return OptimizerSpec(
            opt.name,
            opt.lr,
            args,
            self.doc.loc(*path),
            {k: self.doc.key_loc(*path, k) for k in args},
            opt.decay_norm_and_bias,
        )

    def scheduler(self, raw: dict, path: tuple) -> SchedulerSpec | None:
        scheduler = self.keys(SchedulerKeys, raw, path, "the scheduler", graph=False)
        if scheduler is None:  # no name
            return None
        call = self.named(scheduler.name, scheduler.model_extra, path, "the scheduler")
        return SchedulerSpec(
            call, scheduler.interval, scheduler.frequency, scheduler.monitor, self.doc.loc(*path)
        )
