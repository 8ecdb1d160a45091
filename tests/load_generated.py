"""Compile a spec text and import the generated file in-process (for tests that train or
inspect the generated modules directly)."""

import importlib.util
import itertools

from nncompile import compile_spec

_count = itertools.count()


def compile_text(text: str, folder):
    path = folder / f"spec{next(_count)}.yaml"
    path.write_text(text)
    return compile_spec(path)


def load_source(source: str, folder):
    """Import generated source as a fresh module."""
    name = f"generated_{next(_count)}"
    path = folder / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def compile_and_load(text: str, folder):
    result = compile_text(text, folder)
    return result, load_source(result.source, folder)
