"""1. Runtime parity: the generated nn.Module against a hand-written one holding the same weights,
and against torch.fx.Interpreter running the generated module's traced graph. Times are this
process's CPU time per call, with torch on one thread (see common.interleaved).

Forward is timed in eval mode under torch.no_grad(); forward+backward in train mode, with the
sum of the output as the loss and the gradients reset in every call (the same work on all sides).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path

import torch
import torch.fx
from torch import nn

from . import handwritten
from .common import (
    BENCH_SPECS,
    SPECS,
    Result,
    calibrate,
    compile_to_module,
    fmt_seconds,
    interleaved,
    one_thread,
    paired_ratio,
    spread,
    temp_dir,
)

SECTION = "1. Runtime parity"
TARGET = 1.02
SEEDS = {
    "seed1_resnet_head": handwritten.ResNetHead,
    "seed2_conv_before_vgg": handwritten.ConvBeforeVGG,
    "seed3_alexnet_features": handwritten.AlexNetFeatures,
}
NOISE_NOTE = (
    "Within noise: at least a quarter of the rounds had the generated module as fast as the hand-written "
    "one or faster (lower quartile <= 1), and both run the same layers with the same weights. More rounds "
    "on a quieter machine would close it."
)
SLOWER_NOTE = (
    "The generated module was slower in most rounds (lower quartile > 1). Where the 'generated layers in "
    "a loop' row of the same model is near 1, the generated model's layers are as fast as the "
    "hand-written ones and the gap is the forward's code: each `self.<node id>` is an "
    "nn.Module.__getattr__ call after a failed instance lookup (about 1 us), which nn.Sequential's loop "
    "over its children avoids. It is a fixed cost per node, so it shows only with small layers (a "
    "64-layer chain of 256-wide Linear layers at batch 32). Closing it means generated code that reaches "
    "layers without __getattr__, e.g. a run of single-use layers emitted as one nn.Sequential, which "
    "would change the state-dict keys that are now the node ids."
)
LOOPED = "generated layers in a loop"


def mlp_shape(spec: Path) -> tuple[int, int]:
    """(Linear layers, width) of an MLP chain spec written by specgen.mlp."""
    from nncompile.spec import load

    loaded = load(spec)
    return sum(n.op == "Linear" for n in loaded.nodes), loaded.inputs[0].shape[0]


def build_pair(spec: Path, workdir: Path) -> tuple[nn.Module, nn.Module]:
    """The generated model of `spec` (no pretrained weights) and its hand-written twin."""
    module = compile_to_module(spec, workdir)
    from nncompile.spec import load

    cls = getattr(module, load(spec).name)
    generated = cls(pretrained=False) if "pretrained" in inspect.signature(cls).parameters else cls()
    hand = SEEDS[spec.stem]() if spec.stem in SEEDS else handwritten.mlp_chain(*mlp_shape(spec))
    handwritten.copy_weights(generated, hand)
    return generated, hand


def _forward(model: Callable) -> Callable[[torch.Tensor], object]:
    def run(x: torch.Tensor):
        with torch.no_grad():
            return model(x)

    return run


def _forward_backward(model: Callable, params: list[nn.Parameter]) -> Callable[[torch.Tensor], object]:
    def run(x: torch.Tensor):
        for p in params:
            p.grad = None
        model(x).sum().backward()

    return run


def bench_case(
    label: str,
    generated: nn.Module,
    hand: nn.Module,
    x: torch.Tensor,
    rounds: int,
    sample_s: float,
    chain: bool,
) -> list[Result]:
    """For a `chain` (layers applied one after another), the generated model's own layers are also
    called in a loop, as nn.Sequential does: that isolates the cost of the forward's code."""
    interpreter = torch.fx.Interpreter(torch.fx.symbolic_trace(generated))
    callers: dict[str, Callable] = {
        "generated": generated,
        "hand-written": hand,
        "fx.Interpreter": interpreter.run,
    }
    if chain:
        callers[LOOPED] = lambda x: _loop(generated, x)
    generated.eval(), hand.eval()
    with torch.no_grad():
        expected = hand(x)
        for name, model in callers.items():
            if not torch.allclose(model(x), expected, rtol=1e-4, atol=1e-5):
                raise AssertionError(f"{label}: {name} does not compute what the hand-written model does")
    comparisons = [("generated", "hand-written", TARGET), ("generated", "fx.Interpreter", None)]
    if chain:
        comparisons.append((LOOPED, "hand-written", None))
    results = []
    for mode in ("forward", "forward+backward"):
        train = mode != "forward"
        generated.train(train), hand.train(train)
        fns = {
            name: _forward_backward(model, list((hand if name == "hand-written" else generated).parameters()))
            if train
            else _forward(model)
            for name, model in callers.items()
        }
        calls = {name: (lambda fn=fn: fn(x)) for name, fn in fns.items()}
        inner = calibrate(calls["hand-written"], sample_s)
        samples = interleaved(calls, rounds, inner)
        med = {n: sorted(s)[len(s) // 2] for n, s in samples.items()}
        for num, den, target in comparisons:
            ratio, q1, q3 = paired_ratio(samples, num, den)
            results.append(
                Result(
                    SECTION,
                    f"{label}, {mode}: {num} / {den}",
                    ratio,
                    target,
                    f"{fmt_seconds(med[num])} / {fmt_seconds(med[den])} per call; {spread(q1, q3)}",
                    (NOISE_NOTE if q1 <= 1 else SLOWER_NOTE) if target else "",
                )
            )
    return results


def _loop(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    for layer in model.children():
        x = layer(x)
    return x


def run(
    batch: int = 2,
    image_size: int = 64,
    mlp_spec: Path = BENCH_SPECS / "mlp_chain64.yaml",
    mlp_batch: int = 32,
    seeds: tuple[str, ...] = tuple(SEEDS),
    rounds: int = 31,
    sample_s: float = 0.05,
) -> list[Result]:
    """Every seed in `seeds` on (batch, 3, image_size, image_size) images, and the MLP chain."""
    torch.manual_seed(0)
    results = []
    with temp_dir() as tmp, one_thread():
        for seed in seeds:
            generated, hand = build_pair(SPECS / f"{seed}.yaml", Path(tmp))
            x = torch.randn(batch, 3, image_size, image_size)
            label = f"{seed} ({batch}x3x{image_size}x{image_size})"
            results += bench_case(label, generated, hand, x, rounds, sample_s, chain=False)
        generated, hand = build_pair(mlp_spec, Path(tmp))
        layers, width = mlp_shape(mlp_spec)
        x = torch.randn(mlp_batch, width)
        label = f"{mlp_spec.stem} ({layers} Linear, {mlp_batch}x{width})"
        results += bench_case(label, generated, hand, x, rounds, sample_s, chain=True)
    return results
