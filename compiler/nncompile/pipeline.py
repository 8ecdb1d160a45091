"""The driver: spec file -> generated source, one stage after another.

spec.load -> graph.build -> shapes.propagate -> plan.plan (with training/) -> emit.render, each stage
checked by its lint; docs/architecture.md has the map.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from . import emit, graph, plan, shapes, spec
from .emit import output_files
from .emit.lint import lint as emit_lint
from .errors import Collector, Diagnostic, NncompileError
from .graph.lint import lint as graph_lint
from .shapes.lint import lint as shapes_lint

if TYPE_CHECKING:
    from .tools.staleness import Staleness


@dataclass
class Compiled:
    """The result of compiling one spec: the source text and every stage's output."""

    spec: spec.Spec
    graph: graph.Graph
    shaped: shapes.Shaped
    ir: plan.FileIR
    source: str
    output: str  # the output path named in the header's "Regenerate:" line

    @property
    def parameters(self) -> tuple[int, int]:
        """(all parameters, trainable ones) of the model, as the generated header counts them."""
        total = sum(r.built.parameter_counts()[0] for r in self.shaped.nodes.values())
        return total, total - sum(self.ir.model.frozen_by_node.values())

    @property
    def warnings(self) -> list[Diagnostic]:
        return self.shaped.warnings

    @property
    def shapes(self) -> dict[str, tuple[int, ...] | dict[str, tuple[int, ...]]]:
        """Each input's and node's output shape without the batch dim, as in the spec's `inputs:`;
        a dict of ports for a node with several outputs."""
        out: dict = {name: info.shape[1:] for name, info in self.shaped.inputs.items()}
        for node_id, result in self.shaped.nodes.items():
            built = result.built
            if built.out is not None:
                out[node_id] = built.out.shape[1:]
            else:
                out[node_id] = {port: value.info.shape[1:] for port, value in built.ports.items()}
        return out

    def summary(self):
        """The `nncompile summary` table as a `summary.Summary` (`.text()`, `.to_dict()`, `.rows`)."""
        from .tools import summary  # the reviewer tools are imported by the commands that use them

        return summary.summarize(self)

    def write(self, path: str | Path, force: bool = False) -> None:
        """Write the source atomically; refuses to replace a file nncompile did not write. The
        header's "Regenerate:" line names `path`, so `--check` on it agrees; never writes over the
        spec or its bases (see output_files.py)."""
        specs = [self.spec.path, *(base.path for base in self.spec.bases)]
        output_files.check_target(path, specs, generated=True, force=force)
        if Path(path).as_posix() != self.output:
            self.output = Path(path).as_posix()
            self.ir = plan.plan(self.shaped, Path(self.spec.path).as_posix(), self.output)
            self.source = emit.render(self.ir)
        output_files.write(path, self.source, specs, generated=True, force=force)

    def render_graph(self, format: str = "mermaid") -> str:
        """The `nncompile graph` text: format "mermaid" or "dot"."""
        from .tools import graph_render

        return graph_render.render_text(self, format)


def compile_spec(
    path: str | Path, output: str | Path | None = None, overrides: Sequence[str] = ()
) -> Compiled:
    """Compile a spec file, with `overrides` (`--set path=value` options) merged over it. `output`
    is the path the header's regenerate command names (default model.py; `Compiled.write` renames
    it to the path it writes)."""
    path = Path(path)
    errors = Collector()  # every stage goes on past the mistakes that leave the rest checkable
    with _cyclic_gc_paused():
        loaded = spec.load(path, errors, overrides)
        try:
            built = graph.build(loaded, errors)
            graph_lint(built)
            shaped = shapes.propagate(built)
        except NncompileError as err:
            errors.add(err)
        errors.raise_if_any()
        shapes_lint(shaped)
        shown = Path(output).as_posix() if output else "model.py"
        ir = plan.plan(shaped, path.as_posix(), shown)
        source = emit.render(ir)
        emit_lint(source, {ir.model.name, *(b.name for b in ir.blocks)})
        return Compiled(loaded, built, shaped, ir, source, shown)


def check_output(spec_path: str | Path, output_path: str | Path, overrides: Sequence[str] = ()) -> Staleness:
    """Whether `output_path` is what compiling `spec_path` (with `overrides`) into it gives now
    (raises NncompileError when the spec itself is wrong)."""
    from .tools import staleness

    return staleness.compare(spec_path, output_path, compile_spec(spec_path, output_path, overrides))


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """A compile keeps objects for every node until it ends, so the cyclic collector's full passes,
    each rescanning torch's heap and every node so far, made compile time grow faster than the node
    count (bench/scale.py). Reference counting still frees as usual."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
