"""`nncompile graph SPEC --html`: the compiled graph as one self-contained page for a model's
review: no network (scripts and styles inline, it works from `file://`).

This module gathers what the page shows, read off the compiled spec: every vertex (inputs, nodes,
outputs) with its op, parameters, MACs, training state and learning-rate groups, its spec lines
and the generated code lines it became; the shape-labelled edges of `nncompile graph`; what each
block use (its copies' inner nodes) and each backbone (its top-level submodules) expands into;
and the training plan. The page (page/graph.js) lays the visible graph out with dagre, vendored
(page/dagre.min.js, MIT), and draws it as SVG; it lays the graph out again when a box is
expanded or folded.
"""

from __future__ import annotations

import html
import json
import re
from importlib import resources
from pathlib import Path

from ..shapes.adapters import compact
from ..shapes.propagate import value_of
from ..training.recipes.freezing import parameter_names
from .graph_render import layout, vertex_id
from .summary import human, node_macs, part_macs, summarize
from .training_plan import adapter_parameters, adapters_text, training_plan


def page(compiled) -> str:
    """The whole HTML page."""
    data = page_data(compiled)
    files = resources.files(__package__) / "page"
    script = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    return (
        (files / "graph.html")
        .read_text()
        .format(
            title=html.escape(f"{compiled.spec.name}: {compiled.spec.path}"),
            style=(files / "graph.css").read_text(),
            dagre=(files / "dagre.min.js").read_text(),
            data=script,
            script=(files / "graph.js").read_text(),
        )
    )


def page_data(compiled) -> dict:
    """Everything the page shows, as JSON."""
    plan = training_plan(compiled)
    facts = _Facts(compiled, plan)
    vertices, edges = layout(compiled)
    rows = {r.node: r for r in summarize(compiled).rows}
    input_lines = {i.name: i.loc.line for i in compiled.spec.inputs}
    out_vertices = []
    for v in vertices:
        item = {"id": v.id, "title": v.title, "detail": v.detail, "kind": v.kind}
        if v.kind == "node":
            result = compiled.shaped.nodes[v.title]
            row = rows[v.title]
            item |= facts.describe(v.title, result, row.macs)
            item["children"] = _children(v.id, v.title, result, facts)
        elif v.kind == "input":
            item["spec"] = facts.spec_lines(input_lines[v.title])
        out_vertices.append(item)
    return {
        "name": compiled.spec.name,
        "spec": compiled.spec.path,
        "vertices": out_vertices,
        "edges": [{"source": e.source, "target": e.target, "label": e.label} for e in edges],
        "plan": _plan_data(plan),
    }


def _plan_data(plan) -> dict:
    """The plan's JSON, with each group's adapters as `nncompile plan` writes them."""
    data = plan.to_dict()
    for group, row in zip(data["groups"], plan.rows, strict=True):
        group["adapters_text"] = adapters_text(row.adapters) if row.adapters else ""
    return data


class _Facts:
    """What the page says of a node or a part of one: its training state, groups and lines."""

    def __init__(self, compiled, plan):
        self.compiled, self.plan = compiled, plan
        self.spec_text = Path(compiled.spec.path).read_text().splitlines()
        self.source = compiled.source.splitlines()
        self.sizes = {}
        names = parameter_names(compiled.shaped)
        for r in compiled.shaped.nodes.values():
            if r.built.module is not None:
                for p in r.built.module.parameters():
                    self.sizes[names[id(p)]] = p.numel()
        self.row_of = {m: i for i, row in enumerate(plan.rows) for m in row.members}
        self.adapter_of = adapter_parameters(compiled.shaped)
        totals: dict[str, int] = {}
        for name, size in self.sizes.items():
            totals[name.partition(".")[0]] = totals.get(name.partition(".")[0], 0) + size
        # nodes the LightningModule freezes whole, although the optimizer may hold their parameters
        self.frozen_nodes = {node for node, count in plan.frozen if count == totals.get(node)}
        self.starts = {}
        for i, row in enumerate(plan.rows):
            begins = next((k for k, rate in enumerate(row.at) if rate != "frozen"), 0)
            if begins:
                self.starts[i] = plan.boundaries[begins]

    def describe(self, name: str, result, macs: int | None) -> dict:
        params, pretrained = result.built.parameter_counts()
        return {
            "op": result.spec.op if not result.spec.shares else f"shares {result.spec.shares}",
            "params": params,
            "macs": None if macs is None else human(macs),
            **self.training(f"{name}.", pretrained > 0, _is_batchnorm(result.built.module)),
            "spec": self.spec_lines(result.spec.loc.line),
            "code": self.code_lines(name, self.compiled.spec.name),
        }

    def training(self, prefix: str, pretrained: bool, batchnorm: bool) -> dict:
        """The state of the parameters under `prefix` ("node." or "node.layer4."), the page's
        colour: none, new, frozen, pretrained-frozen, pretrained-trainable, frozen-bn, unfreezes,
        adapters (LoRA adapters train in it)."""
        members = [n for n in self.sizes if n.startswith(prefix)]
        adapters = self.adapters(members)
        rows = sorted({self.row_of[m] for m in members if m in self.row_of})
        groups = [f"#{i} lr {self.plan.rows[i].lr:.4g}" for i in rows]
        later = sorted({self.starts[i] for i in rows if i in self.starts})
        if not members:
            state = "none"
        elif later:
            state = "unfreezes"
        elif adapters:
            state = "adapters"
        elif not rows or prefix.partition(".")[0] in self.frozen_nodes:
            state = "frozen-bn" if batchnorm else "pretrained-frozen" if pretrained else "frozen"
        else:
            state = "pretrained-trainable" if pretrained else "new"
        note = f"unfreezes at {', '.join(later)}" if later else ""
        return {"state": state, "groups": groups, "unfreezes": note, "adapters": adapters}

    def adapters(self, members: list[str]) -> list[str]:
        """Each `adapters:` entry with layers among `members`: its settings and those layers."""
        paths: dict[int, list[str]] = {}
        entries = {}
        for name in members:
            if name in self.adapter_of and name.endswith(".lora_A"):
                _, adapter, path = self.adapter_of[name]
                entries[adapter.index] = adapter
                paths.setdefault(adapter.index, []).append(path)
        out = []
        for index, layers in paths.items():
            a = entries[index]
            count = f"{len(layers)} layer{'' if len(layers) == 1 else 's'}"
            out.append(
                f"{index}: r={a.r}, alpha={a.alpha:g}, dropout={a.dropout:g}, {count}: {compact(tuple(layers))}"
            )
        return out

    def count(self, prefix: str) -> int:
        """The parameters under `prefix` in the model (adapters included)."""
        return sum(size for name, size in self.sizes.items() if name.startswith(prefix))

    def spec_lines(self, line: int) -> dict:
        """The spec lines of the entry that starts at `line` (1-based): it and the lines indented
        under it."""
        text = self.spec_text
        if not 0 < line <= len(text):
            return {"line": line, "text": []}
        indent = len(text[line - 1]) - len(text[line - 1].lstrip())
        end = line
        while end < len(text) and (
            not text[end].strip() or len(text[end]) - len(text[end].lstrip()) > indent
        ):
            end += 1
        while end > line and not text[end - 1].strip():
            end -= 1
        return {"line": line, "text": text[line - 1 : end]}

    def code_lines(self, attr: str, class_name: str) -> list[list]:
        """(line number, text) of the generated lines of class `class_name` that use `self.<attr>`."""
        pattern = re.compile(rf"\bself\.{re.escape(attr)}\b")
        inside, out = False, []
        for number, text in enumerate(self.source, 1):
            if text.startswith("class "):
                inside = text.startswith(f"class {class_name}(")
            elif inside and pattern.search(text):
                out.append([number, text])
        return out


def _is_batchnorm(module) -> bool:
    import torch.nn as nn  # the meta modules are torch's

    return isinstance(module, nn.modules.batchnorm._BatchNorm)


def _children(vertex: str, name: str, result, facts: _Facts) -> dict | None:
    """What the node expands into: a block use's copies (their inner nodes, shapes on the edges),
    a library model's (a backbone's) top-level submodules in module order; None for a layer.
    `entries`: the vertex of each of the node's inputs -> the parts its edge goes to."""
    built = result.built
    sources = [vertex_id(facts.compiled.shaped, ref.node) for ref in result.inputs]
    if built.block is not None:
        items = result.in_infos[0].shape[result.spec.per_item] if built.per_item else 1
        return _block_children(vertex, name, built.block, sources, items, facts)
    module = built.module
    if module is None or "." not in result.spec.op or not any(True for _ in module.children()):
        return None
    pretrained = built.parameter_counts()[1] > 0
    macs = part_macs(name, result, facts.compiled.shaped.nodes)
    nodes, edges = [], []
    for child_name, child in module.named_children():
        child_id = f"{vertex}/{child_name}"
        count = sum(p.numel() for p in child.parameters())
        new = any(layer == child_name or layer.startswith(f"{child_name}.") for layer in built.new_layers)
        nodes.append(
            {
                "id": child_id,
                "title": f"{name}.{child_name}",
                "detail": type(child).__name__,
                "kind": "part",
                "op": type(child).__name__,
                "params": count,
                "macs": human(macs[child_name]) if macs else None,
                **facts.training(f"{name}.{child_name}.", pretrained and not new, _is_batchnorm(child)),
                "spec": facts.spec_lines(result.spec.loc.line),
                "code": [],
            }
        )
        if len(nodes) > 1:
            edges.append({"source": nodes[-2]["id"], "target": child_id, "label": "", "order": True})
    return {
        "kind": "backbone",
        "nodes": nodes,
        "edges": edges,
        "entries": [nodes[0]["id"]],
        "exit": nodes[-1]["id"],
    }


def _block_children(vertex: str, name: str, use, sources: list[str], items: int, facts: _Facts) -> dict:
    """`items`: how many items each sample's copies run on (`per_item:`), else 1."""
    copies = len(use.instances)
    source_of = dict(zip(use.block.inputs, sources, strict=True))  # block input -> outer vertex
    nodes, edges, entries, exit_id = [], [], {}, None
    for k, instance in enumerate(use.instances):
        shaped = instance.shaped
        prefix = f"{name}.{k}." if copies > 1 else f"{name}."
        ids = {inner: f"{vertex}/{k}/{inner}" for inner in shaped.nodes}
        for inner, result in shaped.nodes.items():
            pretrained = result.built.parameter_counts()[1]
            macs = node_macs(inner, result, shaped.nodes)  # the copy's layer, without the use's adapters
            nodes.append(
                {
                    "id": ids[inner],
                    "title": f"{prefix}{inner}",
                    "detail": result.spec.op,
                    "kind": "inner",
                    "op": result.spec.op,
                    "params": facts.count(f"{prefix}{inner}."),  # with the adapters the use adds
                    "macs": None if macs is None else human(items * macs),
                    **facts.training(f"{prefix}{inner}.", pretrained > 0, _is_batchnorm(result.built.module)),
                    "spec": facts.spec_lines(result.spec.loc.line),
                    "code": facts.code_lines(inner, use.block.name),
                }
            )
            for ref in result.inputs:
                label = value_of(ref, shaped.inputs, shaped.nodes, None).comment()
                if ref.node in ids:
                    edges.append({"source": ids[ref.node], "target": ids[inner], "label": label})
                elif exit_id is None:  # a block input: that input's edge enters here
                    entries.setdefault(source_of[ref.node], []).append(ids[inner])
                else:  # the previous copy's output
                    edges.append({"source": exit_id, "target": ids[inner], "label": label})
        out_ref = shaped.graph.spec.outputs[0].ref
        exit_id = ids[out_ref.node]
    return {
        "kind": "block",
        "copies": copies,
        "nodes": nodes,
        "edges": edges,
        "entries": entries,
        "exit": exit_id,
    }
