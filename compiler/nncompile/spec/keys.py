"""The spec language's keys, each declared once: its type, default and meaning.

Every mapping of a spec is one model below. Pydantic validates a mapping's own keys (JSON types,
strictly: `1` is no boolean, `"1"` no number), `checking.py` turns its errors into located
`SpecError`s in the project's words, and `nncompile schema` renders these models as JSON Schema.
A value that is itself a mapping of keys is declared `Annotated[dict, Of(ChildKeys)]`: the loader
validates it when it reaches it (so a mistake inside never hides the mistakes beside it), the
schema shows the child's keys. An optional key without a default of its type (`str = None`) is
None when the spec leaves it out; `null` written in the spec is a mistake. What needs the rest of
the spec (dims, references, which keys a task kind takes) is checked by the loader, model.py.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import ConfigDict, Field, WithJsonSchema

from .checking import Bound, Choice, Keys, Number, Of
from .tuning import Tuning

FORMAT_VERSION = 1
DTYPES = ("float32", "float64", "float16", "bfloat16", "int64", "int32", "bool")
# `classification` is the spine's name for `multiclass` and stays accepted.
HEAD_KINDS = ("multiclass", "multilabel", "binary", "regression", "classification")
TASK_KINDS = (*HEAD_KINDS, "multitask", "custom", "segmentation", "detection")
SCHEDULER_INTERVALS = ("epoch", "step")

IDENTIFIER = "^[A-Za-z_][A-Za-z0-9_]*$"
SYMBOL = {"type": "string", "pattern": IDENTIFIER}  # a symbolic dim from `dims:`
DIMS = {"type": "array", "items": {"anyOf": [{"type": "integer", "minimum": 1}, SYMBOL]}}

# The forms a spec may write in place of a mapping, and values narrower than their JSON type.
ShapeList = Annotated[list, WithJsonSchema(DIMS)]
ShapeAlone = Annotated[
    list, WithJsonSchema({**DIMS, "description": "the shape alone, dims without the batch dim"})
]
OpAlone = Annotated[
    str, WithJsonSchema({"type": "string", "description": "the op alone: `relu: ReLU` is `relu: {op: ReLU}`"})
]
MetricNameAlone = Annotated[
    str | None, WithJsonSchema({"type": ["string", "null"], "description": "the metric's name alone"})
]


class NormalizeKeys(Keys):
    mean: Annotated[list, WithJsonSchema({"type": "array", "items": {"type": "number"}})] = Field(
        description="per channel: subtracted first"
    )
    std: Annotated[list, WithJsonSchema({"type": "array", "items": {"type": "number"}})] = Field(
        description="per channel: divided by after"
    )


Normalize = (
    Annotated[
        str,
        WithJsonSchema(
            {"const": "weights", "description": "the normalisation the weights were trained with"}
        ),
    ]
    | Annotated[dict, Of(NormalizeKeys)]
)


class InputKeys(Keys):
    shape: ShapeList = Field(
        description="dims without the batch dim; a name (H) is a symbolic dim from `dims:`"
    )
    dtype: Annotated[str, Choice(DTYPES, "dtype", listed="")] = Field(
        "float32", description="tensor dtype: " + ", ".join(DTYPES)
    )
    is_list: bool = Field(
        False,
        alias="list",
        description="a list of tensors, one per sample, each of any size (a detection model's images);"
        " `shape` is the example size shapes are checked at",
    )
    bands: Annotated[list, WithJsonSchema({"type": "array", "items": {"type": "string"}})] = Field(
        None,
        description="the name of each channel (dim 0 of `shape`), e.g. Sentinel-2's [B02, B03, B04, B08]:"
        " a backbone's stem is built by band name",
    )
    normalize: Normalize = Field(
        None,
        description="`weights`: the normalisation of the pretrained weights this input feeds, as the model's"
        " first step; or {mean: [...], std: [...]} per channel",
    )


class Wiring(Keys):
    """The keys of a node that place it in the graph (all others but the tuning keys are the
    op's arguments)."""

    op: str = Field(
        None,
        description="torch.nn class, torchvision.<builder>, timm.<name>, transformers.AutoModel, checkpoint, a "
        "merge (concat, add), a block, or an import path (mypkg.layers.SEBlock, torchvision.ops.SqueezeExcitation)",
    )
    in_: str | list | dict = Field(
        None,
        alias="in",
        description="input reference(s) `node` or `node.port`; a mapping {name: ref} passes one dict of tensors;"
        " default: the node above",
    )
    shares: str = Field(
        None, description="instead of `op`: apply this node again, with the same weights, to `in`"
    )
    per_item: Annotated[
        int,
        Bound(
            "per_item {value} is the batch dim or before it",
            "name the dim of the items, counting the batch as 0: `per_item: 1` for (B, T, ...)",
            ge=1,
        ),
    ] = Field(
        None,
        description="fold this dim into the batch: the op runs on each item (frame, view) alone; the items come "
        "back at dim 1",
    )


class NodeKeys(Tuning, Wiring):
    """A node: its wiring, the tuning keys any op takes, and the op's own arguments."""

    # `op` is required, or `shares` in its place (the loader says so in its words)
    model_config = ConfigDict(
        extra="allow", json_schema_extra={"anyOf": [{"required": ["op"]}, {"required": ["shares"]}]}
    )

    def tuning(self) -> Tuning:
        """The node's tuning keys, as validated."""
        names = Tuning.model_fields
        return Tuning.model_construct(
            self.model_fields_set & names.keys(), **{k: getattr(self, k) for k in names}
        )


class EmaKeys(Keys):
    decay: Annotated[
        Number,
        Bound(
            "the EMA decay {value!r} must be between 0 and 1",
            "the old average's weight at each step: 0.999 averages about the last 1000 steps",
            gt=0,
            lt=1,
        ),
    ] = Field(0.999, description="the weight of the old average at each step, in (0, 1) (default 0.999)")


class LossKeys(Keys):
    model_config = ConfigDict(extra="allow")
    name: str = Field(description="a torch.nn loss class (other keys are its arguments)")


class MetricKeys(Keys):
    model_config = ConfigDict(extra="allow")
    name: str = Field(
        None, description="a metric (accuracy, f1, auroc, mae, mse, r2, ...) or a torchmetrics class"
    )


Loss = str | Annotated[dict, Of(LossKeys)]
Metrics = (
    Annotated[list, WithJsonSchema({"type": "array"})]
    | Annotated[dict, Of(MetricKeys | MetricNameAlone, named=True)]
)
LOSS = "a torch.nn loss class name, or {name, ...arguments}"
METRICS = "torchmetrics by name: [accuracy, {name: f1, average: macro}]"


class HeadKeys(Keys):
    kind: Annotated[str, Choice(HEAD_KINDS, "head kind")] = Field(
        description="one of: " + ", ".join(HEAD_KINDS)
    )
    loss: Loss = Field(None, description=LOSS)
    weight: Annotated[Number, Bound("head weight {value!r} must not be negative", ge=0)] = Field(
        1.0, description="this head's weight in the summed loss (default 1.0)"
    )
    metrics: Metrics = Field(None, description=METRICS)


class OptimizerKeys(Keys):
    model_config = ConfigDict(extra="allow")
    name: str = Field(
        "AdamW", description="a torch.optim class name (default AdamW); other keys are its arguments"
    )
    lr: Annotated[Number, Bound("learning rate {value!r} must be positive", gt=0)] = Field(
        1e-3, description="learning rate (default 1e-3), the LightningModule's `lr` hyperparameter"
    )
    decay_norm_and_bias: bool = Field(
        False,
        description="true: weight decay applies to norm layers, biases and tokens too (default false: they get none)",
    )


class SchedulerKeys(Keys):
    model_config = ConfigDict(extra="allow")
    name: str = Field(
        description="a torch.optim.lr_scheduler class, or cosine_with_warmup; other keys are its arguments"
    )
    interval: Annotated[
        str,
        Choice(
            SCHEDULER_INTERVALS,
            "scheduler interval",
            "`step` (after every optimizer step) or `epoch` (after every epoch)",
        ),
    ] = Field(None, description="when it steps: " + " or ".join(SCHEDULER_INTERVALS))
    frequency: Annotated[int, Bound("frequency {value} must be at least 1", ge=1)] = Field(
        1, description="step it every N intervals (default 1)"
    )
    monitor: str = Field(None, description="the logged value a ReduceLROnPlateau watches (default val_loss)")


class TaskKeys(Keys):
    kind: Annotated[str, Choice(TASK_KINDS, "task kind")] = Field(
        description="one of: " + ", ".join(TASK_KINDS)
    )
    output: str = Field(None, description="which output the loss reads (default: the only output)")
    loss: Loss = Field(None, description=LOSS)
    metrics: Metrics = Field(None, description=METRICS)
    heads: Annotated[dict, Of(HeadKeys, named=True)] = Field(
        None, description="multitask only: output name -> {kind, loss, weight, metrics}"
    )
    optimizer: Annotated[dict, Of(OptimizerKeys)] = Field(
        None, description="{name: a torch.optim class, lr, ...arguments}"
    )
    scheduler: Annotated[dict, Of(SchedulerKeys)] = Field(
        None, description="{name: a torch.optim.lr_scheduler class, interval, ...arguments}"
    )
    aux: str = Field(
        None,
        description="segmentation only: the auxiliary output trained with the same target (default: aux)",
    )
    aux_weight: Annotated[Number, Bound("aux_weight {value!r} must not be negative", ge=0)] = Field(
        0.5, description="segmentation only: the auxiliary loss's weight in the total (default 0.5)"
    )
    ema: Annotated[dict, Of(EmaKeys)] = Field(
        None, description="{decay: 0.999}: an exponential moving average of the weights, used by validation"
    )


Nodes = Annotated[dict, Of(NodeKeys | OpAlone, named=True)]


class BlockKeys(Keys):
    params: dict | list = Field(None, description="parameter name -> default, or a list of required names")
    inputs: list = Field(
        ["x"], description="the block's input names, in the order of a using node's `in:` (default [x])"
    )
    nodes: Nodes = Field(
        description="node id -> node, as in the top-level `nodes:`; `$name` uses a parameter"
    )
    output: str = Field(None, description="the node whose value the block returns (default: the last node)")


class SpecKeys(Keys):
    nncompile: Annotated[int, WithJsonSchema({"const": FORMAT_VERSION})] = Field(
        description="spec format version; must be 1"
    )
    # read by compose.py, which merges the bases and drops the key before the spec is checked
    extends: Annotated[
        str | list,
        WithJsonSchema({"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}),
    ] = Field(
        None,
        description="a base spec (a path relative to this file), or a list of them applied in order: this "
        "spec is merged onto them as a JSON Merge Patch (mappings merge key by key, null deletes a key, "
        "any other value replaces); a base may extend others",
    )
    name: Annotated[str, WithJsonSchema({"type": "string", "pattern": IDENTIFIER})] = Field(
        description="class name of the generated nn.Module (a Python identifier)"
    )
    inputs: Annotated[dict, Of(InputKeys | ShapeAlone, named=True)] = Field(
        description="input name -> shape without the batch dim, or {shape, dtype}"
    )
    dims: dict = Field(
        None, description="symbolic dim name -> example size, or [example size, second check size]"
    )
    blocks: Annotated[dict, Of(BlockKeys, named=True)] = Field(
        None, description="block name -> a reusable subgraph {params, inputs, nodes, output}"
    )
    nodes: Nodes = Field(description="node id -> node; order matters only for the implicit chain")
    outputs: dict | str | list = Field(
        None, description="output name -> node reference (default: the last node)"
    )
    task: Annotated[dict, Of(TaskKeys)] = Field(
        description="what the LightningModule trains: kind, loss, optimizer"
    )
