"""The driver: spec file -> generated source, one stage after another.

load (spec.py) -> build (graph.py) -> shapes (shapes.py) -> plan (plan.py) -> emit (emit.py)
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from . import emit, graph, plan, shapes, spec
from .errors import Diagnostic


@dataclass
class Compiled:
    """The result of compiling one spec: the source text and every stage's output."""

    spec: spec.Spec
    graph: graph.Graph
    shaped: shapes.Shaped
    ir: plan.FileIR
    source: str

    @property
    def warnings(self) -> list[Diagnostic]:
        return self.shaped.warnings


def compile_spec(path: str | Path, output: str | Path | None = None) -> Compiled:
    """Compile a spec file. `output` is only used for the regenerate command in the header."""
    path = Path(path)
    with _cyclic_gc_paused():
        loaded = spec.load(path)
        built = graph.build(loaded)
        shaped = shapes.propagate(built)
        ir = plan.plan(shaped, path.as_posix(), Path(output).as_posix() if output else "model.py")
        return Compiled(loaded, built, shaped, ir, emit.render(ir))


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
