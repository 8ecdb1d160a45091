"""Freezing and per-node learning rates (`freeze`, `trainable`, `lr`, `lr_mult` on any node).

Planned from the meta modules: which parts of each node are frozen (the fewest modules and
parameters that cover exactly the frozen weights), the `requires_grad_(False)` lines that freeze
them, their BatchNorm layers swapped for `FrozenBatchNorm` (ops/norm_helper.py: running
statistics that never move, whoever calls `train()`), and a `param_groups()` method that gives
the optimizer the trainable parameters grouped by learning rate.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field

from .errors import SpecError, did_you_mean
from .ops import norm_helper
from .ops.surgery import module_path_code
from .pyfmt import Arg, BinOp, Call, Entry, Expr, Seq, literal, signature, statement


@dataclass
class Tuning:
    """What the plan adds for freezing and learning rates."""

    init: dict[str, list[tuple[str, str, str | None]]]  # node id -> freezing statements
    methods: list[str]  # indented lines of the nn.Module's param_groups()
    helpers: dict[str, str]  # name -> source of what the freezing statements call
    optimizer_params: Expr  # what configure_optimizers hands the optimizer
    rates: list[tuple[str, float, object]]  # each node's rate argument of param_groups: name, value, loc
    frozen: int  # parameter counts
    trainable: int
    frozen_by_node: dict[str, int] = field(default_factory=dict)


def plan_tuning(shaped) -> Tuning:
    init: dict[str, list] = {}
    helpers: dict[str, str] = {}
    groups: list[Entry] = []
    rates: list[tuple[str, float, object]] = []
    frozen_total = total = 0
    frozen_by_node = {}
    for node_id, result in shaped.nodes.items():
        node, module = result.spec, result.built.module
        total += _count(module)
        parts = _frozen_parts(node, module, result.built.new_layers, result.built.default_frozen)
        if parts:
            attr = f"self.{node_id}"
            init[node_id] = [(f"{_access(attr, module, p)}.requires_grad_(False)", "", None) for p in parts]
            init[node_id][0] = (init[node_id][0][0], "", "frozen: training leaves these weights fixed")
            frozen = {id(p): p.numel() for part in parts for p in _params(module, part)}
            frozen_by_node[node_id] = sum(frozen.values())
            frozen_total += frozen_by_node[node_id]
            norms = [p for p in parts if (sub := _module(module, p)) is not None and _holds_batchnorm(sub)]
            if norms:
                init[node_id] += _freeze_norms(node, module, attr, norms, helpers)
        lr = _lr(node, module, frozen_by_node.get(node_id, 0), rates)
        if lr is not None:
            groups.append(
                Seq(
                    (
                        Entry('"params"', Call("list", (Arg(None, f"self.{node_id}.parameters()"),))),
                        Entry('"lr"', lr),
                    ),
                    "{}",
                )
            )
    methods = _param_groups(groups, rates) if groups or frozen_total else []
    by_rate = (Arg(None, "self.hparams.lr"), *(Arg(name, f"self.hparams.{name}") for name, _, _ in rates))
    return Tuning(
        init,
        methods,
        helpers,
        Call("self.model.param_groups", by_rate) if groups or frozen_total else "self.parameters()",
        rates,
        frozen_total,
        total - frozen_total,
        frozen_by_node,
    )


def _freeze_norms(node, module, attr: str, parts: list[str], helpers: dict) -> list:
    """The statements that swap the BatchNorm layers of the frozen `parts` for FrozenBatchNorm
    (timm's BatchNormAct2d, which also holds an activation, for timm's frozen twin), adding
    what they call to `helpers`."""
    import torch.nn as nn

    kinds = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)
    torch_parts, timm_parts = [], []
    for part in parts:
        for path, sub in _module(module, part).named_modules():
            if not isinstance(sub, nn.modules.batchnorm._BatchNorm):
                continue
            if type(sub) in kinds or _is_timm_norm_act(sub):
                found = torch_parts if type(sub) in kinds else timm_parts
                found += [part] if part not in found else []
                continue
            raise SpecError(
                f"node '{node.id}': cannot keep the statistics of {type(sub).__name__} "
                f"({_join(part, path) or node.id}) fixed: only torch's BatchNorm1d/2d/3d and SyncBatchNorm",
                node.param_loc("freeze" if "freeze" in node.tuning else "trainable"),
                node=node.id,
                hint="leave that layer trainable (`trainable: [...]`), or freeze the layers around it",
            )
    comment = "BatchNorm statistics fixed too, whoever calls train()"
    if torch_parts == [""] and type(module) in kinds:  # the node is one BatchNorm layer
        lines = [(f"{attr} = ", Call("FrozenBatchNorm", (Arg(None, attr),)), comment)]
    elif torch_parts:
        paths = Seq(tuple(literal(p) for p in torch_parts), "()")
        lines = [("", Call("_freeze_batchnorm_stats", (Arg(None, attr), Arg(None, paths))), comment)]
    else:
        lines = []
    if torch_parts:
        helpers["FrozenBatchNorm"] = inspect.getsource(norm_helper.FrozenBatchNorm)
        helpers["_freeze_batchnorm_stats"] = inspect.getsource(norm_helper._freeze_batchnorm_stats)
    for part in timm_parts:
        access = _access(attr, module, part)
        call = Call("timm.layers.freeze_batch_norm_2d", (Arg(None, access),))
        lines.append((f"{access} = ", call, None if lines else comment))
    return lines


def _is_timm_norm_act(module) -> bool:
    try:
        from timm.layers import BatchNormAct2d, SyncBatchNormAct
    except ImportError:
        return False
    return isinstance(module, BatchNormAct2d | SyncBatchNormAct)


def _param_groups(groups: list[Entry], rates: list[tuple[str, float, object]]) -> list[str]:
    params = ["self", "lr: float", *(f"{name}: float = {literal(value)}" for name, value, _ in rates)]
    head = [""] + signature("param_groups", params, "list[dict]", 1)
    if not groups:  # one rate for all: only frozen parameters to leave out
        return head + [
            '        """The trainable parameters for the optimizer (frozen ones are left out)."""',
            '        return [{"params": [p for p in self.parameters() if p.requires_grad], "lr": lr}]',
        ]
    return (
        head
        + [
            '        """The trainable parameters for the optimizer, grouped by learning rate',
            '        (nodes with their own rate first); frozen parameters are left out."""',
        ]
        + statement("groups = ", Seq(tuple(groups)), 2)
        + [
            '        grouped = {id(p) for group in groups for p in group["params"]}',
            "        rest = [p for p in self.parameters() if id(p) not in grouped]",
            '        groups.append({"params": rest, "lr": lr})',
            "        for group in groups:",
            '            group["params"] = [p for p in group["params"] if p.requires_grad]',
            '        return [group for group in groups if group["params"]]',
        ]
    )


def _frozen_parts(node, module, new_layers: list[str], default: list[str] = ()) -> list[str]:
    """The paths (modules or parameters, '' for the whole node) that `freeze`/`trainable` freeze,
    or, where the spec sets neither, the op's `default` (what torchvision freezes for weights)."""
    freeze, trainable = node.tuning.get("freeze", False), node.tuning.get("trainable")
    if "unfreeze" in node.tuning:  # frozen for good but the parts it unfreezes (and a new head)
        from .unfreezing import schedule

        parts: list[str] = []
        _walk(module, "", [""], [*schedule(node, module).starts, *new_layers], parts)
        return parts
    if freeze is False and trainable is None:
        parts: list[str] = []
        if default:
            _walk(module, "", list(default), list(new_layers), parts)
        return parts
    if "freeze" in node.tuning and trainable is not None:
        raise SpecError(
            "`freeze` and `trainable` cannot be combined",
            node.doc.key_loc("nodes", node.id, "trainable"),
            node=node.id,
            hint="`trainable: [...]` alone freezes everything else in the node",
        )
    if module is None or _count(module) == 0:
        key = "freeze" if "freeze" in node.tuning else "trainable"
        raise SpecError(f"node '{node.id}' has no parameters to freeze", node.param_loc(key), node=node.id)
    if trainable is not None:
        keep = _prefixes(node, module, "trainable")
        prefixes = [""]
    elif freeze is True:
        keep, prefixes = [], [""]
    else:
        keep, prefixes = [], _prefixes(node, module, "freeze")
    keep = keep + new_layers  # a replaced head is new: it trains unless named in `freeze`
    if freeze is not True and trainable is None:
        keep = [k for k in keep if not any(_under(k, [p]) for p in prefixes)]
    parts: list[str] = []
    _walk(module, "", prefixes, keep, parts)
    return parts


def _walk(module, path: str, prefixes: list[str], keep: list[str], out: list[str]) -> None:
    if _under(path, keep):
        return
    if _under(path, prefixes) and not any(_inside(k, path) for k in keep):
        if any(True for _ in module.parameters()) or _holds_batchnorm(module):
            out.append(path)  # buffers alone (FrozenBatchNorm2d) need no freezing
        return
    for name, param in module.named_parameters(recurse=False):
        full = _join(path, name)
        if _under(full, prefixes) and not _under(full, keep) and param is not None:
            out.append(full)
    for name, child in module.named_children():
        _walk(child, _join(path, name), prefixes, keep, out)


def _holds_batchnorm(module) -> bool:
    """Whether `module` holds running statistics that freezing must keep fixed (a BatchNorm
    without affine parameters has only buffers)."""
    import torch.nn as nn

    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())


def _prefixes(node, module, key: str) -> list[str]:
    raw = node.tuning[key]
    loc = node.param_loc(key)
    if not isinstance(raw, list) or not raw or not all(isinstance(p, str) and p for p in raw):
        raise SpecError(
            f"`{key}` takes a list of submodule paths" + (" or true" if key == "freeze" else ""),
            loc,
            node=node.id,
            hint=f"for example `{key}: [layer1, layer2]`",
        )
    names = {n for n, _ in module.named_modules() if n} | {n for n, _ in module.named_parameters()}
    for i, prefix in enumerate(raw):
        if prefix not in names:
            raise no_submodule(node, prefix, names, node.doc.loc("nodes", node.id, key, i))
    return list(raw)


def no_submodule(node, path: str, names: set[str], loc) -> SpecError:
    tops = sorted({n.split(".")[0] for n in names})
    return SpecError(
        f"node '{node.id}' has no submodule '{path}'",
        loc,
        node=node.id,
        # a sibling at the same depth first: `layer5` -> layer4, not layer3.5
        hint=did_you_mean(path, [n for n in names if n.count(".") == path.count(".")])
        or did_you_mean(path, sorted(names))
        or "its submodules: " + ", ".join(tops),
    )


def _lr(node, module, frozen: int, rates: list):
    """The learning-rate expression of the node's own parameter group, or None; its argument of
    param_groups (`lr_<node>` or `lr_mult_<node>`) is added to `rates`."""
    given = [k for k in ("lr", "lr_mult") if k in node.tuning]
    if not given:
        return None
    if len(given) == 2:
        raise SpecError(
            "`lr` and `lr_mult` cannot be combined", node.param_loc("lr_mult"), node=node.id, hint="pick one"
        )
    key = given[0]
    value = node.tuning[key]
    if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
        raise SpecError(
            f"`{key}` must be a positive number, not {value!r}", node.param_loc(key), node=node.id
        )
    if module is None or _count(module) == frozen:
        raise SpecError(
            f"node '{node.id}' has no trainable parameters to give a learning rate",
            node.param_loc(key),
            node=node.id,
            hint="remove `" + key + "`" + (" or the node's `freeze`" if frozen else ""),
        )
    name = f"{key}_{node.id}"
    rates.append((name, float(value), node.param_loc(key)))
    return name if key == "lr" else BinOp("*", "lr", name)


def _access(attr: str, module, path: str) -> str:
    """Code reaching `path` inside the node: `.layer1`, `.features[0]`, or, in a feature extractor
    (whose copied containers cannot be indexed) or a ModuleDict, `.get_submodule("features.0")`."""
    import torch.fx

    if not path:
        return attr
    parts = path.split(".")
    if any(p.isdigit() for p in parts) and (
        isinstance(module, torch.fx.GraphModule) or _in_module_dict(module, parts)
    ):
        return f"{attr}.get_submodule({literal(path)})"
    return attr + module_path_code(path)


def _in_module_dict(module, parts: list[str]) -> bool:
    """Whether a numeric step of the path is a key of a ModuleDict (a detection backbone's
    `body["0"]`), which `[0]` cannot index."""
    import torch.nn as nn

    for i, part in enumerate(parts):
        parent = module.get_submodule(".".join(parts[:i]))
        if part.isdigit() and isinstance(parent, nn.ModuleDict):
            return True
    return False


def _under(path: str, prefixes: list[str]) -> bool:
    return any(p == "" or path == p or path.startswith(p + ".") for p in prefixes)


def _inside(path: str, root: str) -> bool:
    return path != root and (root == "" or path.startswith(root + "."))


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _module(module, path: str):
    try:
        return module.get_submodule(path) if path else module
    except AttributeError:
        return None  # a parameter


def _params(module, path: str):
    sub = _module(module, path)
    return list(sub.parameters()) if sub is not None else [module.get_parameter(path)]


def _count(module) -> int:
    return sum(p.numel() for p in module.parameters()) if module is not None else 0
