"""Reviewable output: a one-argument change to one node changes only that node's lines of the
generated file and the spec hash in its header; inferred arguments say where they came from."""

import difflib
import re
import shutil

import pytest
from conftest import ROOT, SPECS
from nncompile import compile_spec

# (spec, node, text in the spec, its replacement): argument changes that keep every shape.
EDITS = [
    ("tabular_mlp", "drop1", "drop1: {op: Dropout, p: 0.1}", "drop1: {op: Dropout, p: 0.25}"),
    ("tabular_mlp", "norm1", "norm1: {op: BatchNorm1d}", "norm1: {op: BatchNorm1d, momentum: 0.01}"),
    ("tabular_mlp", "act2", "act2: {op: GELU}", "act2: {op: GELU, approximate: tanh}"),
    (
        "two_tower_concat",
        "conv",
        "kernel_size: 3, padding: 1}",
        "kernel_size: 3, padding: 1, padding_mode: reflect}",
    ),
    ("seed2_conv_before_vgg", "project", "kernel_size: 1}", "kernel_size: 1, stride: 1}"),
]


def changed_line_numbers(before: list[str], after: list[str]) -> tuple[set[int], set[int]]:
    """The indices of the lines removed from `before` and added in `after`."""
    removed, added = set(), set()
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, before, after, autojunk=False).get_opcodes():
        if tag != "equal":
            removed |= set(range(i1, i2))
            added |= set(range(j1, j2))
    return removed, added


def node_lines(lines: list[str], node: str) -> set[int]:
    """The lines of `self.<node> = ...` in __init__ (wrapped continuation lines included), the
    comment above it, and the forward() statement calling it."""
    owned = set()
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith(f"self.{node} = ") or f"= self.{node}(" in stripped:
            indent = len(line) - len(line.lstrip())
            end = i + 1
            while end < len(lines) and (
                len(lines[end]) - len(lines[end].lstrip()) > indent or lines[end].strip() == ")"
            ):
                end += 1
            start = i - 1 if lines[i - 1].strip().startswith("#") else i
            owned |= set(range(start, end))
    return owned


@pytest.mark.parametrize("stem, node, old, new", EDITS, ids=[f"{e[0]}-{e[1]}" for e in EDITS])
def test_one_argument_changes_only_its_node_and_the_hash(stem, node, old, new, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "specs").mkdir()
    spec = tmp_path / "specs" / f"{stem}.yaml"
    shutil.copy(ROOT / "specs" / f"{stem}.yaml", spec)
    before = compile_spec(f"specs/{stem}.yaml", f"generated/{stem}.py").source.splitlines()
    text = spec.read_text()
    assert text.count(old) == 1
    spec.write_text(text.replace(old, new))
    after = compile_spec(f"specs/{stem}.yaml", f"generated/{stem}.py").source.splitlines()

    removed, added = changed_line_numbers(before, after)
    hash_before = {i for i in removed if before[i].startswith("Spec sha256: ")}
    hash_after = {i for i in added if after[i].startswith("Spec sha256: ")}
    assert len(hash_before) == len(hash_after) == 1
    assert removed - hash_before and added - hash_after, "the edit changed nothing in the code"
    assert removed - hash_before <= node_lines(before, node), [before[i] for i in sorted(removed)]
    assert added - hash_after <= node_lines(after, node), [after[i] for i in sorted(added)]


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_inferred_arguments_carry_a_comment(spec, monkeypatch):
    monkeypatch.chdir(ROOT)
    compiled = compile_spec(spec.relative_to(ROOT))
    lines = compiled.source.splitlines()
    for node_id, result in compiled.shaped.nodes.items():
        inferred = [arg for arg in result.built.inferred if arg != "batch_first"]
        if not inferred:
            continue
        start = next(i for i, line in enumerate(lines) if line.strip().startswith(f"self.{node_id} = "))
        comment = lines[start - 1].strip()
        one = r"# .* inferred from \S+ \(B(, [^,]+)*\)"  # dims or symbols
        per_input = r"# .* inferred from the channels of \S+ \(\d+\)(, \S+ \(\d+\))*"  # a list
        assert re.fullmatch(one, comment) or re.fullmatch(per_input, comment), comment
        statement = "\n".join(lines[start : start + 4])
        for arg in inferred:
            assert arg in comment
            value = result.built.inferred[arg]
            assert f"{arg}={tuple(value) if isinstance(value, list) else value}" in statement
