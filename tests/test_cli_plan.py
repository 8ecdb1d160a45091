"""`nncompile plan` (issue 26): the table's groups are the optimizer's. For every spec in specs/,
the generated LightningModule's configure_optimizers is built (random weights, a stand-in
trainer for the schedule's length) and each of its parameter groups is compared with the
table's row at the same place: the same parameters in the same order, the same learning rate
and the same weight decay."""

import re
import types
import warnings

import pytest
from conftest import ROOT, SPECS
from load_generated import load_source
from nncompile import compile_spec
from nncompile.tools.training_plan import training_plan
from run_generated import with_training_step


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(ROOT)  # spec paths (a Hugging Face folder) are read from the repository root
        patch.syspath_prepend(str(ROOT / "specs"))  # user layers live next to the specs
        yield tmp_path_factory.mktemp("plan")


def optimizer_groups(result, folder) -> list[tuple[list[str], float, float, int]]:
    """(parameter names, base rate, weight decay, size) of each group of the generated module's
    optimizer, names relative to the model as the plan gives them."""
    module = load_source(result.source, folder)
    cls = getattr(module, f"{result.spec.name}Module")
    if result.spec.task.kind == "custom":
        cls = with_training_step(cls)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lightning = cls(**({"pretrained": False} if result.ir.model.pretrained else {}))
        # what a schedule reads of the run's length
        lightning._trainer = types.SimpleNamespace(max_epochs=10, estimated_stepping_batches=100)
        configured = lightning.configure_optimizers()
    optimizer = configured["optimizer"] if isinstance(configured, dict) else configured
    name_of = {id(p): n.removeprefix("model.") for n, p in lightning.named_parameters()}
    out = []
    for group in optimizer.param_groups:
        # a scheduler rewrites "lr"; the group's own rate is where it keeps the start
        base = group.get("max_lr", group.get("initial_lr", group["lr"]))
        names = [name_of[id(p)] for p in group["params"]]
        out.append((names, base, group["weight_decay"], sum(p.numel() for p in group["params"])))
    return out


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_plan_is_the_optimizers_groups(spec, folder):
    result = compile_spec(spec)
    plan = training_plan(result)
    groups = optimizer_groups(result, folder)
    table = [(list(row.members), pytest.approx(row.lr), pytest.approx(row.weight_decay)) for row in plan.rows]
    assert [g[:3] for g in groups] == table
    assert [g[3] for g in groups] == [row.params for row in plan.rows]


def test_plan_command_prints_each_boundary(run_cli):
    """specs/finetune_gradual_unfreeze.yaml: layer4 from epoch 2, layer3 from epoch 4, warm-up 1."""
    code, out, err = run_cli("plan", "specs/finetune_gradual_unfreeze.yaml")
    assert code == 0, err
    cells = {line.split("  ")[0]: re.split(r"\s{2,}", line) for line in out.splitlines()}
    assert cells["#"][4:7] == ["lr @ start", "lr @ epoch 2", "lr @ epoch 4"]
    assert cells["0"][1] == "resnet: layer3"
    assert cells["0"][4:7] == ["frozen", "frozen", "0.00049 (warm-up 1 epoch)"]  # 1e-3 * 0.7**2
    assert cells["2"][1] == "resnet: layer4"
    assert cells["2"][4:7] == ["frozen", "0.0007 (warm-up 1 epoch)", "0.0007"]
    assert "EMA: decay 0.999: every weight is averaged" in out
