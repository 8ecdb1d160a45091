"""Stage 3, shapes: `Graph` -> `Shaped`, every node run on the meta device."""

from .propagate import Shaped, propagate

__all__ = ["Shaped", "propagate"]
