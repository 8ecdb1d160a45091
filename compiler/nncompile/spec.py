"""Stage 1, load: a YAML spec file -> a typed `Spec` whose every part knows its source location.

The key tables below are the single definition of the spec language's structure: the loader
validates against them and `nncompile schema` renders them as JSON Schema.
"""

from __future__ import annotations

import hashlib
import keyword
import math
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from . import yamlsrc
from .errors import Collector, Loc, NncompileError, SpecError, did_you_mean
from .limits import MAX_SPEC_BYTES, MAX_TENSOR_ELEMENTS

FORMAT_VERSION = 1
DTYPES = ("float32", "float64", "float16", "bfloat16", "int64", "int32", "bool")
# `classification` is the spine's name for `multiclass` and stays accepted.
HEAD_KINDS = ("multiclass", "multilabel", "binary", "regression", "classification")
TASK_KINDS = (*HEAD_KINDS, "multitask", "custom", "segmentation", "detection")
SCHEDULER_INTERVALS = ("epoch", "step")


@dataclass(frozen=True)
class Key:
    """One key of a spec mapping: its JSON type (for validation and the schema) and its meaning."""

    name: str
    json_type: str | tuple[str, ...]
    doc: str
    required: bool = False
    unless: str | None = None  # a required key that this other key replaces (`op` or `shares`)


TOP_KEYS = (
    Key("nncompile", "integer", "spec format version; must be 1", required=True),
    Key("name", "string", "class name of the generated nn.Module (a Python identifier)", required=True),
    Key("inputs", "object", "input name -> shape without the batch dim, or {shape, dtype}", required=True),
    Key("dims", "object", "symbolic dim name -> example size, or [example size, second check size]"),
    Key("blocks", "object", "block name -> a reusable subgraph {params, inputs, nodes, output}"),
    Key("nodes", "object", "node id -> node; order matters only for the implicit chain", required=True),
    Key("outputs", ("object", "string", "array"), "output name -> node reference (default: the last node)"),
    Key("task", "object", "what the LightningModule trains: kind, loss, optimizer", required=True),
)
INPUT_KEYS = (
    Key(
        "shape",
        "array",
        "dims without the batch dim; a name (H) is a symbolic dim from `dims:`",
        required=True,
    ),
    Key("dtype", "string", "tensor dtype: " + ", ".join(DTYPES)),
    Key(
        "list",
        "boolean",
        "a list of tensors, one per sample, each of any size (a detection model's images);"
        " `shape` is the example size shapes are checked at",
    ),
)
NODE_KEYS = (
    Key(
        "op",
        "string",
        "torch.nn class, torchvision.<builder>, timm.<name>, transformers.AutoModel, checkpoint, a merge "
        "(concat, add), a block, or an import path (mypkg.layers.SEBlock, torchvision.ops.SqueezeExcitation)",
        required=True,
        unless="shares",
    ),
    Key(
        "in",
        ("string", "array", "object"),
        "input reference(s) `node` or `node.port`; a mapping {name: ref} passes one dict of tensors;"
        " default: the node above",
    ),
    Key("shares", "string", "instead of `op`: apply this node again, with the same weights, to `in`"),
    Key(
        "per_item",
        "integer",
        "fold this dim into the batch: the op runs on each item (frame, view) alone; the items come back "
        "at dim 1",
    ),
    Key("freeze", ("boolean", "array"), "true, or submodule prefixes: weights that training leaves fixed"),
    Key("trainable", "array", "submodule prefixes that train while the rest of the node is frozen"),
    Key("lr", "number", "this node's own learning rate (a parameter group)"),
    Key("lr_mult", "number", "this node's learning rate as a multiple of the optimizer's"),
    Key(
        "unfreeze",
        "object",
        "gradual unfreezing: submodule -> the epoch it starts training ({layer4: 2}), or {at_epoch: {...}, "
        "warmup_epochs: N} / {at_step: {...}, warmup_steps: N}; the rest of the node stays frozen",
    ),
    Key(
        "lr_decay", "number", "layer-wise decay: each level of depth below the head multiplies the rate by it"
    ),
    Key("train_bn", "boolean", "the affine parameters of the node's frozen norm layers still train"),
)
TUNING_KEYS = (
    "freeze",
    "trainable",
    "lr",
    "lr_mult",
    "unfreeze",
    "lr_decay",
    "train_bn",
)  # the NODE_KEYS any op takes
WIRING_KEYS = ("op", "in", "shares", "per_item")  # the NODE_KEYS that are not the op's arguments
TASK_KEYS = (
    Key("kind", "string", "one of: " + ", ".join(TASK_KINDS), required=True),
    Key("output", "string", "which output the loss reads (default: the only output)"),
    Key("loss", ("string", "object"), "a torch.nn loss class name, or {name, ...arguments}"),
    Key("metrics", ("array", "object"), "torchmetrics by name: [accuracy, {name: f1, average: macro}]"),
    Key("heads", "object", "multitask only: output name -> {kind, loss, weight, metrics}"),
    Key("optimizer", "object", "{name: a torch.optim class, lr, ...arguments}"),
    Key("scheduler", "object", "{name: a torch.optim.lr_scheduler class, interval, ...arguments}"),
    Key(
        "aux", "string", "segmentation only: the auxiliary output trained with the same target (default: aux)"
    ),
    Key("aux_weight", "number", "segmentation only: the auxiliary loss's weight in the total (default 0.5)"),
    Key("ema", "object", "{decay: 0.999}: an exponential moving average of the weights, used by validation"),
)
EMA_KEYS = (Key("decay", "number", "the weight of the old average at each step, in (0, 1) (default 0.999)"),)
HEAD_KEYS = (
    Key("kind", "string", "one of: " + ", ".join(HEAD_KINDS), required=True),
    Key("loss", ("string", "object"), "a torch.nn loss class name, or {name, ...arguments}"),
    Key("weight", "number", "this head's weight in the summed loss (default 1.0)"),
    Key("metrics", ("array", "object"), "torchmetrics by name: [accuracy, {name: f1, average: macro}]"),
)
LOSS_KEYS = (Key("name", "string", "a torch.nn loss class (other keys are its arguments)", required=True),)
METRIC_KEYS = (
    Key("name", "string", "a metric (accuracy, f1, auroc, mae, mse, r2, ...) or a torchmetrics class"),
)
BLOCK_KEYS = (
    Key("params", ("object", "array"), "parameter name -> default, or a list of required names"),
    Key("inputs", "array", "the block's input names, in the order of a using node's `in:` (default [x])"),
    Key(
        "nodes",
        "object",
        "node id -> node, as in the top-level `nodes:`; `$name` uses a parameter",
        required=True,
    ),
    Key("output", "string", "the node whose value the block returns (default: the last node)"),
)
OPTIMIZER_KEYS = (
    Key("name", "string", "a torch.optim class name (default AdamW); other keys are its arguments"),
    Key("lr", "number", "learning rate (default 1e-3), the LightningModule's `lr` hyperparameter"),
    Key(
        "decay_norm_and_bias",
        "boolean",
        "true: weight decay applies to norm layers, biases and tokens too (default false: they get none)",
    ),
)
SCHEDULER_KEYS = (
    Key(
        "name",
        "string",
        "a torch.optim.lr_scheduler class, or cosine_with_warmup; other keys are its arguments",
        required=True,
    ),
    Key("interval", "string", "when it steps: " + " or ".join(SCHEDULER_INTERVALS)),
    Key("frequency", "integer", "step it every N intervals (default 1)"),
    Key("monitor", "string", "the logged value a ReduceLROnPlateau watches (default val_loss)"),
)


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
    tuning: dict[str, object] = field(default_factory=dict)  # the TUNING_KEYS the node sets
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

    def node(self, node_id: str) -> NodeSpec:
        return self._by_id[node_id]

    @cached_property
    def _by_id(self) -> dict[str, NodeSpec]:  # a dict, so a 10,000-node spec is not quadratic
        return {n.id: n for n in self.nodes}


def load(path: str | Path, errors: Collector | None = None) -> Spec:
    """Read and validate a spec file. With `errors`, mistakes that leave the graph intact (an
    unknown top-level key, anything in `task:`) go there and the spec is returned, so the later
    stages can still check the graph; without it they are raised."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_SPEC_BYTES + 1)  # bounded: the path may be /dev/zero or a huge file
    except IsADirectoryError:
        raise SpecError(
            f"cannot read spec: {path} is a directory",
            Loc(str(path), 1, 1),
            hint=f"name a spec file; for every spec in it: nncompile {path.as_posix()}/*.yaml -o OUT/",
        ) from None
    except OSError as exc:
        raise SpecError(f"cannot read spec: {exc.strerror}", Loc(str(path), 1, 1)) from None
    if len(raw) > MAX_SPEC_BYTES:
        raise SpecError(
            f"the spec is larger than {MAX_SPEC_BYTES // 2**20} MiB",
            Loc(str(path), 1, 1),
            hint="is this the right file? the limit is in nncompile/limits.py",
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start]
        loc = Loc(str(path), before.count(b"\n") + 1, exc.start - before.rfind(b"\n"))
        raise SpecError(f"the spec is not UTF-8 text ({exc.reason})", loc, hint="save it as UTF-8") from None
    return loads(text, str(path), sha256=hashlib.sha256(raw).hexdigest(), errors=errors)


def loads(
    text: str, file: str = "<spec>", sha256: str | None = None, errors: Collector | None = None
) -> Spec:
    doc = yamlsrc.parse(text, file)
    sha256 = sha256 or hashlib.sha256(text.encode("utf-8")).hexdigest()
    return _Validator(doc).spec(sha256, errors)


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
        self.bad_dims: set[str] = set()  # dims already reported: a shape using one says nothing more

    def spec(self, sha256: str, later: Collector | None = None) -> Spec:
        data = self.doc.data
        if not isinstance(data, dict):
            raise SpecError(
                "the spec's top level must be a mapping",
                self.doc.loc(),
                hint="start with `nncompile: 1` then `name:`, `inputs:`, `nodes:`, `task:`",
            )
        if not self.check_keys(data, (), TOP_KEYS, "the spec"):
            self.errors.raise_if_any()  # a required key is missing or of the wrong type
        unknown_keys = len(self.errors.diagnostics)  # the only errors so far: unknown top-level keys
        version = data["nncompile"]
        if version != FORMAT_VERSION or isinstance(version, bool):
            raise SpecError(
                f"unsupported spec format version {version!r}",
                self.doc.loc("nncompile"),
                hint=f"this nncompile reads `nncompile: {FORMAT_VERSION}`",
            )
        name = data["name"]
        if not is_identifier(name):
            raise SpecError(
                f"name {name!r} is not a Python identifier",
                self.doc.loc("name"),
                hint="use a class name such as CustomResNet",
            )
        dims = self.dims(data.get("dims", {}))
        inputs = self.inputs(data["inputs"], dims)
        nodes = self.nodes(data["nodes"])
        outputs = self.outputs(data.get("outputs"), nodes)
        blocks = self.blocks(data.get("blocks", {}))
        graph_ok = len(self.errors.diagnostics) == unknown_keys
        task = self.task(data["task"])
        if later is not None and graph_ok:
            later.add(NncompileError(self.errors.diagnostics))
        else:
            self.errors.raise_if_any()
        return Spec(self.doc.file, sha256, name, inputs, nodes, outputs, task, self.doc, dims, blocks)

    def dims(self, raw) -> dict[str, DimSpec]:
        out = {}
        for name, value in raw.items() if isinstance(raw, dict) else ():
            loc = self.doc.loc("dims", name)
            sizes = value if isinstance(value, list) else [value]
            if not is_identifier(name):
                self.errors.add(
                    SpecError(f"dim name {name!r} is not an identifier", loc, hint="for example H")
                )
            elif len(sizes) not in (1, 2) or not all(
                isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in sizes
            ):
                self.bad_dims.add(name)
                self.errors.add(
                    SpecError(
                        f"dim '{name}' needs a positive example size or two, got {value!r}",
                        loc,
                        hint=f"for example `{name}: 64` (checked at 64 and 128) or `{name}: [64, 96]`",
                    )
                )
            elif len(sizes) == 2 and sizes[0] == sizes[1]:
                self.bad_dims.add(name)
                self.errors.add(SpecError(f"dim '{name}' lists the same size twice", loc))
            else:
                # default check sizes differ in ratio per dim (x2, x3, ...) so each dim can be told apart
                check = sizes[1] if len(sizes) == 2 else (2 + len(out)) * sizes[0]
                out[name] = DimSpec(name, sizes[0], check, loc)
        return out

    def blocks(self, raw) -> dict[str, BlockSpec]:
        out = {}
        for name, body in raw.items() if isinstance(raw, dict) else ():
            path = ("blocks", name)
            loc = self.doc.key_loc(*path)
            if not is_identifier(name):
                self.errors.add(SpecError(f"block name {name!r} is not a Python identifier", loc))
                continue
            if not isinstance(body, dict):
                self.errors.add(SpecError(f"block '{name}' must be a mapping with `nodes:`", loc))
                continue
            self.check_keys(body, path, BLOCK_KEYS, f"block '{name}'")
            if not isinstance(body.get("nodes"), dict):
                continue
            params = body.get("params", {})
            if isinstance(params, list):
                params = dict.fromkeys(params, REQUIRED)
            inputs = body.get("inputs", ["x"])
            if not isinstance(params, dict) or not isinstance(inputs, list):
                continue  # reported by check_keys
            for param in params:
                if not is_identifier(param):
                    self.errors.add(
                        SpecError(
                            f"block parameter {param!r} is not an identifier", self.doc.loc(*path, "params")
                        )
                    )
            for i, inp in enumerate(inputs):
                if inp in inputs[:i]:
                    self.errors.add(
                        SpecError(f"block input '{inp}' is listed twice", self.doc.loc(*path, "inputs", i))
                    )
                elif not is_identifier(inp):
                    self.errors.add(
                        SpecError(
                            f"block input {inp!r} is not an identifier", self.doc.loc(*path, "inputs", i)
                        )
                    )
            view = BlockDocument(self.doc, name)
            nodes = self.nodes(body["nodes"], view)
            output = None
            if "output" in body:
                try:
                    output = parse_ref(body["output"], self.doc.loc(*path, "output"))
                except SpecError as err:
                    self.errors.add(err)
            out[name] = BlockSpec(name, dict(params), list(inputs), nodes, output, loc)
        return out

    def check_keys(
        self, mapping: dict, path: tuple, keys: tuple[Key, ...], what: str, extra_ok: bool = False, doc=None
    ) -> bool:
        """Report missing, wrongly typed and (unless `extra_ok`) unknown keys; False when a known
        key is missing or wrongly typed."""
        doc = doc or self.doc
        before = len(self.errors.diagnostics)
        known = {k.name: k for k in keys}
        for k in keys:
            if k.required and k.name not in mapping and k.unless not in mapping:
                self.errors.add(
                    SpecError(
                        f"{what} is missing the required key '{k.name}'",
                        doc.loc(*path),
                        hint=f"add `{k.name}:` ({k.doc})",
                    )
                )
        for key, value in mapping.items():
            if key in known:
                self.check_type(value, (*path, key), known[key], doc)
        structure_ok = len(self.errors.diagnostics) == before
        for key in mapping:
            if key not in known and not extra_ok:
                self.errors.add(
                    SpecError(
                        f"unknown key '{key}' in {what}",
                        doc.key_loc(*path, key),
                        hint=did_you_mean(key, known) or "allowed keys: " + ", ".join(known),
                    )
                )
        return structure_ok

    def check_type(self, value, path: tuple, key: Key, doc=None) -> None:
        doc = doc or self.doc
        types = (key.json_type,) if isinstance(key.json_type, str) else key.json_type
        if not any(_is_json_type(value, t) for t in types):
            hint = number_hint(value, "integer" in types) if {"number", "integer"} & set(types) else None
            self.errors.add(
                SpecError(
                    f"'{key.name}' must be {' or '.join(types)}, not {_json_type(value)}",
                    doc.loc(*path),
                    hint=hint or key.doc,
                )
            )

    def inputs(self, raw, dims: dict[str, DimSpec]) -> list[InputSpec]:
        if not isinstance(raw, dict) or not raw:
            raise SpecError(
                "`inputs` must map at least one input name to a shape",
                self.doc.loc("inputs"),
                hint="for example `inputs: {image: [3, 224, 224]}`",
            )
        out = []
        for name, value in raw.items():
            path = ("inputs", name)
            dtype, is_list = "float32", False
            if isinstance(value, dict):
                self.check_keys(value, path, INPUT_KEYS, f"input '{name}'")
                dtype, is_list = value.get("dtype", dtype), value.get("list") is True
                if dtype not in DTYPES:
                    self.errors.add(
                        SpecError(
                            f"unknown dtype {dtype!r}",
                            self.doc.loc(*path, "dtype"),
                            hint=did_you_mean(str(dtype), DTYPES) or ", ".join(DTYPES),
                        )
                    )
                value, path = value.get("shape"), (*path, "shape")
            symbols = (
                tuple(d if isinstance(d, str) else None for d in value) if isinstance(value, list) else ()
            )
            shape = self.shape(value, path, dims)
            loc = self.doc.key_loc("inputs", name)
            out.append(InputSpec(name, shape, dtype, loc, symbols if any(symbols) else (), is_list))
        return out

    def shape(self, value, path: tuple, dims: dict[str, DimSpec]) -> tuple[int, ...]:
        if not isinstance(value, list):
            self.errors.add(
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
                self.errors.add(
                    SpecError(
                        f"symbolic dim '{dim}' has no example size",
                        self.doc.loc(*path, i),
                        hint=f"add `dims: {{{dim}: 64}}` at the top level (any size the model accepts)",
                    )
                )
            elif not good:
                self.errors.add(
                    SpecError(
                        f"dim {dim!r} is not a positive integer or a symbol name",
                        self.doc.loc(*path, i),
                        hint=number_hint(dim, integer=True),
                    )
                )
            shape.append(dim)
        if ok and math.prod(shape) > MAX_TENSOR_ELEMENTS:
            self.errors.add(
                SpecError(
                    f"shape {value} has {math.prod(shape):,} elements per sample, more than the "
                    f"limit of {MAX_TENSOR_ELEMENTS:,}",
                    self.doc.loc(*path),
                    hint="is a dim mistyped? the limit is in nncompile/limits.py",
                )
            )
        return tuple(shape)

    def nodes(self, raw, doc=None) -> list[NodeSpec]:
        doc = doc or self.doc
        if not isinstance(raw, dict) or not raw:
            raise SpecError(
                "`nodes` must map at least one node id to a node",
                doc.loc("nodes"),
                hint="for example `nodes: {fc: {op: Linear, out_features: 10}}`",
            )
        out = []
        for node_id, body in raw.items():
            path = ("nodes", node_id)
            if isinstance(body, str):  # shorthand: `relu: ReLU`
                body = {"op": body}
            if not isinstance(body, dict):
                self.errors.add(
                    SpecError(
                        f"node '{node_id}' must be a mapping with an `op`", doc.loc(*path), node=node_id
                    )
                )
                continue
            self.check_keys(body, path, NODE_KEYS, f"node '{node_id}'", extra_ok=True, doc=doc)
            if "shares" in body:
                if not self.sharing(node_id, body, path, doc):
                    continue
            elif "op" not in body or not isinstance(body["op"], str):
                continue
            inputs = in_keys = None
            if "in" in body:
                try:
                    inputs, in_keys = self.wiring(body["in"], path, doc)
                except SpecError as err:
                    self.errors.add(err)
                    continue
                if not inputs:
                    self.errors.add(SpecError("`in` lists no inputs", doc.loc(*path, "in"), node=node_id))
                    continue
            params = {k: v for k, v in body.items() if k not in (*WIRING_KEYS, *TUNING_KEYS)}
            tuning = {k: v for k, v in body.items() if k in TUNING_KEYS}
            per_item = body.get("per_item")
            if "per_item" in body and (not _is_json_type(per_item, "integer") or per_item < 1):
                if _is_json_type(per_item, "integer"):  # a wrong type was reported by check_keys
                    self.errors.add(
                        SpecError(
                            f"per_item {per_item} is the batch dim or before it",
                            doc.loc(*path, "per_item"),
                            node=node_id,
                            hint="name the dim of the items, counting the batch as 0: `per_item: 1` for (B, T, ...)",
                        )
                    )
                per_item = None
            op = body.get("op", "")  # "" for a node that shares another's module
            per_item = per_item if isinstance(per_item, int) else None
            out.append(
                NodeSpec(
                    node_id,
                    op,
                    inputs,
                    params,
                    doc.key_loc(*path),
                    doc,
                    tuning,
                    body.get("shares"),
                    per_item,
                    in_keys,
                )
            )
        return out

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

    def sharing(self, node_id: str, body: dict, path: tuple, doc) -> bool:
        """A node with `shares:` names the node it applies again and takes only `in` and `per_item`."""
        extra = [k for k in body if k not in ("shares", "in", "per_item")]
        for key in extra:
            self.errors.add(
                SpecError(
                    f"node '{node_id}' shares the module of '{body['shares']}', so it takes no `{key}`",
                    doc.key_loc(*path, key),
                    node=node_id,
                    hint="a shared module is built, frozen and tuned once, at the node it shares: "
                    "set arguments there; this node takes `in:` (and `per_item:`)",
                )
            )
        return isinstance(body["shares"], str) and not extra

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
                self.errors.add(
                    SpecError(
                        f"two outputs are named '{name}'",
                        loc,
                        hint=f"name them with a mapping: `outputs: {{{name}_a: ..., {name}_b: ...}}`",
                    )
                )
                continue
            if not is_identifier(name):
                self.errors.add(SpecError(f"output name {name!r} is not a Python identifier", loc))
                continue
            try:
                out.append(OutputSpec(name, parse_ref(ref, loc)))
            except SpecError as err:
                self.errors.add(err)
        return out

    def task(self, raw: dict) -> TaskSpec:
        path = ("task",)
        self.check_keys(raw, path, TASK_KEYS, "the task")
        kind = raw.get("kind")
        if kind not in TASK_KINDS:
            self.errors.add(
                SpecError(
                    f"unknown task kind {kind!r}",
                    self.doc.loc(*path, "kind"),
                    hint=did_you_mean(str(kind), TASK_KINDS) or "one of: " + ", ".join(TASK_KINDS),
                )
            )
        optimizer = self.optimizer(raw.get("optimizer"), (*path, "optimizer"))
        scheduler = self.scheduler(raw["scheduler"], (*path, "scheduler")) if "scheduler" in raw else None
        heads: list[HeadSpec] = []
        loss = None
        if kind == "multitask":
            self.reject(
                raw,
                path,
                ("output", "loss", "metrics"),
                "a multitask task sets these per head, under `heads:`",
            )
            heads = self.heads(raw.get("heads"), (*path, "heads"))
        elif kind == "detection":
            self.reject(
                raw,
                path,
                ("loss", "metrics", "heads", "aux", "aux_weight"),
                "a detection model computes its own losses; validation logs mAP",
            )
            output = raw.get("output")
            heads = [
                HeadSpec(
                    output if isinstance(output, str) else None,
                    "detection",
                    CallSpec(None, {}, self.doc.loc(*path)),
                    1.0,
                    [],
                    self.doc.loc(*path),
                    self.doc.loc(*path, "output"),
                )
            ]
        elif kind == "custom":
            self.reject(
                raw, path, ("output", "metrics", "heads"), "a custom task's training_step is yours to write"
            )
            if "loss" in raw:
                loss = self.call(raw["loss"], (*path, "loss"), LOSS_KEYS, "the loss")
        else:
            self.reject(raw, path, ("heads",), "`heads:` is for `kind: multitask`")
            if kind != "segmentation":
                self.reject(raw, path, ("aux", "aux_weight"), "`aux:` is for `kind: segmentation`")
            output = raw.get("output")
            output = output if isinstance(output, str) else None
            heads = [self.head(raw, path, str(kind), output, self.doc.loc(*path, "output"))]
        aux = raw.get("aux") if isinstance(raw.get("aux"), str) else None
        aux_weight = raw.get("aux_weight", 0.5)
        if not _is_json_type(aux_weight, "number") or aux_weight < 0:
            if _is_json_type(aux_weight, "number"):  # a wrong type was reported by check_keys
                self.errors.add(
                    SpecError(
                        f"aux_weight {aux_weight!r} must not be negative", self.doc.loc(*path, "aux_weight")
                    )
                )
            aux_weight = 0.5
        return TaskSpec(
            str(kind),
            heads,
            optimizer,
            scheduler,
            self.doc.loc(*path),
            loss,
            aux,
            float(aux_weight),
            self.ema(raw["ema"], (*path, "ema")) if "ema" in raw else None,
        )

    def ema(self, raw, path: tuple) -> EmaSpec | None:
        if not isinstance(raw, dict):
            return None  # a wrong type was reported by check_keys
        self.check_keys(raw, path, EMA_KEYS, "the EMA")
        decay = raw.get("decay", 0.999)
        if _is_json_type(decay, "number") and not 0 < decay < 1:
            self.errors.add(
                SpecError(
                    f"the EMA decay {decay!r} must be between 0 and 1",
                    self.doc.loc(*path, "decay"),
                    hint="the old average's weight at each step: 0.999 averages about the last 1000 steps",
                )
            )
        return EmaSpec(float(decay), self.doc.loc(*path)) if _is_json_type(decay, "number") else None

    def reject(self, raw: dict, path: tuple, keys: tuple[str, ...], hint: str) -> None:
        for key in keys:
            if key in raw:
                self.errors.add(
                    SpecError(
                        f"`{key}` does not apply to a task of kind {raw.get('kind')!r}",
                        self.doc.key_loc(*path, key),
                        hint=hint,
                    )
                )

    def heads(self, raw, path: tuple) -> list[HeadSpec]:
        if not isinstance(raw, dict) or not raw:
            self.errors.add(
                SpecError(
                    "a multitask task needs `heads:` mapping each trained output to its loss",
                    self.doc.loc(*path),
                    hint="for example `heads: {label: {kind: multiclass}, box: {kind: regression, weight: 0.5}}`",
                )
            )
            return []
        out = []
        for name, body in raw.items():
            head_path = (*path, name)
            if not isinstance(body, dict):
                self.errors.add(
                    SpecError(
                        f"head '{name}' must be a mapping with a `kind`",
                        self.doc.loc(*head_path),
                        hint="for example `{kind: regression, loss: SmoothL1Loss, weight: 0.5}`",
                    )
                )
                continue
            self.check_keys(body, head_path, HEAD_KEYS, f"head '{name}'")
            kind = body.get("kind")
            if "kind" in body and kind not in HEAD_KINDS:
                self.errors.add(
                    SpecError(
                        f"unknown head kind {kind!r}",
                        self.doc.loc(*head_path, "kind"),
                        hint=did_you_mean(str(kind), HEAD_KINDS) or "one of: " + ", ".join(HEAD_KINDS),
                    )
                )
            out.append(self.head(body, head_path, str(kind), str(name), self.doc.key_loc(*head_path)))
        return out

    def head(self, raw: dict, path: tuple, kind: str, output: str | None, output_loc: Loc) -> HeadSpec:
        if "loss" in raw:
            loss = self.call(raw["loss"], (*path, "loss"), LOSS_KEYS, "the loss")
        else:
            loss = CallSpec(None, {}, self.doc.loc(*path))
        metrics = self.metrics(raw["metrics"], (*path, "metrics")) if "metrics" in raw else None
        weight = raw.get("weight", 1.0)
        if not _is_json_type(weight, "number") or weight < 0:
            if _is_json_type(weight, "number"):  # a wrong type was reported by check_keys
                self.errors.add(
                    SpecError(f"head weight {weight!r} must not be negative", self.doc.loc(*path, "weight"))
                )
            weight = 1.0
        return HeadSpec(output, kind, loss, float(weight), metrics, self.doc.loc(*path), output_loc)

    def call(
        self, raw, path: tuple, keys: tuple[Key, ...], what: str, skip: tuple[str, ...] = ()
    ) -> CallSpec:
        """`Name`, or `{name: Name, ...its arguments}` (keys in `skip` are not arguments)."""
        loc = self.doc.loc(*path)
        if isinstance(raw, str):
            name, args = raw, {}
        elif isinstance(raw, dict):
            self.check_keys(raw, path, keys, what, extra_ok=True)
            name = raw.get("name")
            args = {k: v for k, v in raw.items() if k != "name" and k not in skip}
        else:
            self.errors.add(
                SpecError(
                    f"{what} must be a name or a mapping with `name:`, not {_json_type(raw)}",
                    loc,
                    hint="for example `CrossEntropyLoss` or `{name: CrossEntropyLoss, label_smoothing: 0.1}`",
                )
            )
            return CallSpec(None, {}, loc)
        if name is not None and not is_identifier(name):
            self.errors.add(
                SpecError(f"{what}: {name!r} is not a class or metric name", self.doc.loc(*path, "name"))
            )
            name = None
        return CallSpec(name, args, loc, {k: self.doc.key_loc(*path, k) for k in args})

    def metrics(self, raw, path: tuple) -> list[MetricSpec]:
        """A list of metrics (`[accuracy, {name: f1, average: macro}]`) logged under their names, or
        a mapping from the logged name to a metric (`{top5: {name: accuracy, top_k: 5}}`)."""
        if isinstance(raw, list):
            entries = [(None, item, (*path, i)) for i, item in enumerate(raw)]
        elif isinstance(raw, dict):
            entries = [(str(key), item, (*path, key)) for key, item in raw.items()]
        else:
            return []  # a wrong type was reported by check_keys
        out: list[MetricSpec] = []
        for log_name, item, item_path in entries:
            call = self.call({} if item is None else item, item_path, METRIC_KEYS, "a metric")
            call.name = call.name or log_name
            if call.name is None:
                self.errors.add(SpecError("a metric needs a `name:`", self.doc.loc(*item_path)))
                continue
            log_name = log_name or call.name
            if not is_identifier(log_name):
                self.errors.add(
                    SpecError(f"metric name {log_name!r} is not an identifier", self.doc.key_loc(*item_path))
                )
            elif any(m.log_name == log_name for m in out):
                self.errors.add(
                    SpecError(
                        f"metric '{log_name}' is listed twice",
                        self.doc.loc(*item_path),
                        hint="name each one: `metrics: {top1: accuracy, top5: {name: accuracy, top_k: 5}}`",
                    )
                )
            else:
                out.append(MetricSpec(log_name, call))
        return out

    def optimizer(self, raw, path: tuple) -> OptimizerSpec:
        raw = raw if isinstance(raw, dict) else {}  # a wrong type was reported by check_keys
        self.check_keys(raw, path, OPTIMIZER_KEYS, "the optimizer", extra_ok=True)
        name, lr = raw.get("name", "AdamW"), raw.get("lr", 1e-3)
        if not is_identifier(name):
            self.errors.add(
                SpecError(
                    f"optimizer name {name!r} is not a torch.optim class name",
                    self.doc.loc(*path, "name"),
                    hint="for example AdamW, SGD or Adam",
                )
            )
        if _is_json_type(lr, "number") and lr <= 0:
            self.errors.add(SpecError(f"learning rate {lr!r} must be positive", self.doc.loc(*path, "lr")))
        args = {k: v for k, v in raw.items() if k not in ("name", "lr", "decay_norm_and_bias")}
        return OptimizerSpec(
            name,
            lr,
            args,
            self.doc.loc(*path),
            {k: self.doc.key_loc(*path, k) for k in args},
            raw.get("decay_norm_and_bias") is True,
        )

    def scheduler(self, raw, path: tuple) -> SchedulerSpec | None:
        if not isinstance(raw, dict):
            return None  # a wrong type was reported by check_keys
        control = ("interval", "frequency", "monitor")
        call = self.call(raw, path, SCHEDULER_KEYS, "the scheduler", skip=control)
        interval = raw.get("interval")
        if "interval" in raw and interval not in SCHEDULER_INTERVALS:
            self.errors.add(
                SpecError(
                    f"unknown scheduler interval {interval!r}",
                    self.doc.loc(*path, "interval"),
                    hint="`step` (after every optimizer step) or `epoch` (after every epoch)",
                )
            )
        frequency = raw.get("frequency", 1)
        if not _is_json_type(frequency, "integer") or frequency < 1:
            if _is_json_type(frequency, "integer"):
                self.errors.add(
                    SpecError(f"frequency {frequency} must be at least 1", self.doc.loc(*path, "frequency"))
                )
            frequency = 1
        monitor = raw.get("monitor")
        return SchedulerSpec(
            call, interval, frequency, monitor if isinstance(monitor, str) else None, self.doc.loc(*path)
        )


def number_hint(value, integer: bool) -> str | None:
    """How to write the number a value where one goes was meant to be, or None: a quoted number
    is a string, and a float where an integer goes is refused rather than rounded."""
    if isinstance(value, str) and yamlsrc.reads_as_number(value):
        return "remove the quotes: a quoted value stays a string"
    if integer and isinstance(value, float) and value.is_integer():
        return f"write {int(value)}: a number written with a dot or an exponent is a float"
    return None


def _is_json_type(value, json_type: str) -> bool:
    if json_type == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if json_type == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return _json_type(value) == json_type


def _json_type(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__
