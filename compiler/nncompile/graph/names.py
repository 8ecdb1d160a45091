"""Names a node, input, block or parameter may take: each becomes a Python attribute or variable."""

from __future__ import annotations

import builtins

from ..errors import SpecError
from ..spec.model import is_identifier

# Names the generated forward() and __init__ use themselves; a node or input with one of these
# names would shadow them.
GENERATED_NAMES = frozenset({"self", "torch", "nn", "F", "pl", "torchvision", "torchmetrics", "pretrained"})
# Names the class name (`name:`) must not take: the module-level names of the generated file and
# the locals of the LightningModule's __init__, which calls the class.
CLASS_NAME_TAKEN = GENERATED_NAMES | {"create_feature_extractor", "lr", "metrics"}
# Public attributes of nn.Module (node ids become attributes: `self.<id>`).
MODULE_ATTRIBUTES = frozenset(
    {
        "T_destination",
        "add_module",
        "apply",
        "bfloat16",
        "buffers",
        "call_super_init",
        "children",
        "compile",
        "cpu",
        "cuda",
        "double",
        "dump_patches",
        "eval",
        "extra_repr",
        "float",
        "forward",
        "get_buffer",
        "get_extra_state",
        "get_parameter",
        "get_submodule",
        "half",
        "ipu",
        "load_state_dict",
        "modules",
        "mtia",
        "named_buffers",
        "named_children",
        "named_modules",
        "named_parameters",
        "parameters",
        "register_backward_hook",
        "register_buffer",
        "register_forward_hook",
        "register_forward_pre_hook",
        "register_full_backward_hook",
        "register_full_backward_pre_hook",
        "register_load_state_dict_post_hook",
        "register_load_state_dict_pre_hook",
        "register_module",
        "register_parameter",
        "register_state_dict_post_hook",
        "register_state_dict_pre_hook",
        "requires_grad_",
        "set_extra_state",
        "set_submodule",
        "share_memory",
        "smart_apply",
        "state_dict",
        "to",
        "to_empty",
        "train",
        "training",
        "type",
        "xpu",
        "zero_grad",
    }
)


def check_name(name: str, what: str, loc, node: str | None = None) -> None:
    """Reject a node or input name that cannot be a Python attribute or local variable."""
    problem = None
    if not is_identifier(name):
        problem = "is not a Python identifier" + (
            " (ASCII letters, digits, _)" if name.isidentifier() else ""
        )
    elif name.startswith("_"):
        problem = "starts with '_', which nn.Module keeps for its internals"
    elif hasattr(builtins, name):
        problem = "is a Python builtin"
    elif name in GENERATED_NAMES:
        problem = "is a name the generated code uses itself"
    elif name in MODULE_ATTRIBUTES:
        problem = "is an nn.Module attribute"
    if problem:
        raise SpecError(
            f"{what} name {name!r} {problem}",
            loc,
            node=node,
            hint=f"rename it, for example '{suggest_name(name)}'",
        )


def suggest_name(name: str) -> str:
    cleaned = "".join(c if c.isascii() and (c.isalnum() or c == "_") else "_" for c in name).strip("_")
    if not cleaned or cleaned[0].isdigit():
        cleaned = "n_" + cleaned
    return cleaned + "_layer" if not cleaned.endswith("_layer") else cleaned
