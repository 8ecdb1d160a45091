"""Stage 4, plan: `Shaped` -> the emit IR of the model half."""

from .planner import FileIR, plan

__all__ = ["FileIR", "plan"]
