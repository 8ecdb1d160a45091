"""Stage 5, emit: the emit IR -> source text through Jinja2 templates (written atomically by
output_files.py)."""

from __future__ import annotations

from ..ir import FileIR


def render(ir: FileIR) -> str:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("nncompile.emit", "templates"),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    return env.get_template("module.py.jinja").render(
        header=ir.header,
        imports=ir.imports,
        constants=ir.constants,
        blocks=ir.blocks,
        model=ir.model,
        training=ir.training,
    )
