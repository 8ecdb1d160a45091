"""Specs that compose: `extends:` and `--set path=value`, merged as JSON Merge Patch (RFC 7386).

A spec names its bases in `extends:` (a path relative to itself, or a list of them applied in
order); a base may extend others. The bases are merged first, then the spec on top: mappings merge
key by key, `null` deletes a key, any other value (a list too) replaces. Every layer is a
yamlsrc.Document, so the merged one still locates each value at the file, line and column it was
written at, with the chain of specs it was inherited through (`Loc.via`). A `--set` is one more
layer on top, located at the option itself.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import yaml

from ..errors import Loc, NncompileError, SpecError, did_you_mean
from ..limits import MAX_NODES, MAX_SPEC_BYTES, MAX_SPEC_FILES
from . import yamlsrc
from .yamlsrc import Document

EXTENDS = "extends"
KEY = "<key>"  # yamlsrc locates the key that names the value at `path` at (KEY, *path)


@dataclass(frozen=True)
class Source:
    """A spec file that went into a compiled spec."""

    path: str  # as the user named it (the compiled spec) or reached from it (a base)
    sha256: str


@dataclass
class Composed:
    doc: Document  # the merged spec
    sources: list[Source]  # the compiled spec first, then its bases in the order they were read
    overrides: tuple[str, ...]  # the `--set path=value` options, as given


def load(path: str | Path, overrides: Sequence[str] = ()) -> Composed:
    """Read a spec file, merge its bases under it and its `--set` options over it."""
    path = Path(path)
    text, sha256 = read(path, None)
    return compose(text, str(path), sha256, overrides, path.resolve())


def compose(
    text: str, file: str, sha256: str, overrides: Sequence[str] = (), resolved: Path | None = None
) -> Composed:
    """The spec `text` (of `file`) with its bases and `--set` options merged."""
    reader = _Reader([Source(file, sha256)])
    doc = reader.extend(yamlsrc.parse(text, file), (), (resolved or Path(file).resolve(),))
    for option in overrides:
        doc = merge(doc, set_layer(doc, option))
    _check_node_count(doc)
    return Composed(doc, reader.sources, tuple(overrides))


def read(path: Path, where: Loc | None) -> tuple[str, str]:
    """The text of a spec file and its sha256. `where`: the `extends:` entry that names it (None
    for the spec compiled), where a base that cannot be read is reported."""
    at = where or Loc(str(path), 1, 1)
    what = "spec" if where is None else "base spec"
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_SPEC_BYTES + 1)  # bounded: the path may be /dev/zero or a huge file
    except IsADirectoryError:
        raise SpecError(
            f"cannot read {what}: {path} is a directory",
            at,
            hint=f"name a spec file; for every spec in it: nncompile {path.as_posix()}/*.yaml -o OUT/",
        ) from None
    except FileNotFoundError:
        raise SpecError(f"cannot read {what} {path}: No such file", at, hint=_nearby(path)) from None
    except OSError as exc:
        raise SpecError(f"cannot read {what}: {exc.strerror}", at) from None
    if len(raw) > MAX_SPEC_BYTES:
        raise SpecError(
            f"the {what} is larger than {MAX_SPEC_BYTES // 2**20} MiB",
            at,
            hint="is this the right file? the limit is in nncompile/limits.py",
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start]
        via = (*at.via, at.file) if where else ()
        loc = Loc(str(path), before.count(b"\n") + 1, exc.start - before.rfind(b"\n"), via)
        raise SpecError(f"the spec is not UTF-8 text ({exc.reason})", loc, hint="save it as UTF-8") from None
    return text, hashlib.sha256(raw).hexdigest()


def _nearby(path: Path) -> str | None:
    """A did-you-mean over the spec files beside a missing one."""
    try:
        names = [p.name for p in path.parent.iterdir() if p.suffix in (".yaml", ".yml")]
    except OSError:
        return None
    return did_you_mean(path.name, names)


class _Reader:
    """Reads a spec's bases, depth first, each once per naming."""

    def __init__(self, sources: list[Source]):
        self.sources = sources

    def extend(self, doc: Document, via: tuple[str, ...], stack: tuple[Path, ...]) -> Document:
        """`doc` (reached through the specs `via`) with its bases merged under it; `stack`: the
        resolved paths from the compiled spec down to `doc`'s, to catch a cycle."""
        if not isinstance(doc.data, dict) or EXTENDS not in doc.data:
            return doc
        merged = None
        for name, loc in self.bases(doc):
            path = Path(os.path.normpath(Path(doc.file).parent / name))
            resolved = path.resolve()
            if resolved in stack:
                cycle = " -> ".join(p.name for p in (*stack[stack.index(resolved) :], resolved))
                raise SpecError(
                    f"`extends:` makes a cycle: {cycle}",
                    loc,
                    hint="a spec cannot extend itself, directly or through its bases",
                )
            base = self.base(path.as_posix(), loc, (*via, doc.file), (*stack, resolved))
            merged = base if merged is None else merge(merged, base)
        own = Document({k: v for k, v in doc.data.items() if k != EXTENDS}, doc.locs, doc.file, doc.text)
        return own if merged is None else merge(merged, own)

    def bases(self, doc: Document) -> list[tuple[str, Loc]]:
        """The paths `extends:` names, each with its location."""
        raw = doc.data[EXTENDS]
        entries = raw if isinstance(raw, list) else [raw]
        paths = [
            (entry, (EXTENDS, i) if isinstance(raw, list) else (EXTENDS,)) for i, entry in enumerate(entries)
        ]
        for entry, path in paths:
            if not isinstance(entry, str) or not entry:
                raise SpecError(
                    f"`extends:` names a spec file by its path, not {entry!r}",
                    doc.loc(*path),
                    hint="for example `extends: base.yaml` or `extends: [base.yaml, recipe.yaml]`",
                )
        return [(entry, doc.loc(*path)) for entry, path in paths]

    def base(self, shown: str, where: Loc, via: tuple[str, ...], stack: tuple[Path, ...]) -> Document:
        if len(self.sources) >= MAX_SPEC_FILES:
            raise SpecError(
                f"the spec reads more than {MAX_SPEC_FILES} spec files through `extends:`",
                where,
                hint="is a base named many times over? the limit is in nncompile/limits.py",
            )
        text, sha256 = read(Path(shown), where)
        self.sources.append(Source(shown, sha256))
        try:
            doc = relocated(yamlsrc.parse(text, shown), via)
        except NncompileError as err:  # a mistake in a base: say how the compiled spec reached it
            for d in err.diagnostics:
                d.loc = d.loc and replace(d.loc, via=via)
            raise
        if not isinstance(doc.data, dict):
            raise SpecError(
                f"base spec {shown} is not a spec: its top level is {_kind(doc.data)}, not a mapping",
                doc.loc(),
                hint="a base holds spec keys (`nodes:`, `task:`, ...), all or some of them",
            )
        return self.extend(doc, via, stack)


def _kind(value) -> str:
    return "a list" if isinstance(value, list) else f"the value {value!r}"


def relocated(doc: Document, via: tuple[str, ...]) -> Document:
    """`doc` with every location marked as inherited through the specs `via`."""
    if not via:
        return doc
    locs = {path: replace(loc, via=via) for path, loc in doc.locs.items()}
    return Document(doc.data, locs, doc.file, doc.text)


def merge(target: Document, patch: Document) -> Document:
    """JSON Merge Patch of `patch` onto `target`, each value keeping its location; a merged
    mapping is located where it was first written. The result is named after `patch`."""
    locs: dict = {}
    data = _merge(target.data, target.locs, patch.data, patch.locs, (), locs)
    return Document(data, locs, patch.file, patch.text)


def _merge(old, old_locs: dict, new, new_locs: dict, path: tuple, out: dict):
    if not isinstance(new, dict):
        _take(new, new_locs, path, path, out)
        return new
    old, old_locs = _expanded(old, old_locs, path)
    for where in (path, (KEY, *path)):
        if where in old_locs or where in new_locs:
            out[where] = old_locs.get(where) or new_locs[where]
    merged = {}
    for key, value in old.items():
        here = (*path, key)
        if key not in new:
            _take(value, old_locs, here, here, out)
            merged[key] = value
        elif new[key] is not None:
            merged[key] = _merge(value, old_locs, new[key], new_locs, here, out)
    for key, value in new.items():
        if key not in old and value is not None:  # RFC 7386: nulls inside a new mapping vanish too
            merged[key] = _merge(None, {}, value, new_locs, (*path, key), out)
    return merged


def _take(value, locs: dict, src: tuple, dst: tuple, out: dict) -> None:
    """Copy the locations of `value` and everything in it from `src` in `locs` to `dst` in `out`."""
    if src in locs:
        out[dst] = locs[src]
    if src and (KEY, *src) in locs:
        out[(KEY, *dst)] = locs[(KEY, *src)]
    if isinstance(value, dict):
        for key, item in value.items():
            _take(item, locs, (*src, key), (*dst, key), out)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _take(item, locs, (*src, i), (*dst, i), out)


# A value a spec may write in short (`relu: ReLU`, `image: [3, 224, 224]`, `loss: MSELoss`) is
# its mapping's one key; a mapping merged onto it merges with that mapping.
def _shorthand_key(path: tuple, value) -> str | None:
    is_node = (
        len(path) == 2 and path[0] == "nodes" or len(path) == 4 and path[0] == "blocks" and path[2] == "nodes"
    )
    if isinstance(value, str) and is_node:
        return "op"
    if isinstance(value, list) and len(path) == 2 and path[0] == "inputs":
        return "shape"
    if isinstance(value, str) and path[-1:] == ("loss",) and path[:1] == ("task",):
        return "name"
    return None


def _expanded(value, locs: dict, path: tuple) -> tuple[dict, dict]:
    """A value a mapping is merged onto, as a mapping (a non-mapping one is replaced whole), and
    the locations of what it holds."""
    if isinstance(value, dict):
        return value, locs
    key = _shorthand_key(path, value) if path else None
    if key is None:
        return {}, {}
    moved = {where: locs[where] for where in (path, (KEY, *path)) if where in locs}
    _take(value, locs, path, (*path, key), moved)
    if (*path, key) in moved:  # the written value stands for its key too
        moved[(KEY, *path, key)] = moved[(*path, key)]
    return {key: value}, moved


def set_layer(doc: Document, option: str) -> Document:
    """A `--set path=value` option as a layer to merge over `doc`: the value is read as YAML and
    every part of it located at the option. Each key of the path but the last must be there
    already, or nothing close to it (a misspelling gets a did-you-mean)."""
    loc = Loc(f"--set {option}", 0, 0)
    dotted, eq, text = option.partition("=")
    keys = dotted.split(".")
    if keys[0] == EXTENDS:
        raise SpecError("`--set` cannot change `extends:`", loc, hint="name the bases in the spec")
    if not eq or not all(keys):
        raise SpecError(
            "`--set` takes path=value",
            loc,
            hint="for example --set nodes.fc2.out_features=5 or --set task.optimizer.lr=3e-4",
        )
    if not text.strip():
        raise SpecError(
            f"`--set {dotted}=` gives no value", loc, hint=f"to delete the key: --set {dotted}=null"
        )
    try:
        value = yamlsrc.parse(text, loc.file).data
    except NncompileError as err:
        raise SpecError(
            f"the value of `--set {dotted}` is not YAML: {err.diagnostics[0].message}", loc
        ) from None
    _check_path(doc.data, keys, loc)
    for key in reversed(keys):
        value = {key: value}
    locs: dict = {}
    _locate_all(value, (), loc, locs)
    return Document(value, locs, doc.file, doc.text)


def _locate_all(value, path: tuple, loc: Loc, out: dict) -> None:
    """Locate `value`, everything in it and every key at `loc`."""
    out[path] = loc
    if path:
        out[(KEY, *path)] = loc
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        _locate_all(item, (*path, key), loc, out)


def _check_path(data, keys: list[str], loc: Loc) -> None:
    at: tuple = ()
    for key in keys[:-1]:
        shorthand = _shorthand_key(at, data) if at else None
        data = {shorthand: data} if shorthand else data
        if not isinstance(data, dict):
            where = ".".join(at)
            raise SpecError(
                f"`--set` path {'.'.join(keys)}: {where} is {_kind(data).removeprefix('the value ')}, not a mapping",
                loc,
                hint=f"set it whole: --set {where}=VALUE",
            )
        if key not in data:
            hint = did_you_mean(key, list(data))
            if hint is not None:
                where = f" in {'.'.join(at)}" if at else " at the top of the spec"
                raise SpecError(f"`--set` path {'.'.join(keys)}: no key '{key}'{where}", loc, hint=hint)
            return  # a new mapping: the spec's own checks say whether it may be there
        data, at = data[key], (*at, key)


def _check_node_count(doc: Document) -> None:
    """Each file's nodes are counted as it is read; the merged spec may hold more than one file."""
    data = doc.data if isinstance(doc.data, dict) else {}
    count = len(data.get("nodes") or {}) if isinstance(data.get("nodes"), dict) else 0
    for block in (data.get("blocks") or {}).values() if isinstance(data.get("blocks"), dict) else ():
        if isinstance(block, dict) and isinstance(block.get("nodes"), dict):
            count += len(block["nodes"])
    if count > MAX_NODES:
        raise SpecError(
            f"the merged spec has more than {MAX_NODES:,} nodes (under `nodes:` and in its blocks)",
            doc.loc("nodes"),
            hint="a model has at most this many nodes; the limit is in nncompile/limits.py",
        )


class _Dumper(yaml.SafeDumper):
    """Writes a string that nncompile would read as a number (`3e-4`) in quotes."""


_Dumper.add_representer(
    str,
    lambda dumper, text: dumper.represent_scalar(
        "tag:yaml.org,2002:str", text, style='"' if yamlsrc.reads_as_number(text) else None
    ),
)


def _flow(value) -> str:
    text = yaml.dump(value, Dumper=_Dumper, default_flow_style=True, width=2**31, sort_keys=False)
    return text.removesuffix("\n").removesuffix("\n...")


def resolved_yaml(composed: Composed) -> str:
    """The merged spec as YAML that compiles to the same model, each line commented with where
    its value (or, for a mapping, its key) was written."""
    doc = composed.doc
    lines = [f"# {doc.file}, merged by nncompile: each comment says where its line's value was written"]
    lines += [f"# sha256 {s.sha256}  {s.path}" for s in composed.sources]
    lines += [f"# --set {option}" for option in composed.overrides]
    _write_mapping(doc.data, (), doc, lines)
    return "\n".join(lines) + "\n"


def _write_mapping(data: dict, path: tuple, doc: Document, lines: list[str]) -> None:
    pad = "  " * len(path)
    for key, value in data.items():
        here = (*path, key)
        if isinstance(value, dict) and value:
            lines.append(f"{pad}{_flow(key)}:  # {doc.key_loc(*here)}")
            _write_mapping(value, here, doc, lines)
        else:
            lines.append(f"{pad}{_flow(key)}: {_flow(value)}  # {doc.loc(*here)}")
