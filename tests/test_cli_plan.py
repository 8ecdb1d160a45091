"""`nncompile plan` (issue 26): the table's groups are the optimizer's. For every spec in specs/,
the generated LightningModule's configure_optimizers is built (random weights, a stand-in
trainer for the schedule's length) and each of its parameter groups is compared with the
table's row at the same place: the same parameters in the same order, the same learning rate
and the same weight decay, the same LoRA adapters (node, r, alpha and layers, read off the
generated layers), the same state at each unfreeze boundary (the generated gradual-unfreezing
callback's fraction: 0 where the table says frozen), and the schedule's arguments are those of
the scheduler it builds."""

import re
import types
import warnings
from collections import Counter

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


class Group(types.SimpleNamespace):
    """One group of the generated module's optimizer: `names` (relative to the model, as the plan
    gives them), `lr` (its base rate), `weight_decay`, `size`, `adapters` (Counter of (node, r,
    alpha) -> its LoRA layers), `unfreeze` (its part, or None)."""


def lightning_module(result, folder):
    """The generated LightningModule, built with random weights."""
    module = load_source(result.source, folder)
    cls = getattr(module, f"{result.spec.name}Module")
    if result.spec.task.kind == "custom":
        cls = with_training_step(cls)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lightning = cls(**({"pretrained": False} if result.ir.model.pretrained else {}))
        # what a schedule reads of the run's length
        lightning._trainer = types.SimpleNamespace(max_epochs=10, estimated_stepping_batches=100)
        return lightning


def configure(lightning):
    """(the optimizer, the scheduler or None) of the generated configure_optimizers."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        configured = lightning.configure_optimizers()
    if isinstance(configured, dict):
        return configured["optimizer"], configured["lr_scheduler"]["scheduler"]
    return configured, None


def optimizer_groups(lightning, optimizer) -> list[Group]:
    name_of = {id(p): n.removeprefix("model.") for n, p in lightning.named_parameters()}
    lora_of = {  # a LoRA layer's lora_A -> (node, r, alpha)
        id(m.lora_A): (n.split(".")[1], m.lora_A.shape[0], round(m.scale * m.lora_A.shape[0], 6))
        for n, m in lightning.named_modules()
        if hasattr(m, "lora_A")
    }
    return [
        Group(
            names=[name_of[id(p)] for p in group["params"]],
            # a scheduler rewrites "lr"; the group's own rate is where it keeps the start
            lr=group.get("max_lr", group.get("initial_lr", group["lr"])),
            weight_decay=group["weight_decay"],
            size=sum(p.numel() for p in group["params"]),
            adapters=Counter(lora_of[id(p)] for p in group["params"] if id(p) in lora_of),
            unfreeze=group.get("unfreeze"),
        )
        for group in optimizer.param_groups
    ]


def unfreezing_fraction(lightning, part: str, boundary: str) -> float:
    """How far the generated gradual-unfreezing callback has unfrozen `part` at the first of many
    batches at `boundary` ("start", "epoch 2", "step 500"; 0 in the other unit)."""
    (callback,) = [c for c in lightning.configure_callbacks() if type(c).__name__ == "GradualUnfreezing"]
    unit, _, at = boundary.partition(" ")
    epoch, step = (int(at), 0) if unit == "epoch" else (0, int(at)) if unit == "step" else (0, 0)
    trainer = types.SimpleNamespace(current_epoch=epoch, global_step=step, num_training_batches=1000)
    callback.on_train_batch_start(trainer, lightning, None, 0)
    return callback.fractions[part]


def schedule_is_the_schedulers(plan, scheduler) -> None:
    """The shown arguments that the scheduler (or one it chains) keeps under their own names have
    the shown values."""
    if scheduler is None:
        assert plan.schedule_args == {}
        return
    run = {"<the run's steps>": 100, "<the run's epochs>": 10}  # the stand-in trainer's
    kept = [scheduler, *getattr(scheduler, "_schedulers", [])]
    shown = {k: run.get(v, v) for k, v in plan.schedule_args.items() if any(hasattr(s, k) for s in kept)}
    assert shown, plan.schedule
    assert {k: next(getattr(s, k) for s in kept if hasattr(s, k)) for k in shown} == shown


def boundaries_are_the_callbacks(plan, groups: list[Group], lightning) -> None:
    """Each group's part, and its state at each boundary as the unfreezing callback sees it."""
    for group, row in zip(groups, plan.rows, strict=True):
        assert group.unfreeze == row.unfreeze
        if row.unfreeze is None:
            assert set(row.at) == {f"{row.lr:.4g}"}
            continue
        for boundary, cell in zip(plan.boundaries, row.at, strict=True):
            fraction = unfreezing_fraction(lightning, row.unfreeze, boundary)
            rate, _, warmup = cell.partition(" (warm-up ")
            assert rate == ("frozen" if fraction == 0 else f"{row.lr:.4g}"), (row.unfreeze, boundary)
            assert bool(warmup) == (0 < fraction < 1), (row.unfreeze, boundary)


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_plan_is_the_optimizers_groups(spec, folder):
    result = compile_spec(spec)
    plan = training_plan(result)
    lightning = lightning_module(result, folder)
    optimizer, scheduler = configure(lightning)
    groups = optimizer_groups(lightning, optimizer)
    table = [(list(row.members), pytest.approx(row.lr), pytest.approx(row.weight_decay)) for row in plan.rows]
    assert [(g.names, g.lr, g.weight_decay) for g in groups] == table
    assert [g.size for g in groups] == [row.params for row in plan.rows]
    adapters = [Counter() for _ in plan.rows]
    for counter, row in zip(adapters, plan.rows, strict=True):
        for share in row.adapters:
            counter[share.node, share.r, round(share.alpha, 6)] += share.layers
    assert [g.adapters for g in groups] == adapters
    schedule_is_the_schedulers(plan, scheduler)
    boundaries_are_the_callbacks(plan, groups, lightning)


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
