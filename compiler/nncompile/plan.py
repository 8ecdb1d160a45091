"""Stage 4, plan: shapes -> the emit IR: attribute names, imports, forward statements with shape
comments, and the release of intermediates after their last use."""

from __future__ import annotations

from dataclasses import dataclass

from . import __version__
from .freezing import Tuning, plan_tuning
from .pyfmt import Entry, Expr, Seq, docstring_text, literal, signature, statement, substitute
from .shapes import Shaped
from .tasks import LightningIR, plan_lightning

BASE_IMPORTS = (
    "import pytorch_lightning as pl",
    "import torch",
    "from torch import nn",
)
TEMP_NAMES = ("x", "h", "out", "value")


@dataclass
class ModelIR:
    name: str
    pretrained: bool  # whether the constructors take `pretrained` (some node loads pretrained weights)
    init_signature: list[str]
    init_lines: list[str]  # indented code for __init__ after super().__init__()
    forward_signature: list[str]
    forward_lines: list[str]  # indented code for forward(), the return included
    methods: list[str]  # indented lines of further methods (train() for frozen BatchNorm, param_groups)
    helpers: list[str]  # module-level functions the constructor calls (stem adaptation, weight loading)


@dataclass
class FileIR:
    header: list[str]  # docstring lines
    imports: list[str]
    model: ModelIR
    training: LightningIR


def plan(shaped: Shaped, spec_display_path: str, output_display_path: str) -> FileIR:
    spec = shaped.graph.spec
    imports = set(BASE_IMPORTS)
    init_lines: list[str] = []
    tuning = plan_tuning(shaped, spec.name)
    helpers: dict[str, str] = {}
    for node_id, result in shaped.nodes.items():
        imports |= result.built.imports
        helpers |= result.built.helpers
        for prefix, expr, comment in result.built.init + tuning.init.get(node_id, []):
            nested = len(prefix) - len(prefix.lstrip(" "))  # a statement inside an `if` block
            init_lines += statement(prefix.lstrip(" "), expr, 2 + nested // 4, comment)
    init_lines += tuning.init_end
    pretrained = any(r.built.uses_pretrained for r in shaped.nodes.values())
    returns = "dict[str, torch.Tensor]" if len(spec.outputs) > 1 else "torch.Tensor"
    params = ["self"] + [f"{name}: torch.Tensor" for name in shaped.inputs]
    model = ModelIR(
        name=spec.name,
        pretrained=pretrained,
        init_signature=signature(
            "__init__", ["self"] + (["pretrained: bool = True"] if pretrained else []), "None", 1
        ),
        init_lines=init_lines,
        forward_signature=signature("forward", params, returns, 1),
        forward_lines=_forward(shaped),
        methods=tuning.methods,
        helpers=[line for name in sorted(helpers) for line in ["", "", *helpers[name].splitlines()]],
    )
    training = plan_lightning(
        spec.task, shaped, model, params, returns, optimizer_params=tuning.optimizer_params
    )
    imports |= training.imports
    header = _header(shaped, tuning, spec_display_path, output_display_path)
    return FileIR(header, sorted(imports, key=_import_key), model, training)


def _import_key(line: str) -> tuple:
    """isort's order: `import x` lines before `from x import y` lines, each sorted by module."""
    return (line.startswith("from "), line.split()[1].lower())


def _forward(shaped: Shaped) -> list[str]:
    """Straight-line forward(): one statement per node, in topological order.

    A value used once, by the very next statement, lives in a reused temporary (`x = f(x)`), so
    rebinding frees it; other values are named after their node and deleted after their last use.
    """
    spec = shaped.graph.spec
    order = list(shaped.nodes)
    uses: dict[str, list[int]] = {}  # value -> positions of the statements reading it
    for k, node_id in enumerate(order):
        for ref in shaped.nodes[node_id].inputs:
            uses.setdefault(ref.node, []).append(k)
    for out in spec.outputs:  # the return statement reads the outputs
        uses.setdefault(out.ref.node, []).append(len(order))
    taken = set(shaped.inputs) | set(order)
    temp = next(n for n in (*TEMP_NAMES, *(f"x{i}" for i in range(len(taken) + 1))) if n not in taken)

    var: dict[str, str] = {i: i for i in shaped.inputs}
    lines: list[str] = []
    for k, node_id in enumerate(order):
        result = shaped.nodes[node_id]
        args = [var[r.node] + _port_access(shaped, r) for r in result.inputs]
        expr: Expr = substitute(result.built.call, args)
        var[node_id] = temp if uses[node_id] == [k + 1] else node_id
        lines += statement(f"{var[node_id]} = ", expr, 2, _shape_comment(result.built))
        dead = sorted(
            {
                var[r.node]
                for r in result.inputs
                if r.node not in shaped.inputs and max(uses[r.node]) == k and var[r.node] != var[node_id]
            }
        )
        if dead:
            lines.append("        del " + ", ".join(dead))
    outputs = [(o.name, var[o.ref.node] + _port_access(shaped, o.ref)) for o in spec.outputs]
    if len(outputs) == 1:
        lines += statement("return ", outputs[0][1], 2)
    else:
        lines += statement("return ", Seq(tuple(Entry(literal(n), v) for n, v in outputs), "{}"), 2)
    return lines


def _port_access(shaped: Shaped, ref) -> str:
    if ref.port is not None and ref.node in shaped.nodes:
        return shaped.nodes[ref.node].built.ports[ref.port].access
    return ""


def _shape_comment(built) -> str:
    if built.out is not None:
        return built.out.comment()
    return ", ".join(f"{name}: {port.info.comment()}" for name, port in built.ports.items())


def _header(shaped: Shaped, tuning: Tuning, spec_path: str, out_path: str) -> list[str]:
    spec = shaped.graph.spec
    total = pretrained = 0
    notes = []
    for node_id, result in shaped.nodes.items():
        built = result.built
        notes += [f"{node_id}: {note}" for note in built.notes]
        if built.module is None:
            continue
        count = sum(p.numel() for p in built.module.parameters())
        total += count
        if built.uses_pretrained:
            new = sum(
                p.numel() for path in built.new_layers for p in built.module.get_submodule(path).parameters()
            )
            pretrained += count - new
    return [
        f"{spec.name}: generated by nncompile {__version__} from {docstring_text(spec_path)}.",
        "",
        f"Spec sha256: {spec.sha256}",
        f"Regenerate: nncompile {docstring_text(spec_path)} -o {docstring_text(out_path)}",
        f"Parameters: {total:,} ({pretrained:,} pretrained, {total - pretrained:,} new;"
        f" {tuning.frozen:,} frozen, {tuning.trainable:,} trainable).",
        *(docstring_text(n) for n in notes),
        "",
        "Edit the spec and regenerate rather than editing this file.",
    ]
