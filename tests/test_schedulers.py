"""Learning-rate schedules over parameter groups at different rates (a backbone's `lr_mult` and
`lr_decay`, a node's `lr`, the head at `lr`, each with its no-decay twin).

For every scheduler a spec can name (`optim.spec_schedulers()`, so a new one is covered or this
test says what it needs), a short Lightning run keeps each group's rate within [its floor, its
peak] at every step, never 0, and every group follows one schedule scaled to its peak: floors
scale with the group as peaks do; and a schedule with a length, not given in the spec, spans the
trainer's run."""

import io
import math
import warnings

import pytest
import torch
from load_generated import compile_and_load
from nncompile.errors import NncompileError
from nncompile.runtime import schedules
from nncompile.training.recipes import optim
from task_helpers import batches
from task_helpers import trainer as quiet_trainer

LR = 1.0e-3
FLOOR = 1.0e-4  # above the backbone's deeper groups' peaks, below the others'
SPEC = """nncompile: 1
name: Groups
inputs:
  image: [3, 16, 16]
nodes:
  backbone:
    op: timm.test_resnet
    weights: null
    head: remove
    lr_mult: 0.05
    lr_decay: 0.5
  mid: {op: Linear, out_features: 8, lr: 0.01}
  fc: {op: Linear, out_features: 3}
outputs: {logits: fc}
task:
  kind: multiclass
  optimizer: {name: SGD, lr: 1.0e-3, weight_decay: 0.01}  # no-decay twins; cheap steps
"""
# Each scheduler's arguments in the table test: what it requires, its floor, and a setting that
# makes it move within a short run.
ARGS = {
    "StepLR": "step_size: 2",
    "MultiStepLR": "milestones: [2, 4]",
    "ConstantLR": "factor: 0.5",
    "LinearLR": "start_factor: 1.0, end_factor: 0.0",
    "ExponentialLR": "gamma: 0.5",
    "PolynomialLR": "",
    "CosineAnnealingLR": "eta_min: 1.0e-4",
    "ReduceLROnPlateau": "patience: 0, min_lr: 1.0e-4",
    "CyclicLR": "base_lr: 1.0e-4, step_size_up: 3",
    "CosineAnnealingWarmRestarts": "T_0: 4, eta_min: 1.0e-4",
    "OneCycleLR": "",
    "cosine_with_warmup": "warmup_steps: 2, eta_min: 1.0e-4",
}
# A warm-up starts below the floor it later decays to (start_factor x lr by default).
WARMUP_START = {"cosine_with_warmup": 0.01 * LR}
EPOCHS, STEPS = 6, 2  # more epochs than torch's default length of 5


def images(g, batch):
    return torch.randn(batch, 3, 16, 16, generator=g), torch.randint(0, 3, (batch,), generator=g)


def spec(scheduler: str | None) -> str:
    return SPEC + (f"  scheduler: {{{scheduler}}}\n" if scheduler else "")


def scheduler_spec(name: str) -> str:
    return ", ".join(part for part in (f"name: {name}", ARGS[name]) if part)


def record_rates(module_cls, tmp_path, epochs: int = EPOCHS, steps: int = STEPS):
    """Each training step's rate of every group, and the fitted module."""
    seen = []

    class Record(module_cls):
        def on_train_batch_start(self, batch, batch_idx):
            seen.append([group["lr"] for group in self.trainer.optimizers[0].param_groups])

        # The rates are under test, not the model: a loss that costs nothing, and a validation
        # loss that never improves, so ReduceLROnPlateau reduces the rate after every epoch.
        def training_step(self, batch, batch_idx):
            return next(self.parameters()).sum() * 0.0

        def validation_step(self, batch, batch_idx):
            self.log("val_loss", 1.0)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = Record()
        trainer = quiet_trainer(max_epochs=epochs, default_root_dir=tmp_path, num_sanity_val_steps=0)
        trainer.fit(module, batches(images, steps), batches(images, 1, seed=1))
    assert len(seen) == epochs * steps
    return seen, module


@pytest.fixture(scope="module")
def peaks(tmp_path_factory) -> list[float]:
    """Each group's own rate: what the optimizer starts with before any schedule."""
    _, module = compile_and_load(spec(None), tmp_path_factory.mktemp("peaks"))
    rates = [g["lr"] for g in module.GroupsModule().configure_optimizers().param_groups]
    assert min(rates) < FLOOR < LR < max(rates)  # groups on both sides of the spec's floor
    return rates


def test_every_scheduler_is_in_the_table():
    assert sorted(optim.spec_schedulers()) == sorted(ARGS)


@pytest.mark.parametrize("name", optim.spec_schedulers())
def test_every_group_stays_inside_its_own_range(name, peaks, tmp_path):
    _, module = compile_and_load(spec(scheduler_spec(name)), tmp_path)
    rates, fitted = record_rates(module.GroupsModule, tmp_path)
    config = fitted.trainer.lr_scheduler_configs[0]
    if name in optim.TOTAL_ARG:  # its length, not in the spec, is the run's (torch keeps the argument)
        expected = EPOCHS * STEPS if config.interval == "step" else EPOCHS
        assert getattr(config.scheduler, optim.TOTAL_ARG[name]) == expected
    floor = FLOOR if name in optim.FLOOR_ARG else 0.0
    floor = min(floor, WARMUP_START.get(name, LR))
    for step, step_rates in enumerate(rates):
        fractions = [rate / peak for rate, peak in zip(step_rates, peaks, strict=True)]
        for rate, peak in zip(step_rates, peaks, strict=True):
            low = floor * peak / LR
            assert low * (1 - 1e-6) <= rate <= peak * (1 + 1e-6), (step, rate, low, peak)
            assert rate > 0, step
        # one schedule, scaled to each group's peak
        assert fractions == pytest.approx([fractions[0]] * len(fractions), rel=1e-6), step
    assert min(step_rates[0] for step_rates in rates) < peaks[0] * (1 - 1e-6)  # the schedule moved


def test_polynomial_decays_per_step_over_the_whole_run(peaks, tmp_path):
    """torchvision's segmentation reference: poly, per iteration, over every iteration. torch's
    default (5 iterations, stepped per epoch) left every epoch after the fifth at a rate of 0."""
    _, module = compile_and_load(spec("name: PolynomialLR, power: 0.9"), tmp_path)
    rates, fitted = record_rates(module.GroupsModule, tmp_path)
    assert fitted.trainer.lr_scheduler_configs[0].interval == "step"
    total = EPOCHS * STEPS
    head = [step_rates[peaks.index(LR)] for step_rates in rates]  # a group at `lr`
    assert head == pytest.approx([LR * (1 - step / total) ** 0.9 for step in range(total)], rel=1e-6)


def test_a_floor_scales_with_each_group(peaks, tmp_path):
    """CyclicLR's `base_lr` is the floor at `lr`: a group at 0.05 x lr starts at 0.05 x base_lr,
    not at base_lr, above its own peak."""
    _, module = compile_and_load(spec("name: CyclicLR, base_lr: 1.0e-4, step_size_up: 3"), tmp_path)
    rates, _ = record_rates(module.GroupsModule, tmp_path)
    assert rates[0] == pytest.approx([FLOOR * peak / LR for peak in peaks], rel=1e-6)
    assert rates[3] == pytest.approx(peaks, rel=1e-6)  # the top of the cycle, after 3 steps


def test_cosine_ends_each_group_near_its_own_floor(peaks, tmp_path):
    """`eta_min` is the floor at `lr`: a group whose peak is below it still anneals downwards."""
    _, module = compile_and_load(spec("name: CosineAnnealingLR, eta_min: 1.0e-4, interval: step"), tmp_path)
    rates, _ = record_rates(module.GroupsModule, tmp_path)
    total = EPOCHS * STEPS
    cosine = (1 + math.cos(math.pi * (total - 1) / total)) / 2
    floors = [FLOOR * peak / LR for peak in peaks]
    expected = [floor + (peak - floor) * cosine for peak, floor in zip(peaks, floors, strict=True)]
    assert rates[-1] == pytest.approx(expected, rel=1e-6)


def test_a_schedule_stepped_every_other_epoch_spans_the_run(tmp_path):
    """`frequency: 2` steps the scheduler every other epoch: its length is half the epochs,
    rounded up, so it does not end before the run does."""
    _, module = compile_and_load(spec("name: PolynomialLR, interval: epoch, frequency: 2"), tmp_path)
    rates, fitted = record_rates(module.GroupsModule, tmp_path, epochs=5)
    assert fitted.trainer.lr_scheduler_configs[0].scheduler.total_iters == 3
    assert all(rate > 0 for step_rates in rates for rate in step_rates)


@pytest.mark.parametrize(
    "scheduler, message",
    [
        ("name: CosineAnnealingLR, eta_min: 0.01", r"`eta_min` \(0.01\) is above the optimizer's `lr`"),
        ("name: cosine_with_warmup, warmup_steps: 2, eta_min: 0.01", r"`eta_min` \(0.01\) is above"),
        ("name: CyclicLR, base_lr: [1.0e-4, 1.0e-5]", r"CyclicLR's `base_lr` must be one number"),
        ("name: ReduceLROnPlateau, min_lr: -1.0", r"`min_lr` must be one number >= 0"),
    ],
)
def test_a_floor_is_one_number_at_most_lr(scheduler, message, tmp_path):
    with pytest.raises(NncompileError, match=message):
        compile_and_load(spec(scheduler), tmp_path)


def two_groups() -> torch.optim.Optimizer:
    weights = [torch.nn.Parameter(torch.zeros(1)) for _ in range(2)]
    return torch.optim.SGD([{"params": [weights[0]], "lr": 0.1}, {"params": [weights[1]], "lr": 0.02}])


def run(scheduler, steps: int) -> list[list[float]]:
    """Each step's rates, group by group: [[group 0's rates], [group 1's rates]]."""
    rates = []
    for _ in range(steps):
        rates.append(scheduler.get_last_lr())
        scheduler.optimizer.step()
        scheduler.step()
    return [list(group) for group in zip(*rates, strict=True)]


PER_GROUP = [
    (schedules.CosineAnnealingPerGroupLR, torch.optim.lr_scheduler.CosineAnnealingLR, {"T_max": 7}),
    (
        schedules.CosineWarmRestartsPerGroup,
        torch.optim.lr_scheduler.CosineAnnealingWarmRestarts,
        {"T_0": 3, "T_mult": 2},
    ),
]


@pytest.mark.parametrize("per_group, torch_cls, kwargs", PER_GROUP)
def test_per_group_cosines_are_torchs_with_one_floor_each(per_group, torch_cls, kwargs):
    """With the same floor for every group they are torch's class; with floors scaled to each
    group, each group is torch's schedule run alone with its own floor."""
    ours = run(per_group(two_groups(), **kwargs, eta_min=[0.01, 0.01]), 20)
    torchs = run(torch_cls(two_groups(), **kwargs, eta_min=0.01), 20)
    for group in range(2):
        assert ours[group] == pytest.approx(torchs[group], rel=1e-9)
    scaled = run(per_group(two_groups(), **kwargs, eta_min=[0.01, 0.002]), 20)
    alone = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.02)
    assert scaled[1] == pytest.approx(run(torch_cls(alone, **kwargs, eta_min=0.002), 20)[0], rel=1e-9)


@pytest.mark.parametrize("per_group, torch_cls, kwargs", PER_GROUP)
def test_per_group_cosines_resume_from_their_state(per_group, torch_cls, kwargs):
    """A checkpoint holds the scheduler's state_dict (the floors with it), loaded with
    weights_only as Lightning does: the resumed schedule continues where it stopped."""
    optimizer = two_groups()
    whole = run(per_group(optimizer, **kwargs, eta_min=[0.01, 0.002]), 12)
    optimizer = two_groups()
    first = per_group(optimizer, **kwargs, eta_min=[0.01, 0.002])
    run(first, 5)
    buffer = io.BytesIO()
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": first.state_dict()}, buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    resumed_optimizer = two_groups()
    resumed_optimizer.load_state_dict(state["optimizer"])
    resumed = per_group(resumed_optimizer, **kwargs, eta_min=[0.0, 0.0])
    resumed.load_state_dict(state["scheduler"])
    for group, rates in enumerate(run(resumed, 7)):
        assert rates == pytest.approx(whole[group][5:], rel=1e-9)
