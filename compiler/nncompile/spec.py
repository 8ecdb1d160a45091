"""Stage 1, load: a YAML spec file -> a typed `Spec` whose every part knows its source location.

The key tables below are the single definition of the spec language's structure: the loader
validates against them and `nncompile schema` renders them as JSON Schema.
"""

from __future__ import annotations

import hashlib
import keyword
from dataclasses import dataclass, field
from pathlib import Path

from . import yamlsrc
from .errors import Collector, Loc, SpecError, did_you_mean

FORMAT_VERSION = 1
DTYPES = ("float32", "float64", "float16", "bfloat16", "int64", "int32", "bool")
TASK_KINDS = ("classification", "regression")


@dataclass(frozen=True)
class Key:
    """One key of a spec mapping: its JSON type (for validation and the schema) and its meaning."""

    name: str
    json_type: str | tuple[str, ...]
    doc: str
    required: bool = False


TOP_KEYS = (
    Key("nncompile", "integer", "spec format version; must be 1", required=True),
    Key("name", "string", "class name of the generated nn.Module (a Python identifier)", required=True),
    Key("inputs", "object", "input name -> shape without the batch dim, or {shape, dtype}", required=True),
    Key("nodes", "object", "node id -> node; order matters only for the implicit chain", required=True),
    Key("outputs", ("object", "string", "array"), "output name -> node reference (default: the last node)"),
    Key("task", "object", "what the LightningModule trains: kind, loss, optimizer", required=True),
)
INPUT_KEYS = (
    Key("shape", "array", "dims without the batch dim", required=True),
    Key("dtype", "string", "tensor dtype: " + ", ".join(DTYPES)),
)
NODE_KEYS = (
    Key(
        "op",
        "string",
        "torch.nn class, torchvision.<builder>, timm.<name>, checkpoint, or a merge (concat, add)",
        required=True,
    ),
    Key("in", ("string", "array"), "input reference(s) `node` or `node.port`; default: the node above"),
    Key("freeze", ("boolean", "array"), "true, or submodule prefixes: weights that training leaves fixed"),
    Key("trainable", "array", "submodule prefixes that train while the rest of the node is frozen"),
    Key("lr", "number", "this node's own learning rate (a parameter group)"),
    Key("lr_mult", "number", "this node's learning rate as a multiple of the optimizer's"),
)
TUNING_KEYS = ("freeze", "trainable", "lr", "lr_mult")  # the NODE_KEYS any op takes
TASK_KEYS = (
    Key("kind", "string", "one of: " + ", ".join(TASK_KINDS), required=True),
    Key("output", "string", "which output the loss reads (default: the only output)"),
    Key("loss", ("string", "object"), "a torch.nn loss class name, or {name, ...arguments}"),
    Key("optimizer", "object", "{name: a torch.optim class, lr, ...arguments}"),
)
OPTIMIZER_KEYS = (
    Key("name", "string", "a torch.optim class name (default AdamW)"),
    Key("lr", "number", "learning rate (default 1e-3)"),
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
    shape: tuple[int, ...]
    dtype: str
    loc: Loc


@dataclass
class NodeSpec:
    id: str
    op: str
    inputs: tuple[Ref, ...] | None  # None: take the node above (the implicit chain)
    params: dict[str, object]  # every key but the common ones, for the op kind to validate
    loc: Loc
    doc: yamlsrc.Document = field(repr=False)
    tuning: dict[str, object] = field(default_factory=dict)  # the TUNING_KEYS the node sets

    def param_loc(self, key: str) -> Loc:
        return self.doc.loc("nodes", self.id, key)

    def op_loc(self) -> Loc:
        return self.doc.loc("nodes", self.id, "op")


@dataclass
class OutputSpec:
    name: str
    ref: Ref


@dataclass
class LossSpec:
    name: str | None  # None: the task kind's default
    args: dict[str, object]
    loc: Loc


@dataclass
class OptimizerSpec:
    name: str
    lr: float
    args: dict[str, object]
    loc: Loc


@dataclass
class TaskSpec:
    kind: str
    output: str | None
    loss: LossSpec
    optimizer: OptimizerSpec
    loc: Loc


@dataclass
class Spec:
    path: str  # as given by the user, for messages and the generated header
    sha256: str
    name: str
    inputs: list[InputSpec]
    nodes: list[NodeSpec]
    outputs: list[OutputSpec]
    task: TaskSpec
    doc: yamlsrc.Document = field(repr=False)

    def node(self, node_id: str) -> NodeSpec:
        return next(n for n in self.nodes if n.id == node_id)


def load(path: str | Path) -> Spec:
    """Read and validate a spec file."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SpecError(f"cannot read spec: {exc.strerror}", Loc(str(path), 1, 1)) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"the spec is not UTF-8 text ({exc.reason})", Loc(str(path), 1, 1)) from None
    return loads(text, str(path), sha256=hashlib.sha256(raw).hexdigest())


def loads(text: str, file: str = "<spec>", sha256: str | None = None) -> Spec:
    doc = yamlsrc.parse(text, file)
    sha256 = sha256 or hashlib.sha256(text.encode("utf-8")).hexdigest()
    return _Validator(doc).spec(sha256)


def is_identifier(name: object) -> bool:
    return isinstance(name, str) and name.isidentifier() and name.isascii() and not keyword.iskeyword(name)


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

    def spec(self, sha256: str) -> Spec:
        data = self.doc.data
        if not isinstance(data, dict):
            raise SpecError(
                "the spec's top level must be a mapping",
                self.doc.loc(),
                hint="start with `nncompile: 1` then `name:`, `inputs:`, `nodes:`, `task:`",
            )
        self.check_keys(data, (), TOP_KEYS, "the spec")
        self.errors.raise_if_any()
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
        inputs = self.inputs(data["inputs"])
        nodes = self.nodes(data["nodes"])
        outputs = self.outputs(data.get("outputs"), nodes)
        task = self.task(data["task"])
        self.errors.raise_if_any()
        return Spec(self.doc.file, sha256, name, inputs, nodes, outputs, task, self.doc)

    def check_keys(
        self, mapping: dict, path: tuple, keys: tuple[Key, ...], what: str, extra_ok: bool = False
    ) -> None:
        known = {k.name: k for k in keys}
        for k in keys:
            if k.required and k.name not in mapping:
                self.errors.add(
                    SpecError(
                        f"{what} is missing the required key '{k.name}'",
                        self.doc.loc(*path),
                        hint=f"add `{k.name}:` ({k.doc})",
                    )
                )
        for key, value in mapping.items():
            if key in known:
                self.check_type(value, (*path, key), known[key])
            elif not extra_ok:
                self.errors.add(
                    SpecError(
                        f"unknown key '{key}' in {what}",
                        self.doc.key_loc(*path, key),
                        hint=did_you_mean(key, known) or "allowed keys: " + ", ".join(known),
                    )
                )

    def check_type(self, value, path: tuple, key: Key) -> None:
        types = (key.json_type,) if isinstance(key.json_type, str) else key.json_type
        if not any(_is_json_type(value, t) for t in types):
            self.errors.add(
                SpecError(
                    f"'{key.name}' must be {' or '.join(types)}, not {_json_type(value)}",
                    self.doc.loc(*path),
                    hint=key.doc,
                )
            )

    def inputs(self, raw) -> list[InputSpec]:
        if not isinstance(raw, dict) or not raw:
            raise SpecError(
                "`inputs` must map at least one input name to a shape",
                self.doc.loc("inputs"),
                hint="for example `inputs: {image: [3, 224, 224]}`",
            )
        out = []
        for name, value in raw.items():
            path = ("inputs", name)
            dtype = "float32"
            if isinstance(value, dict):
                self.check_keys(value, path, INPUT_KEYS, f"input '{name}'")
                dtype = value.get("dtype", dtype)
                if dtype not in DTYPES:
                    self.errors.add(
                        SpecError(
                            f"unknown dtype {dtype!r}",
                            self.doc.loc(*path, "dtype"),
                            hint=did_you_mean(str(dtype), DTYPES) or ", ".join(DTYPES),
                        )
                    )
                value, path = value.get("shape"), (*path, "shape")
            out.append(InputSpec(name, self.shape(value, path), dtype, self.doc.key_loc("inputs", name)))
        return out

    def shape(self, value, path: tuple) -> tuple[int, ...]:
        if not isinstance(value, list):
            self.errors.add(
                SpecError(
                    "a shape must be a list of dims without the batch dim",
                    self.doc.loc(*path),
                    hint="for example [3, 224, 224]",
                )
            )
            return ()
        for i, dim in enumerate(value):
            if not isinstance(dim, int) or isinstance(dim, bool) or dim <= 0:
                self.errors.add(SpecError(f"dim {dim!r} is not a positive integer", self.doc.loc(*path, i)))
        return tuple(value)

    def nodes(self, raw) -> list[NodeSpec]:
        if not isinstance(raw, dict) or not raw:
            raise SpecError(
                "`nodes` must map at least one node id to a node",
                self.doc.loc("nodes"),
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
                        f"node '{node_id}' must be a mapping with an `op`", self.doc.loc(*path), node=node_id
                    )
                )
                continue
            self.check_keys(body, path, NODE_KEYS, f"node '{node_id}'", extra_ok=True)
            if "op" not in body or not isinstance(body["op"], str):
                continue
            inputs = None
            if "in" in body:
                refs = body["in"] if isinstance(body["in"], list) else [body["in"]]
                try:
                    inputs = tuple(
                        parse_ref(
                            r,
                            self.doc.loc(*path, "in", i)
                            if isinstance(body["in"], list)
                            else self.doc.loc(*path, "in"),
                        )
                        for i, r in enumerate(refs)
                    )
                except SpecError as err:
                    self.errors.add(err)
                    continue
                if not inputs:
                    self.errors.add(
                        SpecError("`in` lists no inputs", self.doc.loc(*path, "in"), node=node_id)
                    )
                    continue
            params = {k: v for k, v in body.items() if k not in ("op", "in", *TUNING_KEYS)}
            tuning = {k: v for k, v in body.items() if k in TUNING_KEYS}
            out.append(
                NodeSpec(node_id, body["op"], inputs, params, self.doc.key_loc(*path), self.doc, tuning)
            )
        return out

    def outputs(self, raw, nodes: list[NodeSpec]) -> list[OutputSpec]:
        if raw is None:
            if not nodes:
                return []
            last = nodes[-1]
            return [OutputSpec(last.id, Ref(last.id, None, last.loc))]
        if isinstance(raw, str):
            raw = {raw.split(".")[0]: raw}
        elif isinstance(raw, list):
            raw = {str(r).split(".")[0]: r for r in raw}
        out = []
        for name, ref in raw.items():
            loc = self.doc.loc("outputs", name)
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
        loss_raw = raw.get("loss")
        loss_loc = self.doc.loc(*path, "loss")
        if isinstance(loss_raw, dict):
            loss = LossSpec(
                loss_raw.get("name"), {k: v for k, v in loss_raw.items() if k != "name"}, loss_loc
            )
        else:
            loss = LossSpec(loss_raw, {}, loss_loc)
        if loss.name is not None and not is_identifier(loss.name):
            self.errors.add(SpecError(f"loss name {loss.name!r} is not a torch.nn class name", loss_loc))
        opt_raw = raw.get("optimizer") or {}
        opt_path = (*path, "optimizer")
        if isinstance(opt_raw, dict):
            self.check_keys(opt_raw, opt_path, OPTIMIZER_KEYS, "the optimizer", extra_ok=True)
        opt = OptimizerSpec(
            opt_raw.get("name", "AdamW"),
            opt_raw.get("lr", 1e-3),
            {k: v for k, v in opt_raw.items() if k not in ("name", "lr")},
            self.doc.loc(*opt_path),
        )
        if not is_identifier(opt.name):
            self.errors.add(
                SpecError(
                    f"optimizer name {opt.name!r} is not a torch.optim class name",
                    self.doc.loc(*opt_path, "name"),
                )
            )
        output = raw.get("output")
        return TaskSpec(kind, output, loss, opt, self.doc.loc(*path))


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
