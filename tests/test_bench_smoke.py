"""Every benchmark of bench/ runs at a tiny size and yields its figures (no timing is asserted:
`make bench` measures; this only keeps the benchmarks working)."""

import math
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import (  # noqa: E402
    big_backbone,
    compile_latency,
    handwritten,
    inference_memory,
    runtime_parity,
    scale,
    specgen,
    training_step,
)
from bench.common import Result  # noqa: E402
from bench.run import report  # noqa: E402


def check(results: list[Result], count: int) -> None:
    assert len(results) == count
    for r in results:
        assert math.isfinite(r.value) and r.value > 0, r
        assert r.detail


@pytest.fixture
def tiny_mlp(tmp_path) -> Path:
    path = tmp_path / "tiny_mlp.yaml"
    path.write_text(specgen.mlp(3, 8))
    return path


def test_runtime_parity(tiny_mlp):
    results = runtime_parity.run(
        batch=2,
        image_size=32,
        mlp_spec=tiny_mlp,
        mlp_batch=2,
        seeds=("seed1_resnet_head",),
        rounds=2,
        sample_s=0.001,
    )
    # per mode (forward, forward+backward): the seed against hand-written and fx.Interpreter; the
    # MLP chain also its layers in a loop
    check(results, 10)
    assert [r.target for r in results[:2]] == [runtime_parity.TARGET, None]


def test_inference_memory(tiny_mlp):
    check(inference_memory.run(mlp_spec=tiny_mlp, batch=64, rounds=1), 1)


class KeepsEverything(nn.Module):
    """A forward that holds every intermediate until it returns: what the meter must catch."""

    def __init__(self, chain: nn.Sequential) -> None:
        super().__init__()
        self.chain = chain

    def forward(self, x):
        values = [x]
        for layer in self.chain:
            values.append(layer(values[-1]))
        return values[-1]


def test_memory_meter_sees_intermediates_kept_alive():
    chain = handwritten.mlp_chain(8, 256)
    x = torch.randn(256, 256)
    lean = [inference_memory.peak_activation_bytes(chain, x) for _ in range(3)][-1]
    hoarding = [inference_memory.peak_activation_bytes(KeepsEverything(chain), x) for _ in range(3)][-1]
    one = x.numel() * x.element_size()
    assert lean < 3 * one
    assert hoarding >= 10 * one  # 15 intermediates held


def test_handwritten_twin_computes_the_generated_function(tiny_mlp, tmp_path):
    generated, hand = runtime_parity.build_pair(tiny_mlp, tmp_path)
    x = torch.randn(2, 8)
    assert torch.equal(generated(x), hand(x))


def test_compile_latency():
    results = compile_latency.run(
        cases=(("tabular_mlp", "import torch", 1.5),), rounds=1, meta_floor=False, many=2
    )
    check(results, 2)  # the spec against its import, and 2 specs in one process against one spec
    assert [r.target for r in results] == [1.5, compile_latency.MANY_TARGET]


def test_scale():
    results = scale.run(sizes=(5, 10), rounds=1)
    check(results, 4)  # per kind: 10 / 5 nodes, and seconds for 10
    assert [r.unit for r in results] == ["x", "s", "x", "s"]


def test_big_backbone():
    check(big_backbone.run(builder="alexnet", rounds=1), 1)


def test_training_step():
    check(training_step.run(steps=6, warmup=2, rounds=2), 1)


def test_expert_module_wraps_the_generated_model(tmp_path):
    generated, hand = training_step.build_pair(tmp_path)
    x = torch.randn(4, 32)
    generated.eval(), hand.eval()
    assert torch.equal(generated(x), hand(x))


def test_report_marks_misses_and_explains_them():
    results = [
        Result("S", "fast", 1.0, 1.02, "a / b"),
        Result("S", "slow", 1.5, 1.02, "c / d", miss_note="why it is slow"),
        Result("S", "shown", 0.5, None, "e / f"),
    ]
    text = report(
        results, __import__("datetime").datetime(2026, 1, 1), 60.0, (0.1, 0.1, 0.1), (0.2, 0.2, 0.2)
    )
    assert "**1 of 2 targets met.**" in text
    assert "| slow | 1.500 | <= 1.02 | **no** |" in text
    assert "Missed (slow): why it is slow" in text
    assert "(context)" in text
