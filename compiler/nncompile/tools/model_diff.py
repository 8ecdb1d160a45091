"""`nncompile diff A B`: what changes from one compiled spec to another, for a model's review.

Nodes added, removed and changed (which arguments), nodes renamed (recognised by structure: the
same op, arguments, inputs and output shape under another name), output shapes that change and
the nodes the change propagates to, parameter and MAC deltas, the state-dict keys a checkpoint of
A no longer loads into B (unexpected, missing, or of another shape), and the training plan's
differences (frozen or trainable, learning rate, weight decay, unfreeze boundary) per submodule.
Every kind of change has a name that `--fail-on` takes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..shapes.applying import op_text
from ..training.recipes.freezing import parameter_names
from .summary import human, summarize
from .training_plan import training_plan

# The kinds of change, as `--fail-on` names them.
KINDS = (
    "node-added",
    "node-removed",
    "node-renamed",
    "node-changed",
    "shape-change",
    "output-shape-change",
    "params-change",
    "weights-lost",  # a checkpoint of A holds weights B does not load (unexpected or reshaped)
    "weights-missing",  # B expects weights a checkpoint of A lacks (they start from scratch)
    "plan-change",
)


@dataclass
class ModelDiff:
    a: str
    b: str
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    renamed: dict[str, str] = field(default_factory=dict)  # A's name -> B's
    changed: dict[str, dict[str, tuple]] = field(default_factory=dict)  # node -> argument -> (A's, B's)
    shapes: dict[str, tuple[str, str]] = field(default_factory=dict)  # node (B's name) -> (A's, B's)
    propagated: dict[str, list[str]] = field(default_factory=dict)  # first changed node -> nodes after it
    outputs: dict[str, tuple[str, str]] = field(default_factory=dict)  # model output -> (A's, B's)
    params: tuple[int, int] = (0, 0)
    node_params: dict[str, tuple[int, int]] = field(default_factory=dict)  # node (B's name) -> (A's, B's)
    macs: tuple[int, int] = (0, 0)
    unexpected: list[str] = field(default_factory=list)  # A's keys B has not
    missing: list[str] = field(default_factory=list)  # B's keys A has not
    reshaped: dict[str, tuple[tuple, tuple]] = field(default_factory=dict)
    plan: list[str] = field(default_factory=list)  # one line per change of the training plan

    def kinds(self) -> list[str]:
        """The kinds of change found, as `--fail-on` names them."""
        found = {
            "node-added": self.added,
            "node-removed": self.removed,
            "node-renamed": self.renamed,
            "node-changed": self.changed,
            "shape-change": self.shapes,
            "output-shape-change": self.outputs,
            "params-change": self.params[0] != self.params[1],
            "weights-lost": self.unexpected or self.reshaped,
            "weights-missing": self.missing,
            "plan-change": self.plan,
        }
        return [kind for kind in KINDS if found[kind]]

    def to_dict(self) -> dict:
        out = asdict(self)
        out["changes"] = self.kinds()
        return out

    def text(self) -> str:
        lines = [f"--- {self.a}", f"+++ {self.b}"]
        lines += [f"+ node {n}" for n in self.added]
        lines += [f"- node {n}" for n in self.removed]
        lines += [
            f"~ node {old} renamed to {new} (a checkpoint of A loads once its keys {old}.* are renamed {new}.*)"
            for old, new in self.renamed.items()
        ]
        for node, args in self.changed.items():
            for key, (was, now) in args.items():
                lines.append(f"~ node {node}: {key}: {_value(was)} -> {_value(now)}")
        for node, (was, now) in self.shapes.items():
            lines.append(f"~ shape {node}: {was} -> {now}")
        for node, after in self.propagated.items():
            lines.append(f"  the change at {node} propagates to: {', '.join(after)}")
        for name, (was, now) in self.outputs.items():
            lines.append(f"~ output {name}: {was} -> {now}")
        lines += [f"~ {line}" for line in self.plan]
        if self.unexpected or self.missing or self.reshaped:
            lines.append("checkpoint of A loaded into B:")
            lines += [f"  unexpected (A's weights dropped): {k}" for k in _folded(self.unexpected)]
            lines += [f"  missing (B's weights start new): {k}" for k in _folded(self.missing)]
            lines += [f"  shape changed: {k} {a} -> {b}" for k, (a, b) in self.reshaped.items()]
        lines += [f"~ params {node}: {_delta(was, now)}" for node, (was, now) in self.node_params.items()]
        lines.append(f"params: {_delta(*self.params)}; MACs per sample: {_delta(*self.macs, human)}")
        found = self.kinds()
        lines.append("changes: " + (", ".join(found) if found else "none"))
        return "\n".join(lines) + "\n"


def diff(a, b) -> ModelDiff:
    """What changes from the compiled spec `a` to `b` (two `pipeline.Compiled`)."""
    out = ModelDiff(a.spec.path, b.spec.path)
    nodes_a, nodes_b = a.shaped.nodes, b.shaped.nodes
    only_a = [n for n in nodes_a if n not in nodes_b]
    only_b = [n for n in nodes_b if n not in nodes_a]
    out.renamed = _renames(a, b, only_a, only_b)
    out.removed = [n for n in only_a if n not in out.renamed]
    out.added = [n for n in only_b if n not in out.renamed.values()]
    name_in_a = {new: old for old, new in out.renamed.items()} | {n: n for n in nodes_b if n in nodes_a}
    for node, old in name_in_a.items():
        args = _args_changed(nodes_a[old].spec, nodes_b[node].spec)
        if args:
            out.changed[node] = args
    out.shapes = {
        node: (_output(nodes_a[old]), _output(nodes_b[node]))
        for node, old in name_in_a.items()
        if _output(nodes_a[old]) != _output(nodes_b[node])
    }
    out.propagated = _propagation(b, out.shapes, out.changed)
    outs_a = {name: info.comment() for name, info in a.shaped.outputs.items()}
    outs_b = {name: info.comment() for name, info in b.shaped.outputs.items()}
    out.outputs = {n: (outs_a[n], outs_b[n]) for n in outs_b if n in outs_a and outs_a[n] != outs_b[n]}
    sum_a, sum_b = summarize(a), summarize(b)
    out.params = (sum_a.total_params, sum_b.total_params)
    counts_a = {r.node: r.params for r in sum_a.rows}
    counts_b = {r.node: r.params for r in sum_b.rows}
    out.node_params = {  # in B's order (a node added to B had 0 in A), then those removed
        node: (counts_a.get(name_in_a.get(node), 0), counts_b[node])
        for node in nodes_b
        if counts_a.get(name_in_a.get(node), 0) != counts_b[node]
    }
    out.node_params |= {node: (counts_a[node], 0) for node in out.removed if counts_a[node]}
    out.macs = (sum_a.total_macs, sum_b.total_macs)
    keys_a, keys_b = state_dict_shapes(a), state_dict_shapes(b)
    out.unexpected = [k for k in keys_a if k not in keys_b]
    out.missing = [k for k in keys_b if k not in keys_a]
    out.reshaped = {k: (keys_a[k], keys_b[k]) for k in keys_b if k in keys_a and keys_a[k] != keys_b[k]}
    out.plan = _plan_changes(a, b, out.renamed)
    return out


def state_dict_shapes(compiled) -> dict[str, tuple[int, ...]]:
    """The generated nn.Module's state-dict keys and shapes, read off the meta modules (a shared
    module's under the node that holds it)."""
    out = {}
    for node_id, result in compiled.shaped.nodes.items():
        if result.built.module is not None and not result.built.shares:
            for key, tensor in result.built.module.state_dict().items():
                out[f"{node_id}.{key}"] = tuple(tensor.shape)
    return out


def _output(result) -> str:
    built = result.built
    if built.out is not None:
        return built.out.comment()
    return ", ".join(f"{port}: {value.info.comment()}" for port, value in built.ports.items())


def _structure(result, rename: dict[str, str]) -> tuple:
    """What makes a node the same node under another name: its op, arguments, tuning, inputs and
    output shape."""
    spec = result.spec
    inputs = tuple((rename.get(ref.node, ref.node), ref.port) for ref in result.inputs)
    return (op_text(spec), repr(sorted(spec.params.items())), repr(spec.tuning), inputs, _output(result))


def _renames(a, b, only_a: list[str], only_b: list[str]) -> dict[str, str]:
    """A's nodes that are B's under another name: the one node of B with the same structure (its
    inputs named as B names them), matched in order so a renamed node's successors follow it."""
    renamed: dict[str, str] = {}
    for old in only_a:
        shape = _structure(a.shaped.nodes[old], renamed)
        same = [n for n in only_b if n not in renamed.values() and _structure(b.shaped.nodes[n], {}) == shape]
        if len(same) == 1:
            renamed[old] = same[0]
    return renamed


def _args_changed(was, now) -> dict[str, tuple]:
    keys = list(dict.fromkeys([*was.params, *now.params]))
    out = {k: (was.params.get(k), now.params.get(k)) for k in keys if was.params.get(k) != now.params.get(k)}
    if op_text(was) != op_text(now):
        out = {"op": (op_text(was), op_text(now))} | out
    return out


def _propagation(b, shapes: dict, changed: dict) -> dict[str, list[str]]:
    """Each node where a shape change starts (its arguments changed, or no changed node feeds
    it) and the nodes downstream of it in B whose input or output shape changed."""
    starts = [n for n in shapes if n in changed or not _fed_by(b, n, shapes)]
    touched = [n for n in b.shaped.nodes if n in shapes or _fed_by(b, n, shapes)]
    out = {}
    for start in starts:
        after = [n for n in touched if n != start and _reaches(b, start, n)]
        if after:
            out[start] = after
    return out


def _fed_by(b, node: str, shapes: dict) -> bool:
    return any(ref.node in shapes for ref in b.shaped.nodes[node].inputs)


def _reaches(b, start: str, node: str) -> bool:
    seen, todo = set(), [node]
    while todo:
        current = todo.pop()
        if current == start:
            return True
        if current in seen or current not in b.shaped.nodes:
            continue
        seen.add(current)
        todo += [ref.node for ref in b.shaped.nodes[current].inputs]
    return False


def _plan_changes(a, b, renamed: dict[str, str]) -> list[str]:
    """The training plan's changes, one line per submodule (node and first path step) whose
    parameters change state: frozen or trainable, rate, weight decay, unfreeze boundary."""
    plan_a, plan_b = training_plan(a), training_plan(b)
    lines = []
    for what in ("optimizer", "schedule", "ema"):
        was, now = getattr(plan_a, what), getattr(plan_b, what)
        if was != now:
            lines.append(f"{what}: {was or 'none'} -> {now or 'none'}")
    state_a, state_b = _states(a, plan_a, renamed), _states(b, plan_b, {})
    by_part: dict[str, tuple] = {}
    for name in dict.fromkeys([*state_a, *state_b]):
        if name in state_a and name in state_b and state_a[name] != state_b[name]:
            node, _, path = name.partition(".")
            by_part.setdefault(f"{node}.{path.split('.')[0]}", (state_a[name], state_b[name]))
    for part, (was, now) in by_part.items():
        lines.append(f"plan {part}: {was} -> {now}")
    return lines


def _states(compiled, plan, renamed: dict[str, str]) -> dict[str, str]:
    """Each parameter's training state in the plan (names as B gives them): frozen, or its rate,
    weight decay and the boundary it starts training at."""
    states = {name: "frozen" for name in parameter_names(compiled.shaped).values()}
    for row in plan.rows:
        start = next((i for i, rate in enumerate(row.at) if rate != "frozen"), 0)
        when = f", from {plan.boundaries[start]}" if start else ""
        decay = "-" if row.weight_decay is None else f"{row.weight_decay:g}"
        for name in row.members:
            states[name] = f"lr {row.lr:.4g}, weight decay {decay}{when}"
    out = {}
    for name, state in states.items():
        node, _, path = name.partition(".")
        out[f"{renamed.get(node, node)}.{path}"] = state
    return out


def _folded(keys: list[str]) -> list[str]:
    """State-dict keys, a node's all listed as `node.*` when there are more than three."""
    by_node: dict[str, list[str]] = {}
    for key in keys:
        by_node.setdefault(key.split(".")[0], []).append(key)
    return [
        k for node, ks in by_node.items() for k in (ks if len(ks) <= 3 else [f"{node}.* ({len(ks)} keys)"])
    ]


def _value(value) -> str:
    return "(none)" if value is None else str(value)


def _delta(was: int, now: int, fmt=lambda n: f"{n:,}") -> str:
    if was == now:
        return f"{fmt(now)} (unchanged)"
    sign = "+" if now > was else "-"
    return f"{fmt(was)} -> {fmt(now)} ({sign}{fmt(abs(now - was))})"
