"""nncompile: compile a YAML graph spec of a neural network into a standalone Lightning module.

The Python API mirrors the command line (docs/python-api.md):

    compile_spec(path)            nncompile SPEC -o OUT   (returns a Compiled; .write(OUT) writes it)
    check(path)                   nncompile check SPEC
    summarize(path)               nncompile summary SPEC
    render_graph(path, format)    nncompile graph SPEC --format FORMAT
    json_schema()                 nncompile schema
    check_output(spec, out)       nncompile SPEC -o OUT --check
    check_generated(specs, out)   nncompile check-generated SPECS GENERATED

(The names differ from the commands where a module of the package holds that name.) Spec
problems raise `NncompileError`: its `.diagnostics` are located, and `.render()` prints them as
the CLI does. Torch is imported on first use, not here.
"""

from .errors import Diagnostic, NncompileError, SpecError
from .version import __version__


def compile_spec(path, output=None, overrides=()):
    """Compile a spec file into a `Compiled`: `.source` (the generated file's text), `.shapes`
    (each input's and node's output shape), `.summary()`, `.render_graph(format)`, `.warnings`,
    `.write(path)`. `output` is only the path shown in the generated header; `overrides` are
    `--set` options (`"nodes.fc2.out_features=5"`)."""
    from .pipeline import compile_spec as _compile

    return _compile(path, output, overrides)


def check(path) -> list[Diagnostic]:
    """Validate a spec completely, shapes included; returns its warnings, raises NncompileError."""
    return compile_spec(path).warnings


def summarize(path):
    """The summary table of a spec (`.text()`, `.to_dict()`, `.rows`, `.total_params`, ...)."""
    return compile_spec(path).summary()


def render_graph(path, format: str = "mermaid") -> str | bytes:
    """The graph of a spec with shapes on its edges: text for "mermaid" and "dot", bytes for "svg"
    and "png" (which need Graphviz's `dot`; without it, a ToolMissing error)."""
    from .tools.graph_render import IMAGE_FORMATS, dot, render_image

    compiled = compile_spec(path)
    if format in IMAGE_FORMATS:
        return render_image(dot(compiled), format)
    return compiled.render_graph(format)


def json_schema() -> dict:
    """The JSON Schema (draft 2020-12) of the spec language."""
    from .spec.schema import schema

    return schema()


def check_output(spec_path, output_path, overrides=()):
    """Whether a generated file is what its spec (with `overrides`, `--set` options) compiles to
    now: a `Staleness` with `.stale`, `.reason` and `.diff`."""
    from .pipeline import check_output as _check

    return _check(spec_path, output_path, overrides)


def check_generated(specs_dir, generated_dir) -> list:
    """`check_output` for every `specs_dir/x.yaml` and `generated_dir/x.py` (with the `--set`
    options its header lists), plus a stale entry for each generated file whose spec is gone."""
    from .pipeline import check_output as _check
    from .tools.staleness import header_overrides, orphan, pairs

    paired, orphans = pairs(specs_dir, generated_dir)
    return [_check(s, o, header_overrides(o)) for s, o in paired] + [orphan(p, specs_dir) for p in orphans]


__all__ = [
    "Diagnostic",
    "NncompileError",
    "SpecError",
    "__version__",
    "check",
    "check_generated",
    "check_output",
    "compile_spec",
    "json_schema",
    "render_graph",
    "summarize",
]
