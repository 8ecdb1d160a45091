"""`nncompile graph`: the compiled graph as Mermaid (renders in GitHub/GitLab review), DOT, and
SVG/PNG through Graphviz's `dot` when it is installed. Every edge is labelled with the shape of the
tensor it carries, as in the shape comments of the generated forward()."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass

from ..errors import Diagnostic, NncompileError
from ..shapes.applying import op_text
from ..shapes.propagate import value_of

TEXT_FORMATS = ("mermaid", "dot")
IMAGE_FORMATS = ("svg", "png")
FORMATS = TEXT_FORMATS + IMAGE_FORMATS


class ToolMissing(NncompileError):
    """An external program a command needs is not installed."""

    def __init__(self, message: str, hint: str):
        super().__init__([Diagnostic(message, hint=hint)])


@dataclass(frozen=True)
class Vertex:
    id: str  # unique across inputs, nodes and outputs, and never a Mermaid keyword such as `end`
    title: str
    detail: str
    kind: str  # "input", "node" or "output"


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    label: str


def layout(compiled) -> tuple[list[Vertex], list[Edge]]:
    """The vertices (inputs, live nodes, outputs) and shape-labelled edges, in spec order."""
    shaped = compiled.shaped
    vertices = [Vertex(f"in_{n}", n, info.comment(), "input") for n, info in shaped.inputs.items()]
    edges = []
    for node_id, result in shaped.nodes.items():
        vertices.append(Vertex(f"n_{node_id}", node_id, op_text(result.spec), "node"))
        for ref in result.inputs:
            edges.append(Edge(vertex_id(shaped, ref.node), f"n_{node_id}", _edge_label(shaped, ref)))
    for out in compiled.spec.outputs:
        vertices.append(Vertex(f"out_{out.name}", out.name, "output", "output"))
        edges.append(Edge(vertex_id(shaped, out.ref.node), f"out_{out.name}", _edge_label(shaped, out.ref)))
    return vertices, edges


def vertex_id(shaped, name: str) -> str:
    return f"in_{name}" if name in shaped.inputs else f"n_{name}"


def _edge_label(shaped, ref) -> str:
    shape = value_of(ref, shaped.inputs, shaped.nodes, None).comment()
    return f"{ref.port}: {shape}" if ref.port is not None else shape


def mermaid(compiled) -> str:
    vertices, edges = layout(compiled)
    shapes = {"input": '[/"{}"/]', "node": '["{}"]', "output": '(["{}"])'}
    lines = ["flowchart TD"]
    for v in vertices:
        text = (
            _mermaid_text(v.title)
            if v.kind == "output"
            else f"{_mermaid_text(v.title)}<br/>{_mermaid_text(v.detail)}"
        )
        lines.append(f"    {v.id}{shapes[v.kind].format(text)}")
    for e in edges:
        lines.append(f'    {e.source} -->|"{_mermaid_text(e.label)}"| {e.target}')
    return "\n".join(lines) + "\n"


def _mermaid_text(text: str) -> str:
    """Text inside a quoted Mermaid label: entity codes for the characters Mermaid reads itself."""
    for char, code in (("#", "#35;"), ('"', "#quot;"), ("<", "#lt;"), (">", "#gt;")):
        text = text.replace(char, code)
    return text


def dot(compiled) -> str:
    vertices, edges = layout(compiled)
    shapes = {"input": "invhouse", "node": "box", "output": "oval"}
    lines = [
        f"digraph {_dot_string(compiled.spec.name)} {{",
        "    rankdir=TB;",
        '    node [fontname="Helvetica", fontsize=11, style=rounded];',
        '    edge [fontname="Helvetica", fontsize=9];',
    ]
    for v in vertices:
        label = v.title if v.kind == "output" else f"{v.title}\n{v.detail}"
        lines.append(f"    {v.id} [shape={shapes[v.kind]}, label={_dot_string(label)}];")
    for e in edges:
        lines.append(f"    {e.source} -> {e.target} [label={_dot_string(e.label)}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _dot_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def render_text(compiled, format: str) -> str:
    if format == "mermaid":
        return mermaid(compiled)
    if format == "dot":
        return dot(compiled)
    raise ValueError(f"text graph formats are {TEXT_FORMATS}, not {format!r}")


def render_image(dot_text: str, format: str) -> bytes:
    """SVG or PNG bytes from Graphviz's `dot`, or a ToolMissing error saying how to get it."""
    program = shutil.which("dot")
    if program is None:
        raise ToolMissing(
            f"`--format {format}` needs Graphviz's `dot` program, which is not on PATH",
            "install Graphviz (apt install graphviz, brew install graphviz, conda install graphviz), "
            "or use `--format mermaid` or `--format dot`, which need nothing",
        )
    run = subprocess.run([program, f"-T{format}"], input=dot_text.encode(), capture_output=True, check=False)
    if run.returncode != 0:
        raise ToolMissing(
            f"Graphviz's `dot -T{format}` failed: {run.stderr.decode(errors='replace').strip()}",
            "check the Graphviz installation (`dot -V`)",
        )
    return run.stdout
