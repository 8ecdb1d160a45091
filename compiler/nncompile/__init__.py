"""nncompile: compile a YAML graph spec of a neural network into a standalone Lightning module."""

__version__ = "0.1.0"


def compile_spec(path, output=None):
    """Compile a spec file; returns a `Compiled` with `.source`, `.shaped` (shapes) and more."""
    from .pipeline import compile_spec as _compile

    return _compile(path, output)


__all__ = ["__version__", "compile_spec"]
