"""The one error family of the compiler: every user-facing problem carries a location and a hint."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Loc:
    """A position in a spec file (1-based line and column)."""

    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


SOURCE_WIDTH = 100  # characters of the offending source line shown under a message


@dataclass
class Diagnostic:
    """One problem found in a spec."""

    message: str
    loc: Loc | None = None
    node: str | None = None
    hint: str | None = None
    severity: str = "error"

    def render(self, source_lines: list[str] | None = None) -> str:
        where = f"{self.loc}: " if self.loc else ""
        who = f"node {self.node!r}: " if self.node else ""  # repr: a hostile name prints escaped
        out = [f"{where}{self.severity}: {who}{self.message}"]
        if self.loc and source_lines and 0 < self.loc.line <= len(source_lines):
            text = source_lines[self.loc.line - 1].rstrip("\n").expandtabs(1)
            start = max(0, self.loc.col - 1 - SOURCE_WIDTH // 2)  # a window on a very long line
            text = text[start : start + SOURCE_WIDTH]
            out.append("    " + "".join(c if c.isprintable() else "?" for c in text))
            out.append("    " + " " * (self.loc.col - 1 - start) + "^")
        if self.hint:
            out.append(f"hint: {self.hint}")
        return "\n".join(out)


class NncompileError(Exception):
    """Base of every error the CLI reports without a traceback (exit status 2)."""

    def __init__(self, diagnostics: list[Diagnostic]):
        self.diagnostics = diagnostics
        super().__init__("\n".join(d.render() for d in diagnostics))

    def render(self, source_lines: list[str] | None = None) -> str:
        return "\n".join(d.render(source_lines) for d in self.diagnostics)


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
    """Gathers independent errors so one run reports several of them."""

    limit: int = 20
    diagnostics: list[Diagnostic] = field(default_factory=list)

    def add(self, err: NncompileError) -> None:
        self.diagnostics.extend(err.diagnostics)
        if len(self.diagnostics) >= self.limit:
            self.raise_if_any()

    def raise_if_any(self) -> None:
        if self.diagnostics:
            raise NncompileError(self.diagnostics[: self.limit])


def did_you_mean(word: str, choices) -> str | None:
    """A hint naming the closest candidates to a misspelt word, or None."""
    import difflib

    if len(word) > 200:  # nothing that long is a misspelling; difflib would take seconds
        return None
    close = difflib.get_close_matches(word, sorted(set(choices)), n=3, cutoff=0.6)
    if not close:
        return None
    return "did you mean " + " or ".join(f"'{c}'" for c in close) + "?"
