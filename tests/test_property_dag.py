"""Property tests: random valid DAG specs compile and the generated module's real output shapes
equal the compiler's predictions; random (mostly invalid) specs raise a spec error, nothing else."""

import math

import torch
import yaml
from graph_helpers import run_source, shapes_of
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nncompile import emit, graph, plan, shapes, spec
from nncompile.errors import NncompileError

SETTINGS = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


def compile_text(text: str):
    loaded = spec.loads(text, "<random>")
    shaped = shapes.propagate(graph.build(loaded))
    return loaded, shaped, emit.render(plan.plan(shaped, "random.yaml", "random.py"))


# --- valid DAGs: the generator tracks each value's shape (batch dim left out) to pick valid ops ---


def _unary_choices(shape: tuple[int, ...]) -> list[tuple[dict, tuple[int, ...]]]:
    """(node body without `in`, output shape) for the ops that accept a value of this shape."""
    out = [
        ({"op": "ReLU"}, shape),
        ({"op": "Tanh"}, shape),
        ({"op": "LayerNorm"}, shape),
        ({"op": "softmax", "dim": -1}, shape),
        ({"op": "Linear", "out_features": 3}, (*shape[:-1], 3)),
        ({"op": "unsqueeze", "dim": 1}, (1, *shape)),
        ({"op": "flatten"}, (math.prod(shape),)),
    ]
    if math.prod(shape) % 2 == 0:
        out.append(({"op": "reshape", "shape": [-1, 2]}, (math.prod(shape) // 2, 2)))
    if len(shape) >= 2:
        out += [
            ({"op": "transpose", "dim0": 1, "dim1": 2}, (shape[1], shape[0], *shape[2:])),
            ({"op": "mean", "dim": 1}, shape[1:]),
            ({"op": "max", "dim": -1, "keepdim": True}, (*shape[:-1], 1)),
            ({"op": "select", "dim": 1, "index": -1}, shape[1:]),
        ]
    if len(shape) == 2:
        out.append(({"op": "Conv1d", "out_channels": 4, "kernel_size": 1}, (4, shape[1])))
    return out


# a block the random DAGs may use: a Linear to `c` features, a norm, and a residual
DENSE = {
    "params": ["c"],
    "nodes": {
        "fc": {"op": "Linear", "out_features": "$c"},
        "norm": "LayerNorm",
        "act": {"op": "Tanh"},
        "res": {"op": "add", "in": ["act", "fc"]},
    },
}


@st.composite
def valid_specs(draw):
    dim = st.integers(1, 5)
    values: dict[str, tuple[int, ...]] = {}
    inputs = {}
    for name in draw(st.sampled_from([["a"], ["a", "b"]])):
        shape = tuple(draw(st.lists(dim, min_size=1, max_size=2)))
        inputs[name] = list(shape)
        values[name] = shape
    nodes = {}
    for k in range(draw(st.integers(1, 7))):
        node_id = f"n{k}"
        names = sorted(values)
        kind = draw(st.sampled_from(["unary", "unary", "merge", "concat", "chunk", "block"]))
        same = [(p, q) for p in names for q in names if p < q and values[p] == values[q]]
        if kind == "merge" and same:
            left, right = draw(st.sampled_from(same))
            op = draw(st.sampled_from(["add", "mul", "sub", "stack"]))
            nodes[node_id] = {"op": op, "in": [left, right]}
            values[node_id] = (2, *values[left]) if op == "stack" else values[left]
            continue
        joinable = [(p, q) for p in names for q in names if p != q and values[p][1:] == values[q][1:]]
        if kind == "concat" and joinable:
            left, right = draw(st.sampled_from(joinable))
            nodes[node_id] = {"op": "concat", "in": [left, right]}
            values[node_id] = (values[left][0] + values[right][0], *values[left][1:])
            continue
        source = draw(st.sampled_from(names))
        if kind == "block":
            width, repeat = draw(st.integers(1, 4)), draw(st.integers(1, 3))
            nodes[node_id] = {"op": "Dense", "in": source, "c": width, "repeat": repeat}
            values[node_id] = (*values[source][:-1], width)
            continue
        if kind == "chunk" and values[source][-1] % 2 == 0:
            nodes[node_id] = {"op": "chunk", "in": source, "chunks": 2, "dim": -1}
            half = (*values[source][:-1], values[source][-1] // 2)
            port = draw(st.sampled_from([0, 1]))
            nodes[f"{node_id}p"] = {"op": "ReLU", "in": f"{node_id}.{port}"}
            values[f"{node_id}p"] = half
            continue
        body, shape = draw(st.sampled_from(_unary_choices(values[source])))
        nodes[node_id] = {**body, "in": source}
        values[node_id] = shape
    last = list(nodes)[-1]
    outputs = {"main": last}
    others = [n for n in nodes if n != last and "." not in n and nodes[n]["op"] != "chunk"]
    if others and draw(st.booleans()):
        outputs["extra"] = draw(st.sampled_from(others))
    task = {"kind": "regression", **({"output": "main"} if len(outputs) > 1 else {})}
    document = {
        "nncompile": 1,
        "name": "RandomNet",
        "inputs": inputs,
        "nodes": nodes,
        "outputs": outputs,
        "task": task,
    }
    if any(body["op"] == "Dense" for body in nodes.values()):
        document["blocks"] = {"Dense": DENSE}
    return yaml.safe_dump(document, sort_keys=False)


@SETTINGS
@given(valid_specs())
def test_random_valid_dags_compile_and_real_shapes_match_predictions(text):
    loaded, shaped, source = compile_text(text)
    inputs = {i.name: torch.randn(3, *i.shape) for i in loaded.inputs}
    out, _ = run_source(source, loaded.name, inputs)
    predicted = {name: (3, *info.shape[1:]) for name, info in shaped.outputs.items()}
    seen = shapes_of(out)
    assert (seen if isinstance(seen, dict) else {"main": seen}) == predicted


# --- random specs, mostly invalid: only spec errors may come out ---------------------------------

OPS = [
    "ReLU", "Linear", "Conv2d", "LSTM", "concat", "add", "sub", "stack", "flatten", "reshape", "view",
    "permute", "transpose", "squeeze", "unsqueeze", "select", "slice", "chunk", "split", "softmax",
    "mean", "max", "matmul", "einsum", "interpolate", "pad", "Linaer", "torch.nn.Foo", "a.b.C", "B",
    "torchvision.nothing", "", "$c",
]  # fmt: skip
KEYS = ["dim", "dims", "shape", "out_features", "chunks", "index", "start", "end", "equation", "pad",
        "split_size", "dim0", "dim1", "scale_factor", "mode", "keepdim", "kernel_size", "repeat", "c"]  # fmt: skip
SCALARS = st.one_of(
    st.integers(-3, 9),
    st.sampled_from(["x", "$c", "$c * 2", "bij->bi", "nearest", "", "a.0"]),
    st.none(),
    st.booleans(),
)
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=4))


@st.composite
def random_specs(draw):
    nodes = {}
    names = ["x"]
    for k in range(draw(st.integers(1, 5))):
        body = {"op": draw(st.sampled_from(OPS))}
        if draw(st.booleans()):
            ref = st.one_of(
                st.sampled_from(names),
                st.sampled_from(["nowhere", f"{names[-1]}.0", f"{names[-1]}.port", "x."]),
            )
            body["in"] = draw(
                st.one_of(ref, st.lists(st.sampled_from(names), min_size=2, max_size=3), st.lists(ref))
            )
        for key in draw(st.lists(st.sampled_from(KEYS), max_size=3, unique=True)):
            body[key] = draw(VALUES)
        nodes[f"n{k}"] = body
        names.append(f"n{k}")
    good = st.lists(st.one_of(st.integers(1, 6), st.just("H")), min_size=1, max_size=3)
    bad = st.lists(st.one_of(st.integers(-1, 6), st.sampled_from(["H", "x"])), max_size=3)
    shape = draw(st.one_of(good, good, bad))
    document = {"nncompile": 1, "name": "RandomNet", "inputs": {"x": shape}, "nodes": nodes}
    if "H" in shape or not draw(st.integers(0, 4)):
        document["dims"] = {
            "H": draw(
                st.one_of(st.integers(2, 8), st.integers(-1, 8), st.lists(st.integers(1, 8), max_size=3))
            )
        }
    if draw(st.booleans()):
        block_nodes = {"fc": {"op": draw(st.sampled_from(OPS)), "out_features": draw(VALUES)}}
        document["blocks"] = {"B": {"params": {"c": draw(SCALARS)}, "nodes": block_nodes}}
    document["task"] = {"kind": draw(st.sampled_from(["regression", "classification", "nope"]))}
    return yaml.safe_dump(document, sort_keys=False)


@SETTINGS
@given(random_specs())
def test_random_specs_raise_only_spec_errors(text):
    try:
        compile_text(text)
    except NncompileError as err:
        assert err.diagnostics and all(d.message for d in err.diagnostics)
