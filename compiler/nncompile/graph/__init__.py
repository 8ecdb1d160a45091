"""Stage 2, build: `Spec` -> `Graph`, a networkx DiGraph with ordered input ports."""

from .build import Graph, build

__all__ = ["Graph", "build"]
