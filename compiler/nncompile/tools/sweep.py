"""`nncompile sweep`: one generated file per combination of grid values, and its manifest.

Each combination is a list of `--set path=value` options; the file is named after the spec and
the values so that a person can tell the files apart, and `sweep.json` maps each name to its
values (read as YAML, as `--set` reads them).
"""

from __future__ import annotations

import itertools
import json
import re

from ..spec import yamlsrc

Grid = list[tuple[str, list[str]]]  # (path, the values' texts) per --grid option


def split_values(text: str) -> list[str]:
    """`1e-3,3e-4` -> ["1e-3", "3e-4"]; a comma inside [...], {...} or quotes stays."""
    values, depth, quote, start = [], 0, None, 0
    for i, char in enumerate(text):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        elif char == "," and depth == 0:
            values.append(text[start:i].strip())
            start = i + 1
    values.append(text[start:].strip())
    return values


def plan_sweep(stem: str, grid: Grid) -> dict[str, list[tuple[str, str]]]:
    """File name -> the (path, value) pairs it is compiled with, one per combination, in order."""
    labels = _labels([path for path, _ in grid])
    combos = [
        list(zip([path for path, _ in grid], values, strict=True))
        for values in itertools.product(*(v for _, v in grid))
    ]
    names = [
        stem
        + "".join(f"__{label}_{_slug(text)}" for label, (_, text) in zip(labels, combo, strict=True))
        + ".py"
        for combo in combos
    ]
    if len(set(names)) < len(names):  # values that differ only in punctuation: number the files
        names = [f"{stem}__{i:03d}.py" for i in range(1, len(combos) + 1)]
    return dict(zip(names, combos, strict=True))


def _labels(paths: list[str]) -> list[str]:
    """Each path's last key, or the whole path where two paths end in the same key."""
    last = [path.rpartition(".")[2] for path in paths]
    return [_slug(key if last.count(key) == 1 else path) for key, path in zip(last, paths, strict=True)]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_") or "_"


def manifest(runs: dict[str, list[tuple[str, str]]]) -> str:
    """sweep.json: file name -> {path: value}."""
    values = {
        name: {path: yamlsrc.parse(text, "--grid").data for path, text in combo}
        for name, combo in runs.items()
    }
    return json.dumps(values, indent=2) + "\n"
