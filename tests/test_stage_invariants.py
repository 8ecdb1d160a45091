"""Each stage's invariant check (graph/lint.py, shapes/lint.py, emit/lint.py) accepts what the
stage makes and turns a slip in its output into an InternalError naming the node."""

import dataclasses
from pathlib import Path

import pytest
from nncompile import graph, shapes, spec
from nncompile.emit.lint import lint as emit_lint
from nncompile.errors import InternalError, NncompileError
from nncompile.graph.lint import lint as graph_lint
from nncompile.shapes.lint import lint as shapes_lint

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "specs" / "two_tower_concat.yaml"


@pytest.fixture(scope="module")
def stages():
    built = graph.build(spec.load(SPEC))
    return built, shapes.propagate(built)


def test_the_stages_outputs_pass_their_checks(stages):
    built, shaped = stages
    graph_lint(built)
    shapes_lint(shaped)
    emit_lint((ROOT / "generated" / "two_tower_concat.py").read_text(), {"TwoTower"})


def test_a_node_ordered_before_its_input_is_an_internal_error(stages):
    built, _ = stages
    order = list(reversed(built.order))
    with pytest.raises(InternalError, match=rf"after the build stage at node '{order[0]}': reads '"):
        graph_lint(dataclasses.replace(built, order=order))


def test_a_node_without_a_shape_is_an_internal_error(stages):
    _, shaped = stages
    last = shaped.graph.order[-1]
    nodes = {k: v for k, v in shaped.nodes.items() if k != last}
    with pytest.raises(
        InternalError, match=rf"after the shapes stage at node '{last}': has no shaped result"
    ):
        shapes_lint(dataclasses.replace(shaped, nodes=nodes))


MODEL = """
import torch
from torch import nn


class Model(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(2, 2)
        self.register_buffer("scale", torch.ones(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc(x) * self.scale
        del x
        {body}
"""


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("return h", None),
        ("return [v for v in (h, h)]", None),
        ("return x", "Model.forward reads 'x' before assigning it"),
        ("return self.head(h)", "Model.forward reads self.head, which __init__ never sets"),
        ("return h +", "does not parse"),
    ],
)
def test_generated_forward_reads_only_what_exists(body, message):
    source = MODEL.format(body=body)
    if message is None:
        emit_lint(source, {"Model"})
    else:
        with pytest.raises(InternalError, match=message):
            emit_lint(source, {"Model"})


def test_an_internal_error_is_not_a_spec_error():
    assert not issubclass(InternalError, NncompileError)
