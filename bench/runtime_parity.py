"""1. Runtime parity: the generated nn.Module against a hand-written one holding the same weights,
and against torch.fx.Interpreter running the generated module's traced graph.

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
MISS_NOTE = (
    "Both sides run the same layers with the same weights and the generated forward is straight-line "
    "code, so a ratio above target here is the machine's noise between rounds (see the quartiles), not "
    "generated overhead; rerun on an idle machine, or with more rounds, to close it."
)


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
    label: str, generated: nn.Module, hand: nn.Module, x: torch.Tensor, rounds: int, sample_s: float
) -> list[Result]:
    interpreter = torch.fx.Interpreter(torch.fx.symbolic_trace(generated))
    callers = {"generated": generated, "hand-written": hand, "fx.Interpreter": interpreter.run}
    generated.eval(), hand.eval()
    with torch.no_grad():
        expected = hand(x)
        for name in ("generated", "fx.Interpreter"):
            if not torch.allclose(callers[name](x), expected, rtol=1e-4, atol=1e-5):
                raise AssertionError(f"{label}: {name} does not compute what the hand-written model does")
    results = []
    for mode in ("forward", "forward+backward"):
        train = mode != "forward"
        generated.train(train), hand.train(train)
        if train:
            fns = {
                "generated": _forward_backward(generated, list(generated.parameters())),
                "hand-written": _forward_backward(hand, list(hand.parameters())),
                "fx.Interpreter": _forward_backward(interpreter.run, list(generated.parameters())),
            }
        else:
            fns = {name: _forward(model) for name, model in callers.items()}
        calls = {name: (lambda fn=fn: fn(x)) for name, fn in fns.items()}
        inner = calibrate(calls["hand-written"], sample_s)
        samples = interleaved(calls, rounds, inner)
        for other, target in (("hand-written", TARGET), ("fx.Interpreter", None)):
            ratio, q1, q3 = paired_ratio(samples, "generated", other)
            med = {n: sorted(s)[len(s) // 2] for n, s in samples.items()}
            results.append(
                Result(
                    SECTION,
                    f"{label}, {mode}: generated / {other}",
                    ratio,
                    target,
                    f"{fmt_seconds(med['generated'])} / {fmt_seconds(med[other])} per call; {spread(q1, q3)}",
                    MISS_NOTE if target else "",
                )
            )
    return results


def run(
    batch: int = 2,
    image_size: int = 64,
    mlp_spec: Path = BENCH_SPECS / "mlp_chain64.yaml",
    mlp_batch: int = 32,
    seeds: tuple[str, ...] = tuple(SEEDS),
    rounds: int = 21,
    sample_s: float = 0.05,
) -> list[Result]:
    """Every seed in `seeds` on (batch, 3, image_size, image_size) images, and the MLP chain."""
    torch.manual_seed(0)
    results = []
    with temp_dir() as tmp:
        for seed in seeds:
            generated, hand = build_pair(SPECS / f"{seed}.yaml", Path(tmp))
            x = torch.randn(batch, 3, image_size, image_size)
            label = f"{seed} ({batch}x3x{image_size}x{image_size})"
            results += bench_case(label, generated, hand, x, rounds, sample_s)
        generated, hand = build_pair(mlp_spec, Path(tmp))
        layers, width = mlp_shape(mlp_spec)
        x = torch.randn(mlp_batch, width)
        label = f"{mlp_spec.stem} ({layers} Linear, {mlp_batch}x{width})"
        results += bench_case(label, generated, hand, x, rounds, sample_s)
    return results
