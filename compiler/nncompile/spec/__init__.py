"""Stage 1, load: YAML text -> the typed `Spec`, every value located."""

from .model import Spec, load, loads

__all__ = ["Spec", "load", "loads"]
