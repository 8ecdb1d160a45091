"""The one error family of the compiler: every user-facing problem carries a location and a hint."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Loc:
    """A position in a spec file (1-based line and column). Line 0: a place that is not a file
    position (a `--set` option), shown by its name alone."""

    file: str
    line: int
    col: int
    # the specs that extend `file`, from the one compiled down: the value was inherited through them
    via: tuple[str, ...] = ()

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}" if self.line else self.file

    def chain(self) -> str:
        """`child.yaml -> base.yaml:12:5`: how an inherited value reached the compiled spec."""
        return " -> ".join((*self.via, str(self)))


SOURCE_WIDTH = 100  # characters of the offending source line shown under a message


def printable(text: object, replacement: str | None = None) -> str:
    """`text` with every character that is not printable (newline, CR, ESC, BEL, NUL, a
    zero-width or line-separator character) escaped as Python writes it (`\\x1b`), or replaced by
    `replacement`: spec-derived text then cannot move the cursor, clear the terminal or forge a
    line of output, in a message or in a comment of the generated code."""
    return "".join(
        c if c.isprintable() else replacement or c.encode("unicode_escape").decode("ascii") for c in str(text)
    )


@dataclass
class Diagnostic:
    """One problem found in a spec."""

    message: str
    loc: Loc | None = None
    node: str | None = None
    hint: str | None = None
    severity: str = "error"

    def render(self, source_lines: list[str] | None = None) -> str:
        """`file:line:col: error: what`, the spec line with a caret under the column, `hint: how`.

        The spec line is read from `loc.file` unless `source_lines` is given."""
        where = f"{printable(self.loc)}: " if self.loc else ""
        # repr: a hostile name prints escaped
        who = f"node {self.node!r}: " if self.node and f"node '{self.node}'" not in self.message else ""
        out = [f"{where}{self.severity}: {who}{printable(self.message)}"]
        if self.loc and self.loc.line and source_lines is None:
            source_lines = _read_lines(self.loc.file)
        if self.loc and source_lines and 0 < self.loc.line <= len(source_lines):
            text = source_lines[self.loc.line - 1].rstrip("\n").expandtabs(1)
            # a window around the column on a very long line
            start = 0 if len(text) <= SOURCE_WIDTH else max(0, self.loc.col - 1 - SOURCE_WIDTH // 2)
            text = text[start : start + SOURCE_WIDTH]
            out.append("    " + printable(text, "?"))  # one column per character: the caret lines up
            out.append("    " + " " * (self.loc.col - 1 - start) + "^")
        if self.loc and self.loc.via:
            out.append(f"note: inherited along {printable(self.loc.chain())}")
        if self.hint:
            out.append(f"hint: {printable(self.hint)}")
        return "\n".join(out)


def _read_lines(path: str) -> list[str] | None:
    from .limits import MAX_SPEC_BYTES

    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_SPEC_BYTES + 1)  # bounded: the spec may be /dev/zero
        return None if len(raw) > MAX_SPEC_BYTES else raw.decode("utf-8").splitlines()
    except (OSError, UnicodeDecodeError, ValueError):
        return None


class NncompileError(Exception):
    """Base of every error the CLI reports without a traceback (exit status 2)."""

    def __init__(self, diagnostics: list[Diagnostic], truncated: bool = False):
        self.diagnostics = diagnostics
        self.truncated = truncated  # more errors were found than the collector's limit
        super().__init__("\n".join(d.render([]) for d in diagnostics))

    def render(self, source_lines: list[str] | None = None) -> str:
        """Every diagnostic in the order of the spec's lines, then a count when there are several."""
        ordered = sorted(
            self.diagnostics, key=lambda d: (d.loc is None, d.loc and (d.loc.file, d.loc.line, d.loc.col))
        )
        read: dict[str, list[str]] = {}  # each spec file once, however many errors it has
        for d in ordered:
            if source_lines is None and d.loc and d.loc.line and d.loc.file not in read:
                read[d.loc.file] = _read_lines(d.loc.file) or []
        parts = [
            d.render(source_lines if source_lines is not None else read.get(d.loc.file) if d.loc else None)
            for d in ordered
        ]
        errors = sum(d.severity == "error" for d in self.diagnostics)
        if self.truncated:
            parts.append(f"stopped after {errors} errors; fix these and run again for the rest")
        elif errors > 1:
            parts.append(f"{errors} errors")
        return "\n".join(parts)


class SpecError(NncompileError):
    """A problem in the user's spec, located in the spec file."""

    def __init__(
        self,
        message: str,
        loc: Loc | None = None,
        *,
        node: str | None = None,
        hint: str | None = None,
    ):
        super().__init__([Diagnostic(message, loc, node, hint)])


class OutputError(NncompileError):
    """A problem with the output path (for example a user file we refuse to overwrite)."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__([Diagnostic(message, hint=hint)])


@dataclass
class Collector:
    """Gathers independent errors so one run reports several of them, up to `limit`."""

    limit: int = 20
    diagnostics: list[Diagnostic] = field(default_factory=list)

    def add(self, err: NncompileError) -> None:
        self.diagnostics.extend(err.diagnostics)
        if len(self.diagnostics) > self.limit or err.truncated:
            raise NncompileError(self.diagnostics[: self.limit], truncated=True)

    def raise_if_any(self) -> None:
        if self.diagnostics:
            raise NncompileError(self.diagnostics)


def first_line(exc: Exception) -> str:
    """An exception's message cut to its first line (its type name when it has none), for a
    SpecError that reports what a library or the user's code raised."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def did_you_mean(word: str, choices) -> str | None:
    """A hint naming the closest candidates to a misspelt word, or None.

    Case is ignored (`relu` finds `ReLU`), and a dotted candidate also matches on its last part
    (`resnet18` finds `torchvision.resnet18`)."""
    ranked = closest(word, choices)
    if not ranked:
        return None
    return "did you mean " + " or ".join(f"'{c}'" for c in ranked) + "?" + lookalike(str(word), ranked[0])


def lookalike(word: str, choice: str) -> str:
    """Where `word` and `choice` differ in characters outside ASCII (a Cyrillic 'с' for a Latin
    'c', which print the same), the code points of the differing characters; else ''."""
    import difflib
    import unicodedata

    def named(chars: str) -> str:
        return " ".join(f"U+{ord(c):04X} {unicodedata.name(c, 'unnamed')}" for c in chars) or "nothing"

    diffs = [
        (word[i1:i2], choice[j1:j2])
        for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, word, choice).get_opcodes()
        if tag != "equal"
    ]
    if not any(not (a + b).isascii() for a, b in diffs):
        return ""
    where = "; ".join(f"{named(a)} where '{printable(choice)}' has {named(b)}" for a, b in diffs)
    return f" ('{printable(word)}' has {where})"


def closest(word: str, choices, n: int = 3, cutoff: float = 0.6) -> list[str]:
    import difflib

    word = str(word).lower()
    if len(word) > 200:  # nothing that long is a misspelling; difflib would take seconds
        return []
    scored = []
    for choice in sorted(set(choices)):
        low = choice.lower()
        matcher = difflib.SequenceMatcher(None, word, low)
        score = matcher.ratio() if matcher.real_quick_ratio() >= cutoff else 0.0
        tail = low.rpartition(".")[2]
        if tail != low:
            score = max(score, difflib.SequenceMatcher(None, word, tail).ratio() - 0.01)
        if score >= cutoff:
            scored.append((-score, _number_distance(word, low), choice))
    return [choice for *_, choice in sorted(scored)[:n]]


def _number_distance(word: str, choice: str) -> float:
    """How far apart the numbers that end two names are (`layer5`, `layer4`: 1), so that among
    equally close names the neighbour comes first; infinite unless both end in one."""
    import re

    a, b = re.search(r"\d+$", word), re.search(r"\d+$", choice)
    return abs(int(a.group()) - int(b.group())) if a and b and len(a.group()) < 10 else float("inf")


def did_you_mean_op(op: str, registry_names) -> str | None:
    """Did-you-mean for an unknown `op:` over the op registry and torchvision's models; timm's
    models too (when timm is installed) for a `timm.` op or when nothing else is close, since
    importing timm takes seconds."""
    for prefix in ("torch.nn.", "nn."):
        op = op.removeprefix(prefix)
    candidates = list(registry_names)
    try:
        import torchvision

        candidates += [f"torchvision.{m}" for m in torchvision.models.list_models(module=torchvision.models)]
    except ImportError:
        pass
    hint = did_you_mean(op, candidates)
    if hint is None or op.startswith("timm."):
        try:
            import timm
        except ImportError:
            return hint
        hint = did_you_mean(op, candidates + [f"timm.{m}" for m in timm.list_models()])
    return hint


class InternalError(Exception):
    """A stage's output broke one of its invariants (the stages' `lint.py`): a bug in nncompile,
    never the spec's fault, so it is not an NncompileError and the CLI shows its traceback."""

    def __init__(self, stage: str, message: str, node: str | None = None):
        where = f" at node '{node}'" if node else ""
        super().__init__(
            f"internal error after the {stage} stage{where}: {printable(message)} "
            "(a bug in nncompile: please report it with the spec)"
        )
        self.stage, self.node = stage, node
