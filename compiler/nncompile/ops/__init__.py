"""The op registry: the one place that maps a node's `op:` string to the op kind that builds it."""

from __future__ import annotations

from ..errors import SpecError, did_you_mean_op
from .base import Built, OpKind, Port, TensorInfo
from .layers.functional import FUNCTIONAL
from .layers.merges import Concat, Elementwise, Stack
from .layers.torch_nn import CONTAINERS, TorchNN, nn_class_names

__all__ = ["Built", "OpKind", "Port", "TensorInfo", "resolve", "known_ops"]

MERGES: dict[str, OpKind] = {
    "concat": Concat(),
    "stack": Stack(),
    "add": Elementwise("+", -1),
    "sub": Elementwise("-", 2),
    "mul": Elementwise("*", -1),
    "div": Elementwise("/", 2),
}
NN_PREFIXES = ("torch.nn.", "nn.")
WHOLE_MODEL_FAMILIES = ("segmentation", "detection")  # torchvision.<family>.<builder>


def resolve(node, block_names=()) -> OpKind:
    """The op kind for a node, or a located error with a did-you-mean (among the ops and
    `block_names`, the spec's blocks, which shapes/blocks.py resolves before the registry).
    Each backbone family's module is imported when a spec names it: compiling a spec costs the
    imports it uses (bench/RESULTS.md, section 3)."""
    op = node.op
    if op in MERGES:
        return MERGES[op]
    if op in FUNCTIONAL:
        return FUNCTIONAL[op]
    if op == "checkpoint":
        from .backbones.checkpoint_backbone import CheckpointBackbone

        return CheckpointBackbone()
    if is_library_class(op):
        from .layers.user_layer import UserLayer

        return UserLayer(op)
    family, _, builder = op.removeprefix("torchvision.").partition(".")
    if op.startswith("torchvision.") and family in WHOLE_MODEL_FAMILIES and builder:
        # with `output:` one part of the model; without, the whole model
        if "output" in node.params:
            from .backbones.torchvision_parts import TorchvisionPart

            return TorchvisionPart(family, builder)
        from .backbones.torchvision_whole import TorchvisionWhole

        return TorchvisionWhole(family, builder)
    if op.startswith("torchvision."):
        from .backbones.torchvision_models import TorchvisionModel

        return TorchvisionModel(op.removeprefix("torchvision."))
    if op.startswith("timm."):
        from .backbones.timm_models import TimmModel

        return TimmModel(op.removeprefix("timm."))
    if op.startswith("torchgeo.") and op.count(".") == 1:
        from .backbones.torchgeo_models import TorchgeoModel

        return TorchgeoModel(op.removeprefix("torchgeo."))
    if op.startswith("transformers.") and op.count(".") == 1:
        from .backbones.hf_models import HFModel

        return HFModel(op.removeprefix("transformers."))
    name = next((op.removeprefix(p) for p in NN_PREFIXES if op.startswith(p)), op)
    if "." not in name and name not in CONTAINERS and name in nn_class_names():
        return TorchNN(name)
    if "." in op and not op.startswith(("torch.", "nn.")):
        from .layers.user_layer import UserLayer

        return UserLayer(op)
    raise SpecError(
        f"unknown op '{op}'",
        node.op_loc(),
        node=node.id,
        hint=did_you_mean_op(op, known_ops() + sorted(block_names))
        or "ops are torch.nn classes (Linear), torchvision.<model>, timm.<model>, torchgeo.<model>, transformers.AutoModel, checkpoint, functional ops "
        "(concat, add, flatten, ...), blocks from `blocks:`, or a user layer `package.module.Class`",
    )


def is_library_class(op: str) -> bool:
    """`torchvision.ops.SqueezeExcitation`, `timm.layers.SqueezeExcite`: a class (CamelCase) by its
    import path inside torchvision or timm, used like a user layer. Model builders are functions
    with lower-case names (`torchvision.resnet18`, `timm.vit_base_patch16_224.augreg_in21k`)."""
    parts = op.split(".")
    return parts[0] in ("torchvision", "timm") and len(parts) >= 3 and parts[-1][:1].isupper()


def known_ops() -> list[str]:
    return sorted([*MERGES, "checkpoint"]) + sorted(FUNCTIONAL) + nn_class_names()
