"""Freezing and per-node learning rates (`freeze`, `trainable`, `lr`, `lr_mult` on any node).

Planned from the meta modules: which parts of each node are frozen (the fewest modules and
parameters that cover exactly the frozen weights), the `requires_grad_(False)` lines that freeze
them, their BatchNorm layers swapped for `FrozenBatchNorm` (ops/norms.py: running
statistics that never move, whoever calls `train()`), and a `param_groups()` method that gives
the optimizer the trainable parameters grouped by learning rate.
"""

from __future__ import annotations

import inspect
import itertools
from dataclasses import dataclass, field, replace

from ...errors import SpecError
from ...ops.backbones.surgery import module_path_code
from ...pyfmt import (
    INDENT,
    LINE_LENGTH,
    Arg,
    Attr,
    BinOp,
    Call,
    Entry,
    Expr,
    Seq,
    flat,
    literal,
    signature,
    statement,
    table_statement,
)
from ...runtime import adapters, decay, norms
from . import layer_depth, optim, unfreezing
from .submodules import nameable, no_submodule

# what the generated file's param_groups() calls to split off the parameters weight decay spares
DECAY_HELPERS = ("_split_weight_decay", "_no_weight_decay", "_is_norm")  # the first alone where 1-D


@dataclass(frozen=True)
class Group:
    """One parameter group of `param_groups()`, as the summary lists it."""

    label: str  # what it holds: "resnet depth 5: conv1, bn1", "the rest"
    rate: str  # its learning rate in param_groups' terms: "lr * lr_decay_resnet**5"
    lr: float | None  # that rate at the spec's values (None: no task, no optimizer rate)
    params: int
    trainable: int
    decays: bool  # False: the no-decay twin (norm layers, biases, tokens), weight_decay 0
    members: tuple[str, ...] = ()  # "<node>.<parameter path>" of its trainable parameters, in module order
    unfreeze: str | None = None  # the gradual-unfreezing part it holds ("resnet.layer4"), None: none


@dataclass(frozen=True)
class _Depth:
    """Where a group of layer-wise decay sits: its node, the decay's argument of param_groups
    (`lr_decay_<node>`), the node's rate (its head's) and the depth below the head."""

    node: str
    name: str
    base: Expr
    depth: int


@dataclass(frozen=True)
class _Planned:
    """A group of param_groups() as planned: its code and what the summary says of it."""

    label: str
    params_code: Expr  # what its "params" are in param_groups()
    rate: Expr
    value: float | None
    params: list
    decay: _Depth | None = None
    unfreeze: str | None = None  # its `"unfreeze"`: the part of a node's `unfreeze:` it holds


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
    groups: list[Group] = field(default_factory=list)  # the optimizer's groups, in order


def plan_tuning(shaped) -> Tuning:
    """Freezing, `train_bn`, the learning rates of `lr`/`lr_mult`/`lr_decay` and the weight-decay
    split, all of them turned into the one `param_groups()` method: its groups (a fixed set) are
    everything configure_optimizers hands the optimizer."""
    task = shaped.graph.spec.task
    split = optim.splits_weight_decay(task.optimizer if task is not None else None)
    init: dict[str, list] = {}
    helpers: dict[str, str] = {}
    groups: list[_Planned] = []
    rates: list[tuple[str, float, object]] = []
    frozen_ids: set[int] = set()
    frozen_total = total = 0
    frozen_by_node = {}
    grouped: set[int] = set()
    for node_id, result in shaped.nodes.items():
        node, module = result.spec, result.built.module
        total += _count(module)
        parts = _frozen_parts(node, module, result.built.new_layers, result.built.default_frozen)
        train_bn = _train_bn(node, module, parts)
        attr, frozen = f"self.{node_id}", {}
        if parts:
            norms = [p for p in parts if (sub := _module(module, p)) is not None and _holds_batchnorm(sub)]
            together = bool(norms) and not train_bn  # one comment for the weights and the statistics
            fixed = " and their BatchNorm statistics fixed" if together else " fixed"
            init[node_id] = _freezing_lines(
                attr, module, parts, "frozen: training leaves these weights" + fixed
            )
            adapter_ids = {id(p) for p in adapters._lora_parameters(module)}
            frozen = {id(p): p for part in parts for p in _params(module, part) if id(p) not in adapter_ids}
            if train_bn:
                init[node_id] += _train_norms(attr, parts, helpers)
                for part in parts:
                    frozen = {k: p for k, p in frozen.items() if k not in _norm_params(module, part)}
            if norms:
                comment = None if together else "BatchNorm statistics fixed too, whoever calls train()"
                init[node_id] += _freeze_norms(node, module, attr, norms, helpers, comment)
        unused = _cover(module, set(result.built.unused), "") if result.built.unused else []
        if unused:  # after train_bn, which must not bring them back
            comment = "the node's output does not depend on these: no gradient reaches them"
            init.setdefault(node_id, []).extend(_freezing_lines(attr, module, unused, comment))
            frozen |= {id(p): p for part in unused for p in _params(module, part)}
        if parts or unused:
            frozen_ids |= set(frozen)
            frozen_by_node[node_id] = sum(p.numel() for p in frozen.values())
            frozen_total += frozen_by_node[node_id]
        lr, value = _lr(node, module, frozen_by_node.get(node_id, 0), rates, task)
        if node.tuning.lr_decay is not None:
            node_groups = _decay_groups(node, module, result.built.new_layers, lr or "lr", value, rates)
        elif lr is not None:
            every = Call("list", (Arg(None, f"self.{node_id}.parameters()"),))
            node_groups = [_Planned(node_id, every, lr, value, list(module.parameters()))]
        else:
            node_groups = []
        if node.tuning.unfreeze is not None:
            node_groups = _by_part(node, module, node_groups, lr or "lr", value, set(frozen))
            grouped |= set(frozen)  # left out of its groups, not counted in the rest's either
        for group in node_groups:
            groups.append(group)
            grouped |= {id(p) for p in group.params}
    base = task.optimizer.lr if task is not None else None
    rest = {
        id(p): p
        for r in shaped.nodes.values()
        if r.built.module is not None
        for p in r.built.module.parameters()
    }
    rest_params = [p for k, p in rest.items() if k not in grouped]
    table = _table(
        [*groups, _Planned("the rest", Seq(()), "lr", base, rest_params)], shaped, frozen_ids, split
    )
    spared = _spared_code(shaped) if split else None
    rest_code = _rest_code(shaped, grouped, frozen_ids)
    methods = _param_groups(groups, rates, spared, rest_code) if groups or frozen_total or split else []
    by_rate = (Arg(None, "self.hparams.lr"), *(Arg(None, f"self.hparams.{name}") for name, _, _ in rates))
    return Tuning(
        init,
        methods,
        helpers | (_helper_sources(*_decay_helpers(spared, bool(groups))) if split else {}),
        Call("self.model.param_groups", by_rate) if methods else "self.parameters()",
        rates,
        frozen_total,
        total - frozen_total,
        frozen_by_node,
        table,
    )


def _freezing_lines(attr: str, module, parts: list[str], comment: str) -> list:
    """The `requires_grad_(False)` statements that freeze `parts`, the first with `comment`:
    one loop over three or more submodules where its first line fits."""
    loop = Attr(Seq(tuple(literal(p) for p in parts), "()"), ":")
    if len(parts) >= 3 and all(p and _module(module, p) is not None for p in parts):
        if len(f"{INDENT * 2}for part in {flat(loop)}") <= LINE_LENGTH:
            return [
                ("for part in ", loop, comment),
                (INDENT, f"{attr}.get_submodule(part).requires_grad_(False)", None),
            ]
    lines = [(f"{_access(attr, module, p)}.requires_grad_(False)", "", None) for p in parts]
    return [(lines[0][0], "", comment), *lines[1:]]


def _table(planned: list[_Planned], shaped, frozen_ids: set[int], split: bool) -> list[Group]:
    """The groups the optimizer gets, as param_groups() builds them: each split in two when
    weight decay spares norms and biases; groups without trainable parameters are dropped."""
    skip, names = set(), parameter_names(shaped)
    order = {param_id: i for i, param_id in enumerate(names)}
    if split:
        for result in shaped.nodes.values():
            if result.built.module is not None:
                skip |= decay._no_weight_decay(result.built.module)
    out = []
    for group in planned:
        params = group.params
        kinds = [
            (True, [p for p in params if id(p) not in skip]),
            (False, [p for p in params if id(p) in skip]),
        ]
        for decays, members in kinds if split else [(True, params)]:
            trainable = [p for p in members if id(p) not in frozen_ids]
            if trainable:
                count = sum(p.numel() for p in members)
                listed = tuple(names[id(p)] for p in sorted(trainable, key=lambda p: order[id(p)]))
                out.append(
                    Group(
                        group.label,
                        flat(group.rate),
                        group.value,
                        count,
                        sum(p.numel() for p in trainable),
                        decays,
                        listed,
                        group.unfreeze,
                    )
                )
    return out


def parameter_names(shaped) -> dict[int, str]:
    """Each parameter's name in the model, "<node>.<path>", in the order `model.parameters()`
    gives them (a shared module's under the node that holds it first)."""
    names: dict[int, str] = {}
    for node_id, result in shaped.nodes.items():
        if result.built.module is not None:
            for path, param in result.built.module.named_parameters():
                names.setdefault(id(param), f"{node_id}.{path}")
    return names


def _train_bn(node, module, parts: list[str]) -> bool:
    """Whether `train_bn: true` keeps the affine parameters of the node's frozen norm layers training."""
    if not node.tuning.train_bn:
        return False
    loc = node.param_loc("train_bn")
    if not parts:
        raise SpecError(
            f"node '{node.id}' has no frozen layers for `train_bn`",
            loc,
            node=node.id,
            hint="`train_bn` goes with `freeze` or `trainable`; without them every norm layer trains",
        )
    if any(
        _is_timm_norm_act(m) for p in parts if (sub := _module(module, p)) is not None for m in sub.modules()
    ):
        raise SpecError(
            f"node '{node.id}': `train_bn` cannot train timm's frozen BatchNormAct layers (they hold "
            "their affine parameters as buffers)",
            loc,
            node=node.id,
            hint="leave those layers trainable (`trainable: [...]`) instead",
        )
    return True


def _norm_params(module, part: str) -> set[int]:
    sub = _module(module, part)
    if sub is None:
        return set()
    return {id(p) for m in sub.modules() if decay._is_norm(m) for p in m.parameters(recurse=False)}


def _train_norms(attr: str, parts: list[str], helpers: dict) -> list:
    helpers |= _helper_sources("_train_norm_affine", "_is_norm")
    paths = Seq(tuple(literal(p) for p in parts), "()")
    call = Call("_train_norm_affine", (Arg(None, attr), Arg(None, paths)))
    return [("", call, "train_bn: their norm layers' weight and bias still train (statistics stay fixed)")]


def _helper_sources(*names: str) -> dict[str, str]:
    return {name: inspect.getsource(getattr(decay, name)) for name in names}


def _decay_groups(node, module, new_layers: list[str], base: Expr, base_value, rates: list) -> list[_Planned]:
    """The node's groups of layer-wise decay, deepest first; `base` is the node's rate, the head's."""
    decay = node.tuning.lr_decay
    if module is None or _count(module) == 0:
        raise SpecError(
            f"node '{node.id}' has no parameters for `lr_decay`", node.param_loc("lr_decay"), node=node.id
        )
    name = f"lr_decay_{node.id}"
    rates.append((name, float(decay), node.param_loc("lr_decay")))
    by_depth: dict[int, set[str]] = {}
    for param, depth in layer_depth.depths(node, module, new_layers).items():
        by_depth.setdefault(depth, set()).add(param)
    named = dict(module.named_parameters())
    out = []
    for depth in sorted(by_depth, reverse=True):
        cover = _cover(module, by_depth[depth], "")
        rate = base if depth == 0 else BinOp("*", base, name if depth == 1 else f"{name}**{depth}")
        value = None if base_value is None else base_value * float(decay) ** depth
        label = _label(node.id, depth, cover)
        code = _params_code(f"self.{node.id}", module, cover)
        params = [named[p] for p in sorted(by_depth[depth])]
        out.append(_Planned(label, code, rate, value, params, _Depth(node.id, name, base, depth)))
    return out


def _label(node_id: str, depth: int | None, cover: list[str]) -> str:
    """What the summary calls a group: "resnet depth 1: layer4", "resnet: layer4, fc"."""
    at = "" if depth is None else f" depth {depth}{', the head' if depth == 0 else ''}"
    return f"{node_id}{at}: " + ", ".join(cover)


def _params_code(attr: str, module, cover: list[str]) -> Expr:
    """The list of the parameters under the paths `cover` of the node at `attr`."""
    return _params_list(_param_items(attr, module, cover))


def _param_items(attr: str, module, cover: list[str]) -> list[str]:
    """The items of that list: `*<submodule>.parameters()`, or a parameter itself."""
    return [
        f"*{_access(attr, module, p)}.parameters()"
        if _module(module, p) is not None
        else _access(attr, module, p)
        for p in cover
    ]


def _params_list(items: list[str]) -> Expr:
    """`list(<submodule>.parameters())` for one submodule's parameters, else a list display."""
    if len(items) == 1 and items[0].startswith("*"):
        return Call("list", (Arg(None, items[0][1:]),))
    return Seq(tuple(items))


def _by_part(node, module, planned: list[_Planned], base: Expr, value, held: set[int]) -> list[_Planned]:
    """The node's groups split by the part of its `unfreeze:` their parameters are in (each
    part's in groups of their own), less the parameters frozen for good (`held`: their ids);
    its LoRA adapters train from the start, in no part. Without groups of its own, the node
    gets one per part at `base`, the rest of its parameters staying in the rest."""
    lora = {id(p) for p in adapters._lora_parameters(module)}
    part_of = {
        id(p): part
        for part in node.tuning.unfreeze.starts
        for p in _params(module, part)
        if id(p) not in lora
    }
    if not planned:
        planned = [_Planned(node.id, "", base, value, [p for p in module.parameters() if id(p) in part_of])]
    names = {id(p): name for name, p in module.named_parameters()}
    out = []
    for group in planned:
        parts: dict[str | None, list] = {}
        for param in group.params:
            if id(param) not in held:
                parts.setdefault(part_of.get(id(param)), []).append(param)
        for part, params in parts.items():
            cover = _cover(module, {names[id(p)] for p in params}, "")
            label = _label(node.id, group.decay and group.decay.depth, cover)
            code = _params_code(f"self.{node.id}", module, cover)
            unfreeze = None if part is None else f"{node.id}.{part}"
            out.append(replace(group, label=label, params_code=code, params=params, unfreeze=unfreeze))
    return out


def _cover(module, names: set[str], path: str) -> list[str]:
    """The fewest submodule and parameter paths whose parameters are exactly `names`."""
    own = {_join(path, n) for n, _ in module.named_parameters()}
    if own and own <= names:
        return [path]
    out = [_join(path, n) for n, _ in module.named_parameters(recurse=False) if _join(path, n) in names]
    for child_name, child in module.named_children():
        if any(_under(n, [_join(path, child_name)]) for n in names):
            out += _cover(child, names, _join(path, child_name))
    return out


def _freeze_norms(node, module, attr: str, parts: list[str], helpers: dict, comment: str | None) -> list:
    """The statements that swap the BatchNorm layers of the frozen `parts` for FrozenBatchNorm
    (timm's BatchNormAct2d, which also holds an activation, for timm's frozen twin), the first
    with `comment`, adding what they call to `helpers`."""
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
                node.param_loc("freeze" if node.tuning.given("freeze") else "trainable"),
                node=node.id,
                hint="leave that layer trainable (`trainable: [...]`), or freeze the layers around it",
            )
    if torch_parts == [""] and type(module) in kinds:  # the node is one BatchNorm layer
        lines = [(f"{attr} = ", Call("FrozenBatchNorm", (Arg(None, attr),)), comment)]
    elif torch_parts:
        paths = Seq(tuple(literal(p) for p in torch_parts), "()")
        lines = [("", Call("_freeze_batchnorm_stats", (Arg(None, attr), Arg(None, paths))), comment)]
    else:
        lines = []
    if torch_parts:
        helpers["FrozenBatchNorm"] = inspect.getsource(norms.FrozenBatchNorm)
        helpers["_freeze_batchnorm_stats"] = inspect.getsource(norms._freeze_batchnorm_stats)
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


ONE_D = "{id(p) for p in self.parameters() if p.ndim <= 1}"  # the ids of biases and norm layers' weights


def _modules(shaped) -> list:
    return [r.built.module for r in shaped.nodes.values() if r.built.module is not None]


def _spared_code(shaped) -> str:
    """The generated expression of the ids weight decay spares: the 1-D parameters where the
    rules come to that for this model, else the rules themselves (`_no_weight_decay`)."""
    if all(decay._only_1d_spared(module) for module in _modules(shaped)):
        return ONE_D
    return "_no_weight_decay(self)"


def _decay_helpers(spared: str, grouped: bool) -> tuple[str, ...]:
    """The weight-decay helpers param_groups() calls (`spared`: `_spared_code`'s expression):
    none for one group split by dimension."""
    if spared != ONE_D:
        return DECAY_HELPERS
    return DECAY_HELPERS[:1] if grouped else ()


def _param_groups(
    groups: list[_Planned], rates: list[tuple[str, float, object]], spared: str | None, rest: Expr | None
) -> list[str]:
    """The lines of `param_groups()`; `spared`: the expression of the ids weight decay spares,
    None where the optimizer applies none; `rest`: the parameters no group holds (`_rest_code`)."""
    params = ["self", "lr: float", *(f"{name}: float = {literal(value)}" for name, value, _ in rates)]
    head = [""] + signature("param_groups", params, "list[dict]", 1)
    if not groups and spared is None:  # one rate for all: only frozen parameters to leave out
        return head + [
            '        """The trainable parameters for the optimizer (frozen ones are left out)."""',
            '        return [{"params": [p for p in self.parameters() if p.requires_grad], "lr": lr}]',
        ]
    if not groups:  # one rate: the weight-decay split alone
        spared_doc = "biases and norm layers (1-D)" if spared == ONE_D else "norm layers, biases and tokens"
        doc = [f'        """Trainable parameters: weights decayed, {spared_doc} not."""']
    elif spared is None:
        doc = ['        """Trainable parameters by learning rate; frozen ones are left out."""']
    else:
        spares = "biases and norms (1-D)" if spared == ONE_D else "norms, biases, tokens"
        doc = [f'        """Trainable parameters by rate; {spares} without weight decay."""']
    if not groups and spared == ONE_D:  # the two groups written out: no helper to read
        return (
            head
            + doc
            + [
                "        trainable = [p for p in self.parameters() if p.requires_grad]",
                "        spared = [p for p in trainable if p.ndim <= 1]",
                "        groups = [",
                '            {"params": [p for p in trainable if p.ndim > 1], "lr": lr},',
                '            {"params": spared, "lr": lr, "weight_decay": 0.0},',
                "        ]",
                '        return [group for group in groups if group["params"]]',
            ]
        )
    if not groups:
        body = ['        groups = [{"params": list(self.parameters()), "lr": lr}]']
    else:
        body = _groups_code(groups)
        if rest is None:
            body += [
                '        grouped = {id(p) for group in groups for p in group["params"]}',
                "        rest = [p for p in self.parameters() if id(p) not in grouped]",
                '        groups.append({"params": rest, "lr": lr})',
            ]
        elif rest != Seq(()):
            group = Seq((Entry('"params"', rest), Entry('"lr"', "lr")), "{}")
            body += statement("", Call("groups.append", (Arg(None, group),)), 2)
    if spared is not None:
        return (
            head
            + doc
            + body
            + (
                ["        return _split_weight_decay(groups)"]  # its default: the 1-D parameters
                if spared == ONE_D
                else [
                    f"        spared = {spared}",
                    "        return _split_weight_decay(groups, lambda p: id(p) in spared)",
                ]
            )
        )
    return (
        head
        + doc
        + body
        + [
            "        for group in groups:",
            '            group["params"] = [p for p in group["params"] if p.requires_grad]',
            '        return [group for group in groups if group["params"]]',
        ]
    )


# The most paths param_groups() lists for the parameters no group holds; more are gathered at run time.
REST_ITEMS = 3


def _rest_code(shaped, grouped: set[int], frozen: set[int]) -> Expr | None:
    """The parameters no group holds (`grouped`: their ids), as param_groups() lists them: the
    fewest nodes and paths that hold them (frozen ones may be among them: param_groups() drops
    those), `Seq(())` where none trains; None where that takes more than REST_ITEMS paths."""
    items, seen = [], set(grouped)
    for node_id, result in shaped.nodes.items():
        module = result.built.module
        params = module.named_parameters() if module is not None else ()
        named = {n: p for n, p in params if id(p) not in seen}
        seen |= {id(p) for p in named.values()}
        if any(id(p) not in frozen for p in named.values()):
            items += _param_items(f"self.{node_id}", module, _cover(module, set(named), ""))
    return _params_list(items) if len(items) <= REST_ITEMS else None


def _groups_code(groups: list[_Planned]) -> list[str]:
    """The statements that build `groups` in param_groups(): the groups of a node's own rate
    and those of gradual unfreezing (their `"unfreeze"` part) as a list, each other node's
    layer-wise decay as a table of its parameters by depth and one comprehension that gives
    each depth its rate."""
    unfreezing = {g.decay.node for g in groups if g.decay and g.unfreeze}
    lines: list[str] = []
    tabled = {g.decay.node for g in groups if g.decay} - unfreezing
    for node, run in itertools.groupby(
        groups, key=lambda g: g.decay.node if g.decay and g.decay.node in tabled else None
    ):
        run = list(run)
        assign = "groups += " if lines else "groups = "
        if not node and _whole_parts(run):
            rates = Seq(tuple(Entry(literal(g.unfreeze), g.rate) for g in run), "{}")
            comment = "gradual unfreezing: each part's parameters in groups of their own"
            lines += table_statement("rates = ", rates, 2, comment)
            element = 'list(self.get_submodule(p).parameters()), "lr": r, "unfreeze": p'
            lines += _comprehension(assign, f'{{"params": {element}}}', "for p, r in rates.items()")
            continue
        if not node:
            dicts = tuple(Seq(_group_entries(g), "{}") for g in run)
            parts = any(g.unfreeze for g in run)
            comment = "gradual unfreezing: each part's parameters in groups of their own" if parts else None
            lines += statement(assign, Seq(dicts), 2, comment)
            continue
        table = Seq(tuple(Entry(str(g.decay.depth), g.params_code) for g in run), "{}")
        lines += statement("depths = ", table, 2, f"layer-wise decay: {node}'s parameters by depth")
        rate = BinOp("*", run[0].decay.base, f"{run[0].decay.name}**depth")
        element = Seq((Entry('"params"', "params"), Entry('"lr"', rate)), "{}")
        lines += _comprehension(assign, element, "for depth, params in depths.items()")
    return lines


def _whole_parts(run: list[_Planned]) -> bool:
    """Whether `run` is two or more groups of gradual unfreezing, each one whole part (not split
    by depth, no adapters left out): then a table of their rates and one comprehension."""
    whole = [flat(g.params_code) == f"list(self.{g.unfreeze}.parameters())" for g in run if g.unfreeze]
    return len(run) >= 2 and len(whole) == len(run) and all(whole)


def _group_entries(group: _Planned) -> tuple[Entry, ...]:
    entries = (Entry('"params"', group.params_code), Entry('"lr"', group.rate))
    return entries + ((Entry('"unfreeze"', literal(group.unfreeze)),) if group.unfreeze else ())


def _comprehension(prefix: str, element: Expr, clause: str) -> list[str]:
    """`<prefix>[<element> <clause>]` in param_groups(), split as ruff format splits it."""
    one = f"        {prefix}[{flat(element)} {clause}]"
    if len(one) <= LINE_LENGTH:
        return [one]
    return [f"        {prefix}[", *statement("", element, 3), f"            {clause}", "        ]"]


def _frozen_parts(node, module, new_layers: list[str], default: list[str] = ()) -> list[str]:
    """The paths (modules or parameters, '' for the whole node) that `freeze`/`trainable` freeze,
    or, where the spec sets neither, the op's `default` (what torchvision freezes for weights)."""
    freeze, trainable = node.tuning.freeze, node.tuning.trainable
    if node.tuning.unfreeze is not None:  # frozen for good but the parts it unfreezes, a new head, adapters
        unfreezing.check_parts(node, module)
        parts: list[str] = []
        _walk(module, "", [""], [*node.tuning.unfreeze.starts, *new_layers], parts)
        return parts
    if node.tuning.adapters:  # frozen but its adapters (added after these parts are frozen) and `trainable`
        keep = (_prefixes(node, module, "trainable") if trainable is not None else []) + new_layers
        parts = []
        _walk(module, "", [""], keep, parts)
        return parts
    if freeze is False and trainable is None:
        parts: list[str] = []
        if default:
            _walk(module, "", list(default), list(new_layers), parts)
        return parts
    if module is None or _count(module) == 0:
        key = "freeze" if node.tuning.given("freeze") else "trainable"
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
    """The paths of `freeze` or `trainable`, each one the module has."""
    paths = getattr(node.tuning, key)
    names = nameable(module, parameters=True)
    for i, prefix in enumerate(paths):
        if prefix not in names:
            raise no_submodule(node, prefix, names, node.doc.loc("nodes", node.id, key, i))
    return list(paths)


def _lr(node, module, frozen: int, rates: list, task):
    """The learning-rate expression of the node's own parameter group and its value at the spec's
    rates, or (None, None); its argument of param_groups (`lr_<node>` or `lr_mult_<node>`) is
    added to `rates`."""
    key = "lr" if node.tuning.lr is not None else "lr_mult" if node.tuning.lr_mult is not None else None
    if key is None:
        return None, None if task is None else task.optimizer.lr
    value = getattr(node.tuning, key)
    if module is None or _count(module) == frozen:
        raise SpecError(
            f"node '{node.id}' has no trainable parameters to give a learning rate",
            node.param_loc(key),
            node=node.id,
            hint="remove `" + key + "`" + (" or the node's `freeze`" if frozen else ""),
        )
    name = f"{key}_{node.id}"
    rates.append((name, float(value), node.param_loc(key)))
    if key == "lr":
        return name, float(value)
    return BinOp("*", "lr", name), None if task is None else task.optimizer.lr * value


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
