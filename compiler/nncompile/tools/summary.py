"""`nncompile summary`: a per-node table in the manner of torchinfo and Keras, read off a compiled
spec: shapes in and out, parameters, pretrained or new, frozen or trainable, multiply-accumulates.

Parameter counts come from the meta modules of shape propagation, frozen counts from the
freezing plan, MACs from `torch.utils.flop_counter.FlopCounterMode` running each module on meta
tensors.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import asdict, dataclass

from ..ops.base import META_BATCH, fake_meta
from ..pyfmt import Call, Input
from ..shapes.applying import fold, op_text


@dataclass(frozen=True)
class Row:
    node: str
    op: str
    inputs: tuple[str, ...]  # shapes as in the generated comments: "(B, 512)"
    output: str
    params: int
    trainable: int  # parameters with requires_grad
    pretrained: int  # parameters loaded from pretrained weights
    macs: int | None  # per sample; None: not a module call, nothing measured


@dataclass(frozen=True)
class AdapterRow:
    """One entry of a node's `adapters:`: what its target matched."""

    node: str
    adapter: int  # its place in the node's list, from 1
    target: str  # its patterns ("" : the node itself)
    layers: int
    coverage: str  # per repeated container: "blocks 12/12", "layer1 1/2, layer2 2/2"
    types: str
    params: int  # parameters it adds


@dataclass(frozen=True)
class Summary:
    name: str
    spec_path: str
    inputs: tuple[tuple[str, str], ...]  # (name, shape)
    rows: tuple[Row, ...]
    outputs: tuple[tuple[str, str], ...]  # (name, shape)
    notes: tuple[str, ...] = ()  # facts about the whole model (blocks whose copies do not share weights)
    groups: tuple = ()  # freezing.Group: the optimizer's parameter groups, when the spec sets any
    adapters: tuple[AdapterRow, ...] = ()

    @property
    def total_params(self) -> int:
        return sum(r.params for r in self.rows)

    @property
    def trainable_params(self) -> int:
        return sum(r.trainable for r in self.rows)

    @property
    def pretrained_params(self) -> int:
        return sum(r.pretrained for r in self.rows)

    @property
    def total_macs(self) -> int:
        return sum(r.macs or 0 for r in self.rows)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "spec": self.spec_path,
            "inputs": dict(self.inputs),
            "nodes": [asdict(r) for r in self.rows],
            "outputs": dict(self.outputs),
            "totals": {
                "params": self.total_params,
                "trainable": self.trainable_params,
                "frozen": self.total_params - self.trainable_params,
                "pretrained": self.pretrained_params,
                "new": self.total_params - self.pretrained_params,
                "macs": self.total_macs,
            },
            "notes": list(self.notes),
            "param_groups": [{k: v for k, v in asdict(g).items() if k != "members"} for g in self.groups],
            "adapters": [asdict(a) for a in self.adapters],
        }

    def text(self) -> str:
        header = ("node", "op", "input", "output", "params", "weights", "grad", "MACs")
        lines = [(name, "input", "", shape, "", "", "", "") for name, shape in self.inputs]
        lines += [
            (
                r.node,
                r.op,
                ", ".join(r.inputs),
                r.output,
                f"{r.params:,}" if r.params else "0",
                _part_text(r.params, r.pretrained, "pretrained", "new"),
                _part_text(r.params, r.trainable, "trainable", "frozen"),
                "-" if r.macs is None else human(r.macs),
            )
            for r in self.rows
        ]
        table = table_lines(header, lines, right={4, 7})
        total, trainable, pretrained = self.total_params, self.trainable_params, self.pretrained_params
        out = [f"{self.name} (from {self.spec_path})", *table]
        out += [
            table[0],
            "outputs: " + ", ".join(f"{name} {shape}" for name, shape in self.outputs),
            f"params: {total:,} total, {trainable:,} trainable, {total - trainable:,} frozen",
            f"        {pretrained:,} pretrained, {total - pretrained:,} new",
            f"MACs per sample: {human(self.total_macs)} (FlopCounterMode on the meta device)",
            *self.notes,
        ]
        return "\n".join(out + _groups_text(self.groups) + _adapters_text(self.adapters)) + "\n"


def _groups_text(groups) -> list[str]:
    """The optimizer's parameter groups, in param_groups() order: what each holds, its rate."""
    if not groups:
        return []
    header = ("group", "params", "trainable", "lr", "rate", "weight decay")
    lines = [
        (
            g.label,
            f"{g.params:,}",
            f"{g.trainable:,}",
            "-" if g.lr is None else f"{g.lr:.4g}",
            g.rate,
            "optimizer's" if g.decays else "0 (norm, bias, token)",
        )
        for g in groups
    ]
    return [
        "",
        f"parameter groups ({len(groups)}, in the optimizer's order)",
        *table_lines(header, lines, {1, 2, 3}),
    ]


def _adapters_text(adapters: tuple[AdapterRow, ...]) -> list[str]:
    """The adapters' coverage: what each target matched, per repeated container."""
    if not adapters:
        return []
    header = ("node", "adapter", "target", "layers", "per repeated stage", "types", "params")
    lines = [
        (
            a.node,
            str(a.adapter),
            a.target or "(the node)",
            str(a.layers),
            a.coverage or "-",
            a.types,
            f"{a.params:,}",
        )
        for a in adapters
    ]
    return ["", "LoRA adapters (resolved at compile time)", *table_lines(header, lines, {1, 3, 6})]


def _adapter_rows(shaped) -> tuple[AdapterRow, ...]:
    return tuple(
        AdapterRow(
            node_id,
            found.adapter.index,
            ", ".join(found.adapter.targets),
            len(found.paths),
            ", ".join(f"{container} {n}/{of}" for container, n, of in found.coverage),
            ", ".join(found.types),
            found.params,
        )
        for node_id, result in shaped.nodes.items()
        for found in result.built.adapters
    )


def table_lines(header: tuple[str, ...], lines: list[tuple[str, ...]], right: set[int]) -> list[str]:
    """A rule, the header, a rule and the lines in aligned columns (the `right` ones numbers)."""
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(len(header))]

    def fmt(cells) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    rule = "-" * len(fmt(["x" * w for w in widths]))
    return [rule, fmt(header), rule, *(fmt(line) for line in lines)]


def _part_text(total: int, part: int, all_of_them: str, the_others: str) -> str:
    """`trainable`, `frozen`, or `1,024 frozen` for a node whose parameters are of both kinds."""
    if not total:
        return "-"
    if part == total:
        return all_of_them
    if part == 0:
        return the_others
    return f"{total - part:,} {the_others}"


def human(count: int) -> str:
    for unit, size in (("G", 10**9), ("M", 10**6), ("K", 10**3)):
        if count >= size:
            return f"{count / size:.2f}{unit}"
    return str(count)


def summarize(compiled) -> Summary:
    """The summary of a `pipeline.Compiled`."""
    shaped = compiled.shaped
    frozen = compiled.ir.model.frozen_by_node
    rows = []
    for node_id, result in shaped.nodes.items():
        built = result.built
        params, pretrained = built.parameter_counts()
        if built.out is not None:
            output = built.out.comment()
        else:
            output = ", ".join(f"{name}: {port.info.comment()}" for name, port in built.ports.items())
        rows.append(
            Row(
                node=node_id,
                op=op_text(result.spec),
                inputs=tuple(i.comment() for i in result.in_infos),
                output=output,
                params=params,
                trainable=params - frozen.get(node_id, 0),
                pretrained=pretrained,
                macs=node_macs(node_id, result, shaped.nodes),
            )
        )
    spec = shaped.graph.spec
    return Summary(
        name=spec.name,
        spec_path=spec.path,
        inputs=tuple((name, info.comment()) for name, info in shaped.inputs.items()),
        rows=tuple(rows),
        outputs=tuple((name, info.comment()) for name, info in shaped.outputs.items()),
        notes=tuple(note for block in compiled.ir.blocks if (note := block.copies_note())),
        groups=tuple(compiled.ir.model.param_groups) if compiled.ir.model.methods else (),
        adapters=_adapter_rows(shaped),
    )


def node_macs(node_id: str, result, nodes: dict) -> int | None:
    """Multiply-accumulates per sample of a node that calls its own module (or the module it
    shares), counted on meta tensors; None for a node whose forward() expression is not a call of
    `self.<node>`."""
    if result.built.shares:  # the shared module run on this node's inputs
        node_id = result.built.shares
        result = dataclasses.replace(nodes[node_id], in_infos=result.in_infos)
    if result.built.block is not None:  # a block: the sum over its copies' inner nodes
        inner = [
            node_macs(n, r, i.shaped.nodes)
            for i in result.built.block.instances
            for n, r in i.shaped.nodes.items()
        ]
        items = result.in_infos[0].shape[result.spec.per_item] if result.built.per_item else 1
        return items * sum(m for m in inner if m is not None)  # the inner graph is sized for one item
    counter = _count(node_id, result, nodes)
    return None if counter is None else counter.get_total_flops() // 2 // META_BATCH


def part_macs(node_id: str, result, nodes: dict) -> dict[str, int]:
    """Multiply-accumulates per sample of each top-level submodule of a node's module (a
    backbone's stages), by name; {} where the node's MACs are not measured."""
    counter = None if result.built.block is not None else _count(node_id, result, nodes)
    if counter is None:
        return {}
    module = nodes[result.built.shares].built.module if result.built.shares else result.built.module
    counts = counter.get_flop_counts()  # keyed by module path, the root by its class name
    root = type(module).__name__
    return {
        name: sum(counts.get(f"{root}.{name}", {}).values()) // 2 // META_BATCH
        for name, _ in module.named_children()
    }


def _count(node_id: str, result, nodes: dict):
    """The FlopCounterMode that ran the node's module on meta tensors, or None (not measured)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    if result.built.shares:  # the shared module run on this node's inputs
        node_id = result.built.shares
        result = dataclasses.replace(nodes[node_id], in_infos=result.in_infos)
    call, module = result.built.call, result.built.module
    if any(note.startswith(f"{node_id}: ") and "CPU run" in note for note in result.built.notes):
        return None  # a user layer that only runs on real tensors
    device = _device(module)
    if module is not None and result.built.per_item:  # the module runs on the items folded into the batch
        with fake_meta() as fake, FlopCounterMode(display=False) as counter, torch.no_grad():
            module(*(fake(fold(i, result.spec.per_item), device) for i in result.in_infos))
        return counter
    if module is None or not isinstance(call, Call) or call.func != f"self.{node_id}":
        return None
    keys = result.spec.in_keys
    if keys is not None:  # the module takes one dict of its inputs
        with fake_meta() as fake, FlopCounterMode(display=False) as counter, torch.no_grad():
            module(dict(zip(keys, (fake(i, device) for i in result.in_infos), strict=True)))
        return counter
    if not all(isinstance(a.value, Input) for a in call.args):
        return None
    with fake_meta() as fake, FlopCounterMode(display=False) as counter, torch.no_grad():
        args = [fake(result.in_infos[a.value.index], device) for a in call.args if a.name is None]
        kwargs = {
            a.name: fake(result.in_infos[a.value.index], device) for a in call.args if a.name is not None
        }
        module(*args, **kwargs)
    return counter


def _device(module) -> str:
    """Where a node's module was built: the meta device, or the CPU for a small layer."""
    if module is None:
        return "meta"
    tensor = next(itertools.chain(module.parameters(), module.buffers()), None)
    return "meta" if tensor is None else tensor.device.type
