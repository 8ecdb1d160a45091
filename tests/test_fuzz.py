"""Fuzzing: hypothesis mutates valid specs, structurally and as text. Whatever comes out, the
compiler either writes a complete, parseable file or reports its own error (exit 2) and writes
nothing; it never raises anything else.

Only small torch-only specs are mutated, so each example costs milliseconds.
"""

import ast
import copy
import keyword

import yaml
from conftest import ROOT
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

BASES = [
    yaml.safe_load((ROOT / "specs" / name).read_text())
    for name in ("tabular_mlp.yaml", "two_tower_concat.yaml")
] + [
    yaml.safe_load(
        """
nncompile: 1
name: SeqNet
inputs:
  tokens: [12, 16]
nodes:
  norm: {op: LayerNorm}
  attn: {op: MultiheadAttention, num_heads: 4}
  pick: {op: Flatten, in: attn.0}
  skip: {op: Flatten, in: norm}
  joined: {op: add, in: [pick, skip]}
  head: {op: Linear, out_features: 3}
outputs: {logits: head}
task:
  kind: classification
  optimizer: {name: SGD, lr: 0.01, momentum: 0.9}
"""
    )
]
OPS = [
    "Linear",
    "nn.ReLU",
    "torch.nn.GELU",
    "Conv2d",
    "Conv1d",
    "Flatten",
    "BatchNorm1d",
    "LayerNorm",
    "Dropout",
    "AdaptiveAvgPool2d",
    "MaxPool2d",
    "Softmax",
    "Embedding",
    "Identity",
    "MultiheadAttention",
    "concat",
    "add",
    "Sequential",
    "os.system",
    "",
]
WORDS = [
    "op",
    "in",
    "out_features",
    "in_features",
    "kernel_size",
    "out_channels",
    "dim",
    "shape",
    "dtype",
    "kind",
    "loss",
    "optimizer",
    "name",
    "lr",
    "outputs",
    "forward",
    "self",
    "x",
    "fc1",
    "head",
    "image",
    "tabular",
    "flat.0",
    "head.1",
    "classification",
    "regression",
    "float16",
    "int64",
    'x"); pwned() #',
    '"""',
    "a\nb",
    "é",
    "\t",
    "lambda",
    "__class__",
    "a=b",
    "x\x1b[2J",
]
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 70),
    st.sampled_from([0, -1, 2**31, 10**12, 2**63 - 1]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(OPS + WORDS),
    st.text(max_size=8),
)
VALUES = st.one_of(
    SCALARS,
    st.lists(SCALARS, max_size=4),
    st.dictionaries(st.sampled_from(WORDS), SCALARS, max_size=3),
    st.fixed_dictionaries({"op": st.sampled_from(OPS)}, optional={"in": st.sampled_from(WORDS)}),
)
TEXT_NOISE = st.sampled_from(
    [":", "\t", "[", "]", "{", "}", "-", "&a", "*a", "!!int", "#", '"', "'", "\n", " ", "? "]
)


def all_paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from all_paths(item, (*prefix, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from all_paths(item, (*prefix, i))


def mutate(doc, data) -> None:
    """One change at a random place: a value of the same type (tweak) or any value (replace),
    a key deleted, renamed or added."""
    path = data.draw(st.sampled_from(list(all_paths(doc))))
    if not path:
        return
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    key = path[-1]
    action = data.draw(st.sampled_from(["tweak", "tweak", "replace", "delete", "rename", "add"]))
    old = parent[key]
    if action == "tweak" and isinstance(old, int) and not isinstance(old, bool):
        parent[key] = data.draw(st.integers(-2, 2 * old + 2) | st.sampled_from([0, 10**12]))
    elif action == "tweak" and isinstance(old, str):
        parent[key] = data.draw(st.sampled_from(OPS + WORDS))
    elif action in ("replace", "tweak"):
        parent[key] = data.draw(VALUES)
    elif action == "delete":
        del parent[key]
    elif action == "rename" and isinstance(parent, dict):
        new = data.draw(st.sampled_from(WORDS) | st.text(max_size=6))
        parent[new] = parent.pop(key)
    elif action == "add" and isinstance(parent, dict):
        parent[data.draw(st.sampled_from(WORDS))] = data.draw(VALUES)
    elif action == "add":
        parent.insert(key, data.draw(VALUES))


def mutate_text(text: str, data) -> str:
    """A few character-level edits: truncation, deletion, insertion, a duplicated line."""
    for _ in range(data.draw(st.integers(1, 3))):
        action = data.draw(st.sampled_from(["cut", "delete", "insert", "duplicate line"]))
        i = data.draw(st.integers(0, len(text)))
        if action == "cut":
            text = text[:i]
        elif action == "delete":
            text = text[:i] + text[i + data.draw(st.integers(1, 5)) :]
        elif action == "insert":
            text = text[:i] + data.draw(TEXT_NOISE) + text[i:]
        else:
            lines = text.splitlines(True)
            if lines:
                j = min(i, len(lines) - 1)
                lines.insert(j, lines[j])
            text = "".join(lines)
    return text


@settings(
    max_examples=500,
    deadline=None,
    derandomize=True,  # the same examples on every CI run; a failure is reproducible
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
@given(data=st.data())
def test_mutated_specs_compile_or_fail_cleanly(data, run_cli, tmp_path_factory):
    doc = copy.deepcopy(data.draw(st.sampled_from(BASES)))
    for _ in range(data.draw(st.integers(1, 3))):
        mutate(doc, data)
    text = yaml.safe_dump(doc, sort_keys=False, allow_unicode=data.draw(st.booleans()))
    if data.draw(st.booleans()):
        text = mutate_text(text, data)
    folder = tmp_path_factory.mktemp("fuzz")
    spec = folder / "spec.yaml"
    spec.write_text(text)
    out = folder / "model.py"

    code, _, err = run_cli(spec, "-o", out)  # anything but the compiler's own error propagates

    assert "Traceback" not in err
    assert all(line.isprintable() for line in err.split("\n")), err  # spec text is escaped
    event("compiled" if code == 0 else "rejected")
    if code == 0:
        ast.parse(out.read_text())
        assert sorted(p.name for p in folder.iterdir()) == ["model.py", "spec.yaml"]
    else:
        assert code == 2
        assert err.startswith(f"{spec}:") or ": error: " in err.splitlines()[0], err
        assert sorted(p.name for p in folder.iterdir()) == ["spec.yaml"]


# Names a user layer taking **kwargs is given: each becomes `name=` in the generated call, or an error.
NAMES = st.sampled_from(
    [
        "width",
        "depth_2",
        "lambda",
        "__class__",
        "_private",
        "a=b",
        "a=__import__('os').system('pwned'),b",
        "a\nb",
        "a b",
        "café",
        "1st",
        "x\x1b[2J",
    ]
) | st.text(max_size=8)


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(names=st.lists(NAMES, max_size=3, unique=True))
def test_fuzzed_keyword_names_become_arguments_or_errors(names, run_cli, tmp_path_factory):
    """Every keyword of the generated call is an argument name the spec gave; a name that is
    not a Python argument name is a located error, and nothing is written."""
    from nncompile.spec.keys import NodeKeys

    doc = {
        "nncompile": 1,
        "name": "KwNet",
        "inputs": {"x": [4]},
        "nodes": {"layer": {"op": "kwargs_layers.AnyArgs"}, "head": {"op": "Linear", "out_features": 2}},
        "task": {"kind": "classification"},
    }
    common = set(NodeKeys.key_names())
    names = [n for n in names if n not in common]
    doc["nodes"]["layer"].update(dict.fromkeys(names, 1))
    folder = tmp_path_factory.mktemp("fuzz")
    spec = folder / "spec.yaml"
    spec.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    out = folder / "model.py"

    code, _, err = run_cli(spec, "-o", out)

    def valid(name: str) -> bool:  # a name Python takes as `name=`, and no dunder
        return name.isascii() and name.isidentifier() and not keyword.iskeyword(name) and name[:2] != "__"

    assert "Traceback" not in err
    assert all(line.isprintable() for line in err.split("\n")), err
    if all(valid(n) for n in names):
        assert code == 0, err
        calls = [n for n in ast.walk(ast.parse(out.read_text())) if isinstance(n, ast.Call)]
        (call,) = [c for c in calls if ast.unparse(c.func) == "AnyArgs"]
        assert [k.arg for k in call.keywords] == names
    else:
        assert code == 2, err
        assert err.startswith(f"{spec}:"), err
        assert sorted(p.name for p in folder.iterdir()) == ["spec.yaml"]
