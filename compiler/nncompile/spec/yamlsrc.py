"""Read YAML safely into plain values plus a map from each value's key path to its source location.

PyYAML keeps the last of two equal keys silently; here that is an error, because two nodes with
one name would otherwise make one of them vanish. Only plain values are built (no tags that make
objects), nesting and alias expansion are bounded (limits.py), and a recursive alias is an error.
The count of nodes (`nodes:` entries, the model's and its blocks') is bounded while the text is
read, so a spec of 100,000 nodes is refused after reading its first 10,000, whichever form they take.
Numbers are read as YAML 1.2 and Python read them (`3e-4`, `1E5`, `-.5`), not as YAML 1.1 strings.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import yaml

from ..errors import Loc, SpecError
from ..limits import MAX_NODES, MAX_YAML_DEPTH, MAX_YAML_VALUES

Path = tuple  # a key path into the document: ("nodes", "fc1", "out_features")


@dataclass
class Document:
    """A parsed YAML file: plain values, where each came from, and the text (for carets)."""

    data: object
    locs: dict[Path, Loc]
    file: str
    text: str

    def loc(self, *path) -> Loc:
        """The location of the value at `path`, or of its nearest located parent."""
        path = tuple(path)
        while path:
            if path in self.locs:
                return self.locs[path]
            path = path[:-1]
        return self.locs.get((), Loc(self.file, 1, 1))

    def key_loc(self, *path) -> Loc:
        """The location of the key that names the value at `path`."""
        return self.locs.get(("<key>", *path)) or self.loc(*path)


def _mark_loc(file: str, mark) -> Loc:
    return Loc(file, mark.line + 1, mark.column + 1)


def parse(text: str, file: str) -> Document:
    if "\0" in text:
        line = text[: text.index("\0")].count("\n") + 1
        raise SpecError(
            "the spec contains a NUL character", Loc(file, line, 1), hint="save the file as UTF-8 text"
        )
    loader = _Loader(text, file)
    try:
        root = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        loc = _mark_loc(file, mark) if mark else Loc(file, 1, 1)
        hint = "YAML indents with spaces only" if "\t" in text else "check the YAML syntax"
        raise SpecError(f"invalid YAML: {exc.problem or exc}", loc, hint=hint) from None
    except yaml.YAMLError as exc:
        raise SpecError(f"invalid YAML: {exc}", Loc(file, 1, 1)) from None
    finally:
        loader.dispose()
    if root is None or (root.tag == "tag:yaml.org,2002:null" and root.value in ("", "~")):  # `---`
        raise SpecError(
            "the spec is empty",
            Loc(file, 1, 1),
            hint="start from an example in specs/ or docs/spec-language.md",
        )
    values, written = _expanded_size(root)
    if values > MAX_YAML_VALUES and values > written:
        raise SpecError(
            f"the spec expands to {values:,} values, more than the limit of {MAX_YAML_VALUES:,}, "
            f"from {written:,} written out (a YAML alias bomb?)",
            _mark_loc(file, root.start_mark),
            hint="write the values out instead of nesting aliases (*name)",
        )
    if values > MAX_YAML_VALUES:
        raise SpecError(
            f"the spec holds {values:,} values, more than the limit of {MAX_YAML_VALUES:,}",
            _mark_loc(file, root.start_mark),
            hint="is this the right file? the limit is in nncompile/limits.py",
        )
    builder = _Builder(file)
    data = builder.value(root, ())
    return Document(data, builder.locs, file, text)


try:  # libyaml's event parser is about five times faster than PyYAML's on a large spec
    from yaml._yaml import CParser as _Events
except ImportError:  # pragma: no cover - PyYAML built without libyaml

    class _Events(yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser):
        def __init__(self, stream):
            yaml.reader.Reader.__init__(self, stream)
            yaml.scanner.Scanner.__init__(self)
            yaml.parser.Parser.__init__(self)


class _Loader(yaml.composer.Composer, _Events, yaml.resolver.Resolver):
    """PyYAML's composer (in Python, so its recursion can be bounded) over an event parser."""

    # its own copy of the table, so the float forms added below leave PyYAML's loaders as they are
    yaml_implicit_resolvers = {
        first: list(resolvers) for first, resolvers in yaml.resolver.Resolver.yaml_implicit_resolvers.items()
    }

    def __init__(self, text: str, file: str):
        _Events.__init__(self, text)
        yaml.composer.Composer.__init__(self)
        yaml.resolver.Resolver.__init__(self)
        self.file = file
        self.depth = 0
        self.path: list = []  # the keys (or list indexes) above the value being composed
        self.nodes = 0  # entries of `nodes:` and of `blocks: {B: {nodes: ...}}` so far

    def compose_node(self, parent, index):
        self.depth += 1
        self.path.append(index.value if isinstance(index, yaml.ScalarNode) else index)
        try:
            if self.depth > MAX_YAML_DEPTH:
                raise SpecError(
                    f"the spec nests more than {MAX_YAML_DEPTH} levels deep",
                    _mark_loc(self.file, self.peek_event().start_mark),
                    hint="specs nest a few levels: nodes -> node -> argument",
                )
            if index is None and isinstance(parent, yaml.MappingNode) and self.is_node_key():
                self.nodes += 1
                if self.nodes > MAX_NODES:
                    raise SpecError(
                        f"the spec has more than {MAX_NODES:,} nodes (under `nodes:` and in its blocks)",
                        _mark_loc(self.file, self.peek_event().start_mark),
                        hint="a model has at most this many nodes; the limit is in nncompile/limits.py",
                    )
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1
            self.path.pop()

    def is_node_key(self) -> bool:
        """Whether the key being composed names a node: `nodes: {<here>: ...}` at the top level
        or in a block (path[0] is the document's, path[-1] the key's own)."""
        above = self.path[1:-1]
        return above == ["nodes"] or (len(above) == 3 and above[0] == "blocks" and above[2] == "nodes")


FLOAT_TAG = "tag:yaml.org,2002:float"
# The floats YAML 1.2 and Python read that YAML 1.1 reads as strings, as learning rates copied from
# a paper or a Hydra config are written. Tried after YAML 1.1's own float and int forms, which
# they do not overlap.
_Loader.add_implicit_resolver(
    FLOAT_TAG,
    re.compile(
        r"""^(?:
            [-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)[eE][-+]?[0-9]+  # 3e-4, 1E5, 1.5e3, .5e3
          | [-+]\.[0-9][0-9_]*  # -.5
        )$""",
        re.X,
    ),
    list("-+.0123456789"),
)


def reads_as_number(text: str) -> bool:
    """Whether `text`, written without quotes, is read as a number: a string that does is one the
    user quoted."""
    resolvers = _Loader.yaml_implicit_resolvers.get(text[:1], [])
    tag = next((tag for tag, regexp in resolvers if regexp.match(text)), None)
    return tag in (FLOAT_TAG, "tag:yaml.org,2002:int")


def _expanded_size(root) -> tuple[int, int]:
    """How many values the document holds once aliases are expanded, counted without expanding
    them (each distinct node once), so an alias bomb is refused before any work is done; and how
    many are written out (distinct)."""
    size: dict[int, int] = {}
    seen: set[int] = set()
    stack = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        children = _children(node)
        if children_done:
            # a child without a size is an alias to an enclosing value, reported by _Builder
            size[id(node)] = 1 + sum(size.get(id(c), 0) for c in children)
        elif id(node) not in seen:
            seen.add(id(node))
            stack.append((node, True))
            stack.extend((c, False) for c in children if id(c) not in seen)
    return size[id(root)], len(seen)


def _children(node) -> list:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return node.value
    return []


class _Builder:
    def __init__(self, file: str):
        self.file = file
        self.locs: dict[Path, Loc] = {}
        self.open: set[int] = set()  # ids of the collections being built, to catch `&a [*a]`
        self.scalars = yaml.constructor.SafeConstructor()

    def value(self, node, path: Path):
        loc = _mark_loc(self.file, node.start_mark)
        if len(path) > MAX_YAML_DEPTH:  # aliases can nest deeper than the text does
            raise SpecError(f"the spec nests more than {MAX_YAML_DEPTH} levels deep", loc)
        self.locs[path] = loc
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node, loc)
        if id(node) in self.open:
            raise SpecError(
                "a YAML alias refers to a value that contains it (a recursive structure)",
                loc,
                hint="a spec must be a tree: remove the alias (*name) inside its own anchor (&name)",
            )
        self.open.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return self.mapping(node, path)
            if node.tag != "tag:yaml.org,2002:seq":
                self.bad_tag(node)
            return [self.value(item, (*path, i)) for i, item in enumerate(node.value)]
        finally:
            self.open.discard(id(node))

    def mapping(self, node, path: Path) -> dict:
        if node.tag != "tag:yaml.org,2002:map":
            self.bad_tag(node)
        out: dict = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise SpecError(
                    "YAML merge keys (<<) are not supported",
                    _mark_loc(self.file, key_node.start_mark),
                    hint="write the keys out; use `blocks:` for reuse",
                )
            if not isinstance(key_node, yaml.ScalarNode):
                raise SpecError(
                    "a mapping key must be a plain string", _mark_loc(self.file, key_node.start_mark)
                )
            key = self.value(key_node, (*path, "<key>"))
            if not isinstance(key, str | int) or isinstance(key, bool):
                raise SpecError(
                    f"a mapping key must be a string, not {key!r}",
                    _mark_loc(self.file, key_node.start_mark),
                    hint="quote the key",
                )
            key = str(key)
            key_loc = _mark_loc(self.file, key_node.start_mark)
            if key in out:
                first = self.locs[("<key>", *path, key)]
                raise SpecError(
                    f"duplicate key '{key}' (first defined at line {first.line})",
                    key_loc,
                    hint="each key may appear once; rename one of them",
                )
            self.locs[("<key>", *path, key)] = key_loc
            out[key] = self.value(value_node, (*path, key))
        self.locs.pop((*path, "<key>"), None)
        return out

    def scalar(self, node, loc: Loc):
        try:
            value = self.scalars.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError:
            self.bad_tag(node)
        except Exception:  # noqa: BLE001 - e.g. `!!int abc`: PyYAML's own converters raise anything
            raise SpecError(
                f"{node.value!r} is not a valid {node.tag.rpartition(':')[2]}",
                loc,
                hint="remove the '!!' tag and write a plain value",
            ) from None
        if isinstance(value, float) and not math.isfinite(value):
            raise SpecError(
                f"{node.value!r} is not a finite number",
                loc,
                hint="spec numbers are finite: NaN and infinity make no learning rate, weight or size",
            )
        if isinstance(value, int) and not -(2**63) <= value < 2**63:
            raise SpecError(
                f"integer {value} does not fit in 64 bits",
                loc,
                hint="torch sizes and arguments are 64-bit integers",
            )
        return value

    def bad_tag(self, node):
        raise SpecError(
            f"YAML tag '{node.tag}' is not allowed in a spec",
            _mark_loc(self.file, node.start_mark),
            hint="specs hold plain values only: remove the '!' tag",
        )
