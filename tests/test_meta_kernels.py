"""The shapes stage's rules for slow meta kernels (shapes/meta_kernels.py) against torch's own meta
kernels: where a rule answers, the same shapes, strides and dtypes; where the call is not plainly
valid, the rule leaves it to torch, and the error is torch's own."""

import contextlib

import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from nncompile.shapes import meta_kernels
from nncompile.shapes.meta_kernels import RULES, shape_rules

F32, F16 = torch.float32, torch.float16


def meta(*shape, dtype=F32):
    return torch.empty(*shape, device="meta", dtype=dtype)


def channels_last(*shape):
    fmt = torch.channels_last if len(shape) == 4 else torch.channels_last_3d
    return meta(*shape).to(memory_format=fmt)


def bn(shape, training, affine=True, stats=True, layout=meta, **kw):
    """F.batch_norm's arguments for an input of `shape` (its channels at dim 1)."""
    c = shape[1]
    mean, var = (meta(c), meta(c)) if stats else (None, None)
    weight, bias = (meta(c), meta(c)) if affine else (None, None)
    return (layout(*shape), mean, var, weight, bias, training), kw


def ln(shape, normalized, affine=(True, True), x=None):
    weight, bias = (meta(*normalized) if a else None for a in affine)
    return (meta(*shape) if x is None else x, normalized, weight, bias), {}


def mha(length, batch, embed, heads, source=None, biases=True, **kw):
    """F.multi_head_attention_forward's arguments, as nn.MultiheadAttention passes them."""
    source = length if source is None else source
    key = meta(source, batch, embed)
    args = (meta(length, batch, embed), key, key, embed, heads, meta(3 * embed, embed))
    args += (meta(3 * embed) if biases else None, None, None, False, 0.1, meta(embed, embed))
    args += (meta(embed) if biases else None,)
    return args, kw


# (id, function, (args, kwargs), what happens): "rule" answers, "torch" is left to torch and works,
# "raises" is left to torch and raises
CASES = [
    ("bn1d-2d-train", F.batch_norm, bn((4, 8), True), "rule"),
    ("bn1d-3d-eval", F.batch_norm, bn((4, 8, 5), False), "rule"),
    ("bn2d-train", F.batch_norm, bn((2, 8, 5, 6), True), "rule"),
    ("bn2d-eval", F.batch_norm, bn((2, 8, 5, 6), False), "rule"),
    ("bn2d-no-affine", F.batch_norm, bn((2, 8, 5, 6), False, affine=False), "rule"),
    ("bn2d-no-stats-train", F.batch_norm, bn((2, 8, 5, 6), True, stats=False), "rule"),
    ("bn2d-channels-last", F.batch_norm, bn((2, 8, 5, 6), True, layout=channels_last), "rule"),
    ("bn3d-train", F.batch_norm, bn((2, 8, 3, 5, 6), True), "rule"),
    ("bn3d-channels-last", F.batch_norm, bn((2, 8, 3, 5, 6), False, layout=channels_last), "rule"),
    ("bn1d-transposed", F.batch_norm, bn((2, 8, 6), True, layout=lambda *s: meta(2, 6, 8).transpose(1, 2)), "rule"),
    ("bn-keywords", F.batch_norm, bn((2, 8, 5, 6), True, momentum=0.3, eps=1e-3), "rule"),
    (
        "torch.batch_norm",
        torch.batch_norm,
        ((meta(2, 8, 5, 6), meta(8), meta(8), meta(8), meta(8), False, 0.1, 1e-5, True), {}),
        "rule",
    ),
    ("bn-half-float-weights", F.batch_norm, ((meta(2, 8, 5, dtype=F16), meta(8), meta(8)), {}), "torch"),
    ("bn-sliced", F.batch_norm, bn((2, 8, 6), True, layout=lambda *s: meta(2, 8, 12)[..., ::2]), "torch"),
    ("bn-wrong-channels", F.batch_norm, ((meta(2, 8, 5), meta(7), meta(7)), {}), "raises"),
    ("bn-eval-no-stats", F.batch_norm, bn((2, 8, 5), False, stats=False), "raises"),
    ("bn-train-one-value", F.batch_norm, bn((1, 8), True), "raises"),
    ("bn-momentum-none", F.batch_norm, bn((2, 8), True, momentum=None), "raises"),
    ("bn-int-input", F.batch_norm, ((meta(2, 8, dtype=torch.int64), None, None, None, None, True), {}), "raises"),
    ("bn-cpu-input", F.batch_norm, ((torch.zeros(2, 8), torch.zeros(8), torch.ones(8)), {}), "torch"),
    ("ln-1-dim", F.layer_norm, ln((2, 7, 16), (16,)), "rule"),
    ("ln-2-dims", F.layer_norm, ln((2, 7, 16), (7, 16)), "rule"),
    ("ln-3-dims", F.layer_norm, ln((2, 4, 5, 6), (4, 5, 6)), "rule"),
    ("ln-whole-input", F.layer_norm, ln((5, 6), (5, 6)), "rule"),
    ("ln-no-weight-no-bias", F.layer_norm, ln((2, 7, 16), (16,), (False, False)), "rule"),
    ("ln-weight-only", F.layer_norm, ln((2, 7, 16), (16,), (True, False)), "rule"),
    ("ln-bias-only", F.layer_norm, ln((2, 7, 16), (16,), (False, True)), "rule"),
    ("ln-size-list", F.layer_norm, ln((2, 7, 16), [16]), "rule"),
    ("ln-permuted-input", F.layer_norm, ln(None, (8,), x=meta(2, 8, 5, 6).permute(0, 2, 3, 1)), "rule"),
    ("ln-channels-last", F.layer_norm, ln(None, (6,), x=channels_last(2, 8, 5, 6)), "rule"),
    ("ln-half", F.layer_norm, ((meta(2, 7, 16, dtype=F16), (16,)), {}), "rule"),
    ("torch.layer_norm", torch.layer_norm, ((meta(2, 7, 16), [16], meta(16), None, 1e-5, True), {}), "rule"),
    ("ln-half-float-weights", F.layer_norm, ((meta(2, 7, 16, dtype=F16), (16,), meta(16)), {}), "torch"),
    ("ln-wrong-dims", F.layer_norm, ln((2, 7, 16), (7,)), "raises"),
    ("ln-wrong-weight", F.layer_norm, ((meta(2, 7, 16), (16,), meta(8)), {}), "raises"),
    ("ln-too-many-dims", F.layer_norm, ((meta(7, 16), (2, 7, 16)), {}), "raises"),
    ("ln-int-size", F.layer_norm, ((meta(2, 7, 16), 16), {}), "raises"),
    ("ln-float-size", F.layer_norm, ((meta(2, 7, 16), (16.0,)), {}), "raises"),
    ("ln-eps-text", F.layer_norm, ((meta(2, 7, 16), (16,)), {"eps": "small"}), "raises"),
    ("ln-cudnn-keyword", F.layer_norm, ((meta(2, 7, 16), (16,)), {"cudnn_enable": True}), "raises"),
    ("gelu", F.gelu, ((meta(2, 7, 16),), {}), "rule"),
    ("gelu-tanh", F.gelu, ((channels_last(2, 8, 5, 6),), {"approximate": "tanh"}), "rule"),
    ("gelu-transposed", F.gelu, ((meta(2, 7, 16).transpose(0, 1),), {}), "rule"),
    ("gelu-expanded", F.gelu, ((meta(2, 1, 16).expand(2, 7, 16),), {}), "torch"),
    ("gelu-unknown-approximation", F.gelu, ((meta(2, 16),), {"approximate": "fast"}), "raises"),
    ("gelu-positional-approximation", F.gelu, ((meta(2, 16), "tanh"), {}), "raises"),
    ("relu", F.relu, ((meta(2, 8, 5, 6),), {}), "rule"),
    ("relu-inplace", F.relu, ((channels_last(2, 8, 5, 6), True), {}), "rule"),
    ("relu-int", F.relu, ((meta(2, 8, dtype=torch.int64),), {}), "torch"),
    ("linear-3d", F.linear, ((meta(2, 7, 16), meta(5, 16), meta(5)), {}), "rule"),
    ("linear-2d-no-bias", F.linear, ((meta(2, 16), meta(5, 16)), {}), "rule"),
    ("linear-4d-keywords", F.linear, ((), {"input": meta(3, 2, 7, 16), "weight": meta(5, 16)}), "rule"),
    ("linear-transposed", F.linear, ((meta(2, 16, 7).transpose(1, 2), meta(5, 16)), {}), "rule"),
    ("linear-1d", F.linear, ((meta(16), meta(5, 16)), {}), "torch"),
    ("linear-wrong-features", F.linear, ((meta(2, 15), meta(5, 16)), {}), "raises"),
    ("linear-wrong-bias", F.linear, ((meta(2, 16), meta(5, 16), meta(4)), {}), "raises"),
    ("linear-dtypes-differ", F.linear, ((meta(2, 16), meta(5, 16, dtype=F16)), {}), "torch"),
    ("sdpa", F.scaled_dot_product_attention, ((meta(2, 4, 10, 16), meta(2, 4, 12, 16), meta(2, 4, 12, 32)), {}), "rule"),
    ("sdpa-2d", F.scaled_dot_product_attention, ((meta(10, 16), meta(12, 16), meta(12, 8)), {}), "rule"),
    (
        "sdpa-transposed-causal-scaled",
        F.scaled_dot_product_attention,
        (tuple(meta(2, 10, 4, 16).transpose(1, 2) for _ in range(3)), {"is_causal": True, "scale": 0.5}),
        "rule",
    ),
    ("sdpa-mask", F.scaled_dot_product_attention, ((meta(2, 10, 16),) * 3, {"attn_mask": meta(10, 10)}), "torch"),
    ("sdpa-broadcast", F.scaled_dot_product_attention, ((meta(2, 10, 16), meta(1, 10, 16), meta(1, 10, 16)), {}), "torch"),
    ("sdpa-wrong-features", F.scaled_dot_product_attention, ((meta(2, 10, 16), meta(2, 10, 8), meta(2, 10, 8)), {}), "raises"),
    ("sdpa-positional-scale", F.scaled_dot_product_attention, ((meta(10, 16),) * 3 + (None, 0.0, False, 0.5), {}), "raises"),
    ("mha", F.multi_head_attention_forward, mha(10, 2, 16, 4, need_weights=False), "rule"),
    ("mha-weights", F.multi_head_attention_forward, mha(10, 2, 16, 4, source=7, biases=False), "rule"),
    ("mha-weights-per-head", F.multi_head_attention_forward, mha(10, 2, 16, 4, average_attn_weights=False, training=False), "rule"),
    ("mha-mask", F.multi_head_attention_forward, mha(10, 2, 16, 4, attn_mask=meta(10, 10)), "torch"),
    ("mha-unbatched", F.multi_head_attention_forward, ((meta(10, 16), meta(10, 16), meta(10, 16), 16, 4, meta(48, 16), meta(48), None, None, False, 0.0, meta(16, 16), meta(16)), {}), "torch"),
    ("mha-heads-do-not-divide", F.multi_head_attention_forward, mha(10, 2, 16, 3), "raises"),
    ("mha-wrong-batch", F.multi_head_attention_forward, ((meta(10, 2, 16), meta(7, 3, 16), meta(7, 3, 16), 16, 4, meta(48, 16), meta(48), None, None, False, 0.0, meta(16, 16), meta(16)), {}), "raises"),
]  # fmt: skip


def describe(value):
    """What must agree between a rule's answer and torch's: each tensor's shape, strides, dtype and
    device (and which of them are the input itself, for in-place calls)."""
    if isinstance(value, tuple):
        return tuple(describe(v) for v in value)
    if value is None:
        return None
    return (tuple(value.shape), value.stride(), value.dtype, value.device.type)


@pytest.mark.parametrize(("func", "call", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_rule_gives_what_torch_gives(func, call, expected):
    args, kwargs = call
    with torch.no_grad():
        answer = RULES[func](*args, **kwargs) if expected == "rule" else None
        if expected == "raises":
            with pytest.raises(Exception) as real:
                func(*args, **kwargs)
            with pytest.raises(real.type) as ruled, shape_rules():
                func(*args, **kwargs)
            assert str(ruled.value) == str(real.value)
            return
        real = func(*args, **kwargs)
        with shape_rules():
            ruled = func(*args, **kwargs)
    if expected == "rule":
        assert answer is not None, "the rule left a plainly valid call to torch"
    assert describe(ruled) == describe(real)
    inputs = [*args, *kwargs.values()]
    assert [ruled is a for a in inputs] == [real is a for a in inputs]  # in place: the input itself


LEFT_TO_TORCH = [c for c in CASES if c[3] != "rule"]


@pytest.mark.parametrize(("func", "call"), [c[1:3] for c in LEFT_TO_TORCH], ids=[c[0] for c in LEFT_TO_TORCH])
def test_rule_leaves_the_unusual_call_to_torch(func, call):
    args, kwargs = call
    with torch.no_grad():
        assert _answer(func, args, kwargs) is None


def _answer(func, args, kwargs):
    try:
        return RULES[func](*args, **kwargs)
    except TypeError:  # as the mode does: a call its signature rejects goes to torch
        return None


def test_every_rule_is_checked():
    assert {c[1] for c in CASES if c[3] == "rule"} == set(RULES)


def test_a_gradient_to_record_goes_to_torch():
    """With autograd recording, torch's output is a node of the graph, which an empty tensor is not."""
    weight = torch.nn.Parameter(meta(5, 16))
    assert _answer(F.linear, (meta(2, 16), weight), {}) is None
    with torch.no_grad():
        assert _answer(F.linear, (meta(2, 16), weight), {}) is not None


def test_nested_rules_enter_one_mode(monkeypatch):
    calls = []
    rule = RULES[F.relu]
    monkeypatch.setitem(meta_kernels.RULES, F.relu, lambda *a, **k: calls.append(1) or rule(*a, **k))
    with torch.no_grad(), shape_rules(), shape_rules():
        F.relu(meta(2, 3))
    assert calls == [1]


def test_a_backbone_propagates_as_on_torch():
    """A ResNet-18 and a small ViT: every module's output the same with the rules and without."""
    import torchvision

    with torch.device("meta"):
        models = [
            torchvision.models.resnet18(),
            torchvision.models.VisionTransformer(32, 8, 2, 2, 16, 32, num_classes=5),
        ]
    for model in models:
        assert module_outputs(model, shape_rules()) == module_outputs(model, contextlib.nullcontext())


def module_outputs(model, rules) -> list:
    seen = []
    hooks = [m.register_forward_hook(lambda m, i, out: seen.append(describe(out))) for m in model.modules()]
    with torch.no_grad(), rules:
        model(meta(2, 3, 32, 32))
    for hook in hooks:
        hook.remove()
    return seen
