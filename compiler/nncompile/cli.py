"""The `nncompile` command: `nncompile SPEC -o OUT`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import __version__
from .errors import NncompileError

EXIT_OK, EXIT_INTERNAL, EXIT_SPEC = 0, 1, 2


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="nncompile",
        description="Compile a YAML spec of a neural network into a standalone PyTorch Lightning module.",
    )
    p.add_argument("spec", help="the spec file (YAML)")
    p.add_argument("-o", "--output", required=True, help="the Python file to write, or - for stdout")
    p.add_argument("--force", action="store_true", help="overwrite OUTPUT even if nncompile did not write it")
    p.add_argument("--version", action="version", version=f"nncompile {__version__}")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from .emit import write
    from .pipeline import compile_spec

    try:
        result = compile_spec(args.spec, None if args.output == "-" else args.output)
        for warning in result.warnings:
            print(warning.render(_source_lines(args.spec)), file=sys.stderr)
        if args.output == "-":
            sys.stdout.write(result.source)
        else:
            write(Path(args.output), result.source, force=args.force)
    except NncompileError as err:
        print(err.render(_source_lines(args.spec)), file=sys.stderr)
        return EXIT_SPEC
    return EXIT_OK


def _source_lines(path: str) -> list[str] | None:
    from .limits import MAX_SPEC_BYTES

    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_SPEC_BYTES + 1)  # bounded: the spec may be /dev/zero
        return None if len(raw) > MAX_SPEC_BYTES else raw.decode("utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return None
