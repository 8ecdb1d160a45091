"""The `nncompile` command.

`nncompile SPEC... -o OUT` compiles; a first argument naming a command runs that command instead:
check, summary, graph, plan, diff, schema, check-generated. Exit status: 0 success, 2 a problem in the spec
(a located message, no traceback), 3 an output that cannot be written (a file nncompile did not
write, a missing folder, a named pipe, the spec itself), 1 an out-of-date file (`--check`,
`check-generated`), a missing tool, or an internal error (a bug, with its traceback), 130
interrupted (Ctrl-C: one line, nothing half-written). Torch is imported only by the commands that
compile, so `--help` and `schema` start fast.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

from .errors import NncompileError, OutputError
from .version import __version__

EXIT_OK, EXIT_INTERNAL, EXIT_SPEC, EXIT_OUTPUT = 0, 1, 2, 3
EXIT_STALE = EXIT_TOOL = EXIT_CHANGED = 1
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a command stopped by Ctrl-C

COMMANDS_HELP = """\
commands (`nncompile COMMAND --help` for each):
  nncompile SPEC -o OUT             compile SPEC into the Python file OUT (- for stdout)
  nncompile SPEC... -o DIR/         compile each SPEC into DIR/<its name>.py, in one process
  nncompile SPEC -o OUT --check     exit 1 with a diff if OUT is out of date with SPEC
  nncompile check SPEC...           validate specs, shapes included; write nothing
  nncompile summary SPEC            table of nodes: shapes, parameters, frozen, MACs
  nncompile graph SPEC [--html]     the graph with shapes on its edges (mermaid, dot, svg, png, a page)
  nncompile plan SPEC               the optimizer's parameter groups: rates, decay, unfreezing
  nncompile diff A B                what changes from spec A to spec B, --fail-on for CI
  nncompile resolve SPEC            the spec merged with its bases, each value's source in a comment
  nncompile sweep SPEC --grid PATH=V1,V2 -o DIR/
                                    one generated file per combination of values, and DIR/sweep.json
  nncompile schema                  JSON Schema of the spec language, for editors
  nncompile check-generated SPECS GENERATED
                                    exit 1 if any GENERATED/x.py is out of date with SPECS/x.yaml

exit status: 0 success, 2 a problem in a spec, 3 an output that cannot be written (a file
nncompile did not write: --force replaces it; a spec, a folder, a named pipe: never),
1 an out-of-date file, a change `diff --fail-on` names, a missing tool or a bug, 130
interrupted (Ctrl-C)

--set PATH=VALUE (repeatable) on compile, check, summary, graph, resolve and sweep changes one value
of the spec (read as YAML; null deletes the key): --set nodes.fc2.out_features=5
"""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    if not argv:
        compile_parser().print_help(sys.stderr)
        return EXIT_SPEC
    command = COMMANDS.get(argv[0])
    try:
        if command is not None:
            return command(argv[1:])
        return compile_command(argv)
    except NncompileError as err:
        print(err.render(), file=sys.stderr)
        return _exit_status(err)
    except KeyboardInterrupt:  # outputs are renamed into place whole, so nothing is half-written
        print("nncompile: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def run() -> None:
    """The `nncompile` command: main()'s status as the process's exit status."""
    status = main()
    if status == EXIT_INTERRUPTED:
        # Python kills itself with SIGINT at exit (status -2, not 130) when the interrupt came
        # inside code a C extension ran (torch's import does), even if main() caught it.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    sys.exit(status)


def _exit_status(err: NncompileError) -> int:
    from .tools.graph_render import ToolMissing

    if isinstance(err, ToolMissing):
        return EXIT_TOOL
    return EXIT_OUTPUT if isinstance(err, OutputError) else EXIT_SPEC


def _parser(command: str | None, description: str, epilog: str | None = None) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(
        prog="nncompile" + (f" {command}" if command else ""),
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def _add_set(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--set",
        action="append",
        default=[],
        dest="overrides",
        metavar="PATH=VALUE",
        help="change one value of the spec, after its bases: PATH is its keys joined by dots, VALUE is "
        "read as YAML (null deletes the key); repeatable: --set nodes.fc2.out_features=5 "
        "--set task.optimizer.lr=3e-4",
    )


def _regenerate(spec_path, overrides, out) -> str:
    """The command that regenerates `out`, as its header's "Regenerate:" line says."""
    sets = "".join(f" --set {shlex.quote(option)}" for option in overrides)
    return f"nncompile {spec_path}{sets} -o {out}"


def compile_parser() -> argparse.ArgumentParser:
    p = _parser(
        None,
        "Compile a YAML spec of a neural network into a standalone PyTorch Lightning module.",
        COMMANDS_HELP,
    )
    p.add_argument("specs", nargs="+", metavar="SPEC", help="the spec file(s) (YAML)")
    p.add_argument(
        "-o",
        "--output",
        required=True,
        help="the Python file to write, - for stdout, or a folder (an existing one, or a path ending "
        "in /) that gets one <spec name>.py per SPEC",
    )
    p.add_argument("--force", action="store_true", help="overwrite OUTPUT even if nncompile did not write it")
    p.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 with a diff if OUTPUT differs from what SPEC compiles to",
    )
    _add_set(p)
    p.add_argument("--version", action="version", version=f"nncompile {__version__}")
    return p


def compile_command(argv: list[str]) -> int:
    parser = compile_parser()
    args = parser.parse_args(argv)
    folder = args.output.endswith("/") or Path(args.output).is_dir()
    if len(args.specs) > 1 and not folder:
        parser.error("several specs need -o FOLDER/ (one <spec name>.py each)")
    if args.output == "-" and args.check:
        parser.error("--check compares with a file: give -o OUT")
    if args.output == "-":
        from .pipeline import compile_spec

        result = compile_spec(args.specs[0], overrides=args.overrides)
        _print_warnings(result)
        sys.stdout.write(result.source)
        return EXIT_OK
    outputs = [Path(args.output) / f"{Path(s).stem}.py" if folder else Path(args.output) for s in args.specs]
    if len(set(outputs)) < len(outputs):
        parser.error("two specs have the same name, so they would be written to the same file")
    jobs = list(zip(args.specs, outputs, strict=True))
    if args.check:
        return _check_outputs(jobs, args.overrides)
    return _compile_all(jobs, args.force, args.overrides)


def _compile_all(jobs: list[tuple[str, Path]], force: bool, overrides: list[str] = ()) -> int:
    """Compile each spec into its output in this process (torch is imported once), one line each:
    what was written, its parameters and how long it took; a spec that fails does not stop the
    others. An output that cannot be written is refused before its spec is compiled."""
    from .emit.output_files import check_target
    from .pipeline import compile_spec

    specs = [spec_path for spec_path, _ in jobs]
    status, done, started = EXIT_OK, 0, time.perf_counter()
    for i, (spec_path, out) in enumerate(jobs, 1):
        progress = f"[{i}/{len(jobs)}] " if len(jobs) > 1 else ""
        t = time.perf_counter()
        try:
            check_target(out, specs, generated=True, force=force)
            result = compile_spec(spec_path, out, overrides)
            _print_warnings(result)
            result.write(out, force=force)
        except NncompileError as err:
            print(err.render(), file=sys.stderr)
            status = max(status, _exit_status(err))
            if progress:
                print(f"{progress}{spec_path}: failed; {out} is left as it was", file=sys.stderr)
            continue
        done += 1
        total, trainable = result.parameters
        print(
            f"{progress}{spec_path} -> {out}: {total:,} parameters, {trainable:,} trainable "
            f"({time.perf_counter() - t:.2f} s)",
            file=sys.stderr,
        )
    if len(jobs) > 1:
        count = f"{len(jobs)}" if done == len(jobs) else f"{done} of {len(jobs)}"
        print(f"compiled {count} specs in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return status


def _check_outputs(jobs: list[tuple[str, Path]], overrides: list[str]) -> int:
    from .pipeline import check_output

    status = EXIT_OK
    for spec_path, out in jobs:
        try:
            result = check_output(spec_path, out, overrides)
        except NncompileError as err:
            print(err.render(), file=sys.stderr)
            status = EXIT_SPEC
            continue
        print(result.report())
        if result.stale:
            print(f"regenerate with: {_regenerate(spec_path, overrides, out)}")
            status = max(status, EXIT_STALE)
    return status


def check_command(argv: list[str]) -> int:
    p = _parser("check", "Validate specs completely (shapes included) and write nothing.")
    p.add_argument("specs", nargs="+", metavar="SPEC", help="spec files")
    _add_set(p)
    args = p.parse_args(argv)
    from .pipeline import compile_spec

    status = EXIT_OK
    for path in args.specs:
        try:
            result = compile_spec(path, overrides=args.overrides)
        except NncompileError as err:
            print(err.render(), file=sys.stderr)
            status = EXIT_SPEC
            continue
        _print_warnings(result)
        outputs = ", ".join(f"{name} {info.comment()}" for name, info in result.shaped.outputs.items())
        count = len(result.shaped.nodes)
        print(f"{path}: ok: {count} node{'s' if count != 1 else ''}, outputs {outputs}")
    return status


def summary_command(argv: list[str]) -> int:
    p = _parser(
        "summary",
        "A table of the compiled model: each node's op, input and output shapes, parameters, "
        "pretrained or new, frozen or trainable, and multiply-accumulates per sample.",
    )
    p.add_argument("spec", help="the spec file (YAML)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _add_set(p)
    args = p.parse_args(argv)
    from .pipeline import compile_spec

    result = compile_spec(args.spec, overrides=args.overrides)
    _print_warnings(result)
    table = result.summary()
    sys.stdout.write(json.dumps(table.to_dict(), indent=2) + "\n" if args.json else table.text())
    return EXIT_OK


def graph_command(argv: list[str]) -> int:
    from .tools.graph_render import FORMATS, IMAGE_FORMATS, dot, render_image

    p = _parser(
        "graph",
        "The compiled graph with the shape of each tensor on its edge: Mermaid (renders in GitHub "
        "and GitLab review), DOT, SVG/PNG through Graphviz's `dot`, or (--html) one self-contained "
        "interactive page for a model's review.",
    )
    p.add_argument("spec", help="the spec file (YAML)")
    p.add_argument("--format", "-f", choices=FORMATS, default="mermaid", help="default: mermaid")
    p.add_argument(
        "--html",
        action="store_true",
        help="one self-contained interactive page (no network): foldable blocks and backbones, "
        "training state, spec and code lines per node, the training plan",
    )
    p.add_argument("-o", "--output", help="write to this file instead of stdout (required for png)")
    _add_set(p)
    args = p.parse_args(argv)
    if args.format == "png" and not args.output:
        p.error("--format png needs -o FILE")
    from .emit.output_files import check_target
    from .pipeline import compile_spec

    if args.output:
        check_target(args.output, [args.spec])
    result = compile_spec(args.spec, overrides=args.overrides)
    _print_warnings(result)
    if args.html:
        from .tools.graph_html import page

        data = page(result).encode()
    elif args.format in IMAGE_FORMATS:
        data = render_image(dot(result), args.format)
    else:
        data = result.render_graph(args.format).encode()
    if args.output:
        from .emit.output_files import write

        write(args.output, data, [args.spec])
    else:
        sys.stdout.write(data.decode())  # mermaid, dot, svg or html: text
    return EXIT_OK


def resolve_command(argv: list[str]) -> int:
    p = _parser(
        "resolve",
        "Print the spec merged with its bases (`extends:`) and --set options, as YAML that compiles "
        "to the same model, with a comment on each line saying which file, line and column its value "
        "comes from. Compiles nothing.",
    )
    p.add_argument("spec", help="the spec file (YAML)")
    _add_set(p)
    args = p.parse_args(argv)
    from .spec.compose import load, resolved_yaml

    sys.stdout.write(resolved_yaml(load(args.spec, args.overrides)))
    return EXIT_OK


def sweep_command(argv: list[str]) -> int:
    p = _parser(
        "sweep",
        "Compile SPEC once per combination of the --grid values, in one process, into DIR/<spec "
        "name>__<values>.py, and write DIR/sweep.json mapping each file name to its values. Each "
        "file's header regenerates it with --set options.",
    )
    p.add_argument("spec", help="the spec file (YAML)")
    p.add_argument(
        "--grid",
        action="append",
        required=True,
        metavar="PATH=V1,V2,...",
        help="a value of the spec to sweep (as --set; commas inside [...] or {...} stay); repeatable",
    )
    p.add_argument("-o", "--output", required=True, metavar="DIR/", help="the folder to write into")
    p.add_argument("--force", action="store_true", help="overwrite files nncompile did not write")
    _add_set(p)
    args = p.parse_args(argv)
    from .emit.output_files import write
    from .tools.sweep import manifest, plan_sweep

    runs = plan_sweep(Path(args.spec).stem, [_grid(p, g) for g in args.grid])
    folder = Path(args.output)
    folder.mkdir(parents=True, exist_ok=True)
    status, written = EXIT_OK, {}
    for i, (name, values) in enumerate(runs.items(), 1):
        print(f"[{i}/{len(runs)}] {', '.join(f'{path}={text}' for path, text in values)}", file=sys.stderr)
        sets = [*args.overrides, *(f"{path}={text}" for path, text in values)]
        done = _compile_all([(args.spec, folder / name)], args.force, sets)
        status = max(status, done)
        if done == EXIT_OK:
            written[name] = values
    write(folder / "sweep.json", manifest(written))
    print(f"{folder / 'sweep.json'}: {len(written)} of {len(runs)} files", file=sys.stderr)
    return status


def _grid(p: argparse.ArgumentParser, option: str) -> tuple[str, list[str]]:
    from .tools.sweep import split_values

    path, eq, values = option.partition("=")
    if not eq or not path or not values:
        p.error(f"--grid {option}: give PATH=V1,V2,...")
    return path, split_values(values)


def plan_command(argv: list[str]) -> int:
    p = _parser(
        "plan",
        "The training plan: one row per parameter group the optimizer gets, in its order: which "
        "parameters, how many, the learning rate at the start and at each unfreeze boundary, the "
        "weight decay and the rule that set it, and what BatchNorm layers do.",
    )
    p.add_argument("spec", help="the spec file (YAML)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = p.parse_args(argv)
    from .pipeline import compile_spec
    from .tools.training_plan import training_plan

    result = compile_spec(args.spec)
    _print_warnings(result)
    table = training_plan(result)
    sys.stdout.write(json.dumps(table.to_dict(), indent=2) + "\n" if args.json else table.text())
    return EXIT_OK


def diff_command(argv: list[str]) -> int:
    from .tools.model_diff import KINDS

    p = _parser(
        "diff",
        "What changes from spec A to spec B: nodes added, removed, renamed and changed, shapes and "
        "where a change propagates, parameters and MACs, the state-dict keys a checkpoint of A no "
        "longer loads into B, and the training plan.",
        "kinds of change (for --fail-on): " + ", ".join(KINDS),
    )
    p.add_argument("a", metavar="A", help="the spec before (YAML), or the file nncompile generated from it")
    p.add_argument("b", metavar="B", help="the spec after (YAML), or the file nncompile generated from it")
    p.add_argument("--format", choices=("text", "json"), default="text", help="default: text")
    p.add_argument(
        "--fail-on",
        default="",
        metavar="KIND,...",
        help="exit 1 when any of these kinds of change is found (`any`: every kind)",
    )
    args = p.parse_args(argv)
    fail_on = [k for k in args.fail_on.split(",") if k]
    unknown = [k for k in fail_on if k not in (*KINDS, "any")]
    if unknown:
        p.error(f"--fail-on: unknown kind {', '.join(unknown)} (kinds: {', '.join(KINDS)}, any)")
    from .tools.model_diff import diff

    result = diff(_compiled_for_diff(args.a), _compiled_for_diff(args.b))
    sys.stdout.write(
        json.dumps(result.to_dict(), indent=2) + "\n" if args.format == "json" else result.text()
    )
    found = result.kinds()
    failing = found if "any" in fail_on else [k for k in found if k in fail_on]
    if failing:
        print(f"nncompile diff: {', '.join(failing)} (--fail-on)", file=sys.stderr)
        return EXIT_CHANGED
    return EXIT_OK


def _compiled_for_diff(path: str):
    """A spec compiled, or for a generated file, the spec its header names, compiled into it: the
    file must be what that spec compiles to now (else the diff would not be the file's)."""
    from .pipeline import compile_spec
    from .tools import staleness

    if not path.endswith(".py"):
        return compile_spec(path)
    spec = staleness.spec_of(path)
    result = compile_spec(spec, path)
    found = staleness.compare(spec, path, result)
    if found.stale:
        raise OutputError(
            f"{path} is out of date with {spec} ({found.reason}): the diff would not be this file's",
            hint=f"regenerate it (nncompile {spec} -o {path}), or diff the specs",
        )
    return result


def schema_command(argv: list[str]) -> int:
    p = _parser(
        "schema",
        "The JSON Schema (draft 2020-12) of the spec language. Point your editor at it, e.g. with "
        "`# yaml-language-server: $schema=nncompile.schema.json` at the top of a spec.",
    )
    p.add_argument("-o", "--output", help="write to this file instead of stdout")
    args = p.parse_args(argv)
    from .spec.schema import schema_text

    text = schema_text()
    if args.output:
        from .emit.output_files import write

        write(args.output, text)
    else:
        sys.stdout.write(text)
    return EXIT_OK


def check_generated_command(argv: list[str]) -> int:
    p = _parser(
        "check-generated",
        "Check that every GENERATED/x.py is exactly what SPECS/x.yaml compiles to now: exit 1 with "
        "a diff for each file that is out of date with its spec or with this compiler, missing, "
        "or left over from a deleted spec.",
    )
    p.add_argument("specs_dir", metavar="SPECS", help="folder of spec files (*.yaml)")
    p.add_argument("generated_dir", metavar="GENERATED", help="folder of generated files (*.py)")
    args = p.parse_args(argv)
    from .pipeline import check_output
    from .tools.staleness import header_overrides, orphan, pairs

    paired, orphans = pairs(args.specs_dir, args.generated_dir)
    if not paired:
        print(f"error: no *.yaml specs in {args.specs_dir}", file=sys.stderr)
        return EXIT_SPEC
    failed = stale = 0
    for spec_path, out_path in paired:
        overrides = header_overrides(out_path)
        try:
            result = check_output(spec_path, out_path, overrides)
        except NncompileError as err:
            print(err.render(), file=sys.stderr)
            failed += 1
            continue
        if result.stale:
            stale += 1
            print(result.report())
            print(f"regenerate with: {_regenerate(spec_path, overrides, out_path)}")
    for path in orphans:
        stale += 1
        print(orphan(path, args.specs_dir).report())
    checked = len(paired) + len(orphans)
    if failed:
        print(f"{failed} of {len(paired)} specs do not compile", file=sys.stderr)
        return EXIT_SPEC
    if stale:
        print(f"{stale} of {checked} generated files are out of date")
        return EXIT_STALE
    print(f"{checked} generated files are up to date")
    return EXIT_OK


def _print_warnings(result) -> None:
    for warning in result.warnings:
        print(warning.render(), file=sys.stderr)


COMMANDS = {
    "check": check_command,
    "summary": summary_command,
    "graph": graph_command,
    "resolve": resolve_command,
    "sweep": sweep_command,
    "plan": plan_command,
    "diff": diff_command,
    "schema": schema_command,
    "check-generated": check_generated_command,
}
