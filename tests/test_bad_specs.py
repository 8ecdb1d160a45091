"""The bad-spec corpus: every file in tests/bad_specs/ is a broken spec that the CLI must reject
with exit status 2, a message located at `file:line:col` (naming the node where there is one),
no traceback, no output file, in bounded time.

Each file says what its message must contain in `# expect: <text>` comment lines; at least one
of them is `<file name>:<line>:`, the spec line the error must point at.
"""

import ast
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT

BAD = ROOT / "tests" / "bad_specs"
CORPUS = sorted(BAD.glob("*.yaml"))
SEEDS = (
    "seed1_fc_in_features_after_identity.yaml",  # fc.in_features read after fc became Identity
    "seed2_64_channels_into_vgg_stem.yaml",  # a 64-channel conv in front of VGG-16's 3-channel stem
    "seed3_pool_alexnet_logits.yaml",  # AdaptiveAvgPool2d on AlexNet's (B, 1000) logits
)
# Generous: the first spec that runs a torch op on the meta device pays torch's warm-up.
TIME_LIMIT_S = 30


def expectations(path: Path) -> list[str]:
    lines = path.read_bytes().decode("utf-8", "replace").splitlines()
    return [line.removeprefix("# expect: ") for line in lines if line.startswith("# expect: ")]


def test_corpus_is_complete():
    assert len(CORPUS) >= 40
    for name in SEEDS:
        assert (BAD / name).exists(), name
    for path in CORPUS:
        expected = expectations(path)
        assert any(re.fullmatch(re.escape(path.name) + r":\d+:", e) for e in expected), (
            f"{path.name} needs an `# expect: {path.name}:<line>:` line"
        )


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.stem)
def test_bad_spec_is_rejected(path, run_cli, tmp_path):
    out = tmp_path / "model.py"
    start = time.monotonic()
    code, stdout, stderr = run_cli(path, "-o", out)
    elapsed = time.monotonic() - start
    assert code == 2, stderr
    assert stdout == ""
    assert "Traceback" not in stderr
    first_error = next(line for line in stderr.splitlines() if ": error: " in line)
    assert re.match(re.escape(str(path)) + r":\d+:\d+: error: ", first_error), first_error
    for text in expectations(path):
        assert text in stderr, f"expected {text!r} in:\n{stderr}"
    assert list(tmp_path.iterdir()) == [], "a rejected spec must not write any file"
    assert elapsed < TIME_LIMIT_S, f"{path.name} took {elapsed:.1f}s"


@pytest.mark.parametrize("path", SEEDS)
def test_seed_errors_name_node_and_line(path, run_cli, tmp_path):
    """The seed article's three broken examples: the node and the line of the mistake."""
    code, _, stderr = run_cli(BAD / path, "-o", tmp_path / "model.py")
    assert code == 2
    node = re.search(r"expect: node '(\w+)'", (BAD / path).read_text()).group(1)
    assert f"error: node '{node}': " in stderr


@pytest.mark.parametrize("text", ["", "\n\n", "   \n", "# only a comment\n", "---\n"])
def test_empty_spec(text, run_cli, write_spec, tmp_path):
    spec = write_spec(text)
    code, _, stderr = run_cli(spec, "-o", tmp_path / "model.py")
    assert code == 2
    assert f"{spec}:1:1: error: the spec is empty" in stderr
    assert not (tmp_path / "model.py").exists()


@pytest.mark.parametrize(("where", "why"), [("nope.yaml", "No such file"), (".", "is a directory")])
def test_unreadable_spec_path(where, why, run_cli, tmp_path):
    code, _, stderr = run_cli(tmp_path / where, "-o", tmp_path / "model.py")
    assert code == 2
    assert "cannot read spec" in stderr and why in stderr and "Traceback" not in stderr


@pytest.mark.parametrize("source", ["/dev/zero", "huge"])
def test_endless_or_huge_spec_is_refused_unread(source, run_cli, tmp_path):
    if source == "huge":
        source = tmp_path / "huge.yaml"
        source.write_text("# padding\n" * 1_000_000)
    start = time.monotonic()
    code, _, stderr = run_cli(source, "-o", tmp_path / "model.py")
    assert code == 2 and "the spec is larger than" in stderr
    assert time.monotonic() - start < TIME_LIMIT_S


def test_megabyte_string_value(run_cli, write_spec, tmp_path):
    """A huge unknown op name: the did-you-mean search and the message stay fast."""
    spec = write_spec(
        "nncompile: 1\nname: Net\ninputs:\n  x: [16]\nnodes:\n"
        f"  fc: {{op: {'Linear' * 200_000}, out_features: 10}}\ntask:\n  kind: classification\n"
    )
    start = time.monotonic()
    code, _, stderr = run_cli(spec, "-o", tmp_path / "model.py")
    assert code == 2 and "unknown op" in stderr
    assert time.monotonic() - start < TIME_LIMIT_S


# A real process for a few: the exit status, and no traceback on the real stderr.
SUBPROCESS_CASES = ("yaml_python_tag", "alias_recursive", "deep_flow_nesting", "absurd_linear_features")


@pytest.mark.parametrize("stem", SUBPROCESS_CASES)
def test_bad_spec_in_subprocess(stem, tmp_path):
    out = tmp_path / "model.py"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "compiler"), os.environ.get("PYTHONPATH", "")]),
    }
    run = subprocess.run(
        [sys.executable, "-m", "nncompile", str(BAD / f"{stem}.yaml"), "-o", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr
    assert re.match(re.escape(str(BAD / stem)) + r"\.yaml:\d+:\d+: error: ", run.stderr)
    assert not out.exists()


def ten_thousand_node_spec(n: int = 10_000) -> str:
    lines = ["nncompile: 1", "name: Deep", "inputs:", "  x: [16]", "nodes:"]
    for i in range(n):
        op = "{op: Linear, out_features: 16}" if i % 2 == 0 else "{op: ReLU}"
        lines.append(f"  n{i}: {op}")
    lines += ["task:", "  kind: regression"]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    "form", ["{op: Linear, out_features: 16}", "ReLU", "\n    op: Linear\n    out_features: 16"]
)
def test_spec_over_the_node_limit_is_refused_at_once(form, run_cli, write_spec, tmp_path):
    """One limit for every form of a node (shorthand, flow or block mapping), refused while the
    YAML is read, at the first node over it, with its real cause (not "an alias bomb")."""
    from nncompile.limits import MAX_NODES

    head = ["nncompile: 1", "name: Deep", "inputs:", "  x: [16]", "nodes:"]
    spec = write_spec("\n".join(head + [f"  n{i}: {form}" for i in range(MAX_NODES + 1)]) + "\n")
    start = time.monotonic()
    code, _, stderr = run_cli(spec, "-o", tmp_path / "model.py")
    assert code == 2
    line = len(head) + 1 + MAX_NODES * (form.count("\n") + 1)
    assert f"{spec}:{line}:3: error: the spec has more than {MAX_NODES:,} nodes" in stderr
    assert "alias bomb" not in stderr
    assert time.monotonic() - start < TIME_LIMIT_S
    assert not (tmp_path / "model.py").exists()


def test_blocks_count_towards_the_node_limit(run_cli, write_spec, tmp_path):
    from nncompile.limits import MAX_NODES

    inner = "\n".join(f"      b{i}: ReLU" for i in range(MAX_NODES))
    spec = write_spec(
        f"nncompile: 1\nname: Net\ninputs:\n  x: [16]\nblocks:\n  B:\n    nodes:\n{inner}\n"
        "nodes:\n  relu: ReLU\ntask:\n  kind: regression\n"
    )
    code, _, stderr = run_cli(spec, "-o", tmp_path / "model.py")
    assert code == 2 and f"{spec}:{MAX_NODES + 9}:3: error: the spec has more than" in stderr


@pytest.mark.parametrize(("outer", "refused"), [(100, False), (101, True)])
def test_expanded_node_count_is_exact_at_the_limit(outer, refused):
    """10 nodes x `repeat: $n` (10) x `repeat: 100` is exactly MAX_NODES: allowed; one more copy
    is not. Counted from the block structure alone (nothing is built)."""
    from nncompile import spec
    from nncompile.errors import SpecError
    from nncompile.graph import blocks
    from nncompile.limits import MAX_NODES

    inner = ", ".join(f"r{i}: ReLU" for i in range(10))
    loaded = spec.loads(
        "nncompile: 1\nname: Net\ninputs:\n  x: [4]\nblocks:\n"
        f"  A:\n    nodes: {{{inner}}}\n"
        "  B:\n    params: {n: 1}\n    nodes: {a: {op: A, repeat: $n}}\n"
        f"nodes:\n  big: {{op: B, n: 10, repeat: {outer}}}\ntask:\n  kind: regression\n"
    )
    assert MAX_NODES == 10 * 10 * 100
    if refused:
        with pytest.raises(SpecError, match="more than 10,000 nodes once its blocks are expanded"):
            blocks.check(loaded)
    else:
        blocks.check(loaded)


def test_many_values_without_aliases_are_not_called_an_alias_bomb(run_cli, write_spec, tmp_path):
    from nncompile.limits import MAX_YAML_VALUES

    dims = ", ".join(["1"] * MAX_YAML_VALUES)
    spec = write_spec(f"nncompile: 1\nname: Net\ninputs:\n  x: [{dims}]\nnodes:\n  r: ReLU\n")
    code, _, stderr = run_cli(spec, "-o", tmp_path / "model.py")
    assert code == 2
    assert f"values, more than the limit of {MAX_YAML_VALUES:,}" in stderr and "the spec holds" in stderr
    assert "alias bomb" not in stderr


def test_ten_thousand_node_spec_compiles(run_cli, write_spec, tmp_path):
    """Valid, just large: it compiles (a timing budget, not a benchmark; see bench/)."""
    spec = write_spec(ten_thousand_node_spec())
    out = tmp_path / "model.py"
    start = time.monotonic()
    code, _, stderr = run_cli(spec, "-o", out)
    elapsed = time.monotonic() - start
    assert code == 0, stderr
    source = out.read_text()
    ast.parse(source)
    assert "self.n9999 = nn.ReLU()" in source
    assert elapsed < 300, f"10,000 nodes took {elapsed:.0f}s"


def test_spec_taking_every_temporary_name_compiles(run_cli, write_spec, tmp_path):
    """Inputs and nodes named x, h, out and value: forward() needs another temporary name."""
    spec = write_spec(
        """\
nncompile: 1
name: Net
inputs:
  x: [16]
  h: [16]
nodes:
  out: {op: Linear, in: x, out_features: 16}
  value: {op: Linear, in: h, out_features: 16}
  joined: {op: add, in: [out, value]}
  fc: {op: Linear, out_features: 10}
task:
  kind: classification
"""
    )
    out = tmp_path / "model.py"
    code, _, stderr = run_cli(spec, "-o", out)
    assert code == 0, stderr
    assert "x0 = out + x0" in out.read_text() and "return self.fc(x0)" in out.read_text()
