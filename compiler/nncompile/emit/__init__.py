"""Stage 5, emit: the IR -> source text (Jinja2) -> written atomically."""

from .render import render

__all__ = ["render"]
