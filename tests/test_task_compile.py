"""torch.compile and a generated module: the model's forward compiles as one graph, and
Lightning's documented way, `trainer.fit(torch.compile(module))`, trains and logs what the eager
module logs (the step that checks targets, updates metrics and logs runs eagerly). Compiling
costs tens of seconds on a small CPU, so these tests use one small model (specs/tabular_mlp.yaml)."""

import pytest
import torch
from conftest import ROOT
from task_helpers import batches, load_generated, trainer

SPEC = ROOT / "specs" / "tabular_mlp.yaml"
pytestmark = pytest.mark.torch_compile


def rows(g, b):
    return torch.randn(b, 32, generator=g), torch.randn(b, 1, generator=g)


def test_model_forward_is_one_graph(tmp_path):
    lm = load_generated(SPEC, tmp_path).TabularMLPModule()
    lm.model.eval()  # dropout off, so the two forwards compute the same thing
    x = torch.randn(8, 32)
    explained = torch._dynamo.explain(lm.model)(x)
    assert explained.graph_break_count == 0, explained.break_reasons
    assert explained.graph_count == 1
    compiled = torch.compile(lm.model, fullgraph=True, backend="eager")  # fullgraph: a break raises
    torch.testing.assert_close(compiled(x), lm.model(x))


def test_trainer_fits_a_compiled_module_and_logs_what_eager_logs(tmp_path):
    from torch._dynamo.utils import counters

    module = load_generated(SPEC, tmp_path)
    logged = {}
    for compiled in (False, True):
        torch.manual_seed(0)
        lm = module.TabularMLPModule()
        lm.model.drop1.p = 0.0  # compiled code draws other random numbers than eager code
        before = [p.detach().clone() for p in lm.parameters()]
        torch._dynamo.reset()
        counters.clear()
        t = trainer(max_steps=3)
        t.fit(torch.compile(lm) if compiled else lm, train_dataloaders=batches(rows, 3, batch=8))
        assert t.global_step == 3
        assert any(not torch.equal(a, b) for a, b in zip(before, lm.parameters(), strict=True))
        logged[compiled] = {k: float(v) for k, v in t.callback_metrics.items()}
        if compiled:
            assert counters["stats"]["unique_graphs"] >= 1  # forward ran compiled
            breaks = sum(counters["graph_break"].values())
            assert breaks <= 1, dict(counters["graph_break"])  # only the eager step (compiler.disable)
    assert {"train_loss", "train_loss_step", "train_mae"} <= set(logged[True])
    for key, value in logged[False].items():
        assert abs(logged[True][key] - value) <= 1e-4 * max(1.0, abs(value)), key
