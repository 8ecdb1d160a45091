"""Shape rules for the meta kernels torch runs as slow Python decompositions.

On the meta device, batch norm, layer norm, `gelu`, `relu`, `linear` and
`scaled_dot_product_attention` run torch's Python decompositions (`torch/_decomp`, `torch/_refs`):
2-8 ms a call, where a convolution takes 0.2 ms. They were most of a backbone's shape propagation
(ResNet-18: 0.19 s of 0.2 s in batch norm). While the shapes stage runs, `shape_rules()` answers
such a call with an empty tensor of the exact shape, dtype and strides torch gives, but only when the
call is plainly valid: meta tensors of the sizes and dtype the op expects, in a layout the rules are
tested on, no gradient to record. Every other call goes to torch, so errors stay torch's own.
tests/test_meta_kernels.py checks each rule against torch's own meta kernel.
"""

from __future__ import annotations

import contextlib
import contextvars
import math

import torch
import torch.nn.functional as F  # noqa: N812 - torch's own spelling
from torch.overrides import TorchFunctionMode

_ACTIVE: contextvars.ContextVar[bool] = contextvars.ContextVar("shape_rules_active", default=False)


@contextlib.contextmanager
def shape_rules():
    """The rules in force for the block; entered once (a block use propagates inside the model's
    propagation, and a second mode would see every call again)."""
    if _ACTIVE.get():
        yield
        return
    token = _ACTIVE.set(True)
    try:
        with _ShapeRules():
            yield
    finally:
        _ACTIVE.reset(token)


class _ShapeRules(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        rule = RULES.get(func)
        if rule is not None:
            try:
                out = rule(*args, **kwargs)
            except TypeError:  # arguments the function's signature rejects: torch says how
                out = None
            if out is not None:
                return out
        return func(*args, **kwargs)


def _plain(*tensors) -> bool:
    """Meta tensors of one floating dtype, each a plain tensor or parameter, with no gradient to
    record, all sizes non-zero, each dense (a permutation of a contiguous layout: contiguous,
    channels_last, a transpose)."""
    grad = torch.is_grad_enabled()
    return all(
        type(t) in (torch.Tensor, torch.nn.Parameter)
        and t.is_meta
        and t.dtype == tensors[0].dtype
        and t.dtype.is_floating_point
        and not (grad and t.requires_grad)
        and _dense(t)
        for t in tensors
    )


def _dense(tensor: torch.Tensor) -> bool:
    expected = 1
    for size, stride in sorted(zip(tensor.shape, tensor.stride(), strict=True), key=lambda p: p[1]):
        if size == 0 or (size != 1 and stride != expected):
            return False
        expected *= size
    return True


def _given(*tensors) -> list:
    return [t for t in tensors if t is not None]


def _numbers(*values) -> bool:
    """Each value a number as torch's float arguments take it (a bool or None is left to torch)."""
    return all(type(v) in (int, float) and math.isfinite(v) for v in values)


def _batch_norm(input, weight, bias, running_mean, running_var, training, momentum, eps):
    """Batch norm's output is laid out as its input. Eval needs running statistics, and training
    more than one value per channel (F.batch_norm raises otherwise)."""
    stats = _given(weight, bias, running_mean, running_var)
    if not _plain(input, *stats) or type(training) is not bool or not _numbers(momentum, eps):
        return None
    if input.dim() not in (2, 3, 4, 5) or (not training and (running_mean is None or running_var is None)):
        return None
    channels = input.shape[1]
    if any(tuple(t.shape) != (channels,) for t in stats) or (training and input.numel() == channels):
        return None
    return torch.empty_like(input)


def _functional_batch_norm(
    input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5
):
    return _batch_norm(input, weight, bias, running_mean, running_var, training, momentum, eps)


def _torch_batch_norm(input, weight, bias, running_mean, running_var, training, momentum, eps, cudnn_enabled):
    if type(cudnn_enabled) is not bool:
        return None
    return _batch_norm(input, weight, bias, running_mean, running_var, training, momentum, eps)


def _layer_norm(input, normalized_shape, weight, bias, eps):
    """Layer norm's output is contiguous, whatever its input's layout."""
    affine = _given(weight, bias)
    if not _plain(input, *affine) or not isinstance(normalized_shape, (list, tuple)) or not _numbers(eps):
        return None
    normalized = tuple(normalized_shape)
    if (
        not all(type(n) is int for n in normalized)
        or not 1 <= len(normalized) <= input.dim()
        or tuple(input.shape[input.dim() - len(normalized) :]) != normalized
        or any(tuple(t.shape) != normalized for t in affine)
    ):
        return None
    return input.new_empty(input.shape)


def _functional_layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    return _layer_norm(input, normalized_shape, weight, bias, eps)


def _torch_layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5, cudnn_enable=True):
    if type(cudnn_enable) is not bool:
        return None
    return _layer_norm(input, normalized_shape, weight, bias, eps)


def _gelu(input, *, approximate="none"):
    return torch.empty_like(input) if _plain(input) and approximate in ("none", "tanh") else None


def _relu(input, inplace=False):
    if not _plain(input) or type(inplace) is not bool:
        return None
    return input if inplace else torch.empty_like(input)


def _linear(input, weight, bias=None):
    """A linear layer's output is contiguous (for inputs of two dims or more)."""
    if not _plain(input, *_given(weight, bias)) or input.dim() < 2 or weight.dim() != 2:
        return None
    if weight.shape[1] != input.shape[-1] or (bias is not None and tuple(bias.shape) != (weight.shape[0],)):
        return None
    return input.new_empty((*input.shape[:-1], weight.shape[0]))


def _attention(
    query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, *, scale=None, enable_gqa=False
):
    """Attention without a mask, keys and values of the query's batch dims: a contiguous
    (..., L, value's E)."""
    if not _plain(query, key, value) or attn_mask is not None or enable_gqa is not False:
        return None
    if type(is_causal) is not bool or not _numbers(dropout_p) or not 0 <= dropout_p < 1:
        return None
    if not (scale is None or _numbers(scale)) or not 2 <= query.dim() == key.dim() == value.dim():
        return None
    batch = query.shape[:-2]
    if key.shape[:-2] != batch or value.shape[:-2] != batch or key.shape[-2] != value.shape[-2]:
        return None
    if key.shape[-1] != query.shape[-1]:
        return None
    return query.new_empty((*query.shape[:-1], value.shape[-1]))


def _multi_head_attention(
    query,
    key,
    value,
    embed_dim_to_check,
    num_heads,
    in_proj_weight,
    in_proj_bias,
    bias_k,
    bias_v,
    add_zero_attn,
    dropout_p,
    out_proj_weight,
    out_proj_bias,
    training=True,
    key_padding_mask=None,
    need_weights=True,
    attn_mask=None,
    use_separate_proj_weight=False,
    q_proj_weight=None,
    k_proj_weight=None,
    v_proj_weight=None,
    static_k=None,
    static_v=None,
    average_attn_weights=True,
    is_causal=False,
):
    """nn.MultiheadAttention's plain case: batched (L, N, E) inputs, one packed input projection,
    no masks, no added key and value biases. A contiguous (L, N, E) output, and the weights
    (N, L, S), or (N, heads, L, S) not averaged, when asked for."""
    unused = (bias_k, bias_v, key_padding_mask, attn_mask, q_proj_weight, k_proj_weight, v_proj_weight)
    if any(t is not None for t in (*unused, static_k, static_v)):
        return None
    flags = (add_zero_attn, training, need_weights, use_separate_proj_weight, average_attn_weights, is_causal)
    if any(type(f) is not bool for f in flags) or add_zero_attn or use_separate_proj_weight or is_causal:
        return None
    weights = (in_proj_weight, out_proj_weight, *_given(in_proj_bias, out_proj_bias))
    if not _plain(query, key, value, *weights) or not _numbers(dropout_p) or not 0 <= dropout_p < 1:
        return None
    if query.dim() != 3 or key.dim() != 3 or key.shape != value.shape:
        return None
    length, batch, embed = query.shape
    if type(num_heads) is not int or num_heads <= 0 or embed % num_heads or embed_dim_to_check != embed:
        return None
    sizes = (
        (in_proj_weight, (3 * embed, embed)),
        (out_proj_weight, (embed, embed)),
        (in_proj_bias, (3 * embed,)),
        (out_proj_bias, (embed,)),
    )
    if key.shape[1:] != (batch, embed) or any(t is not None and tuple(t.shape) != s for t, s in sizes):
        return None
    out = query.new_empty(query.shape)
    if not need_weights:
        return out, None
    heads = () if average_attn_weights else (num_heads,)
    return out, query.new_empty((batch, *heads, length, key.shape[0]))


# function -> rule: the rule takes the function's arguments and returns its output, or None to
# leave the call to torch
RULES = {
    F.batch_norm: _functional_batch_norm,
    torch.batch_norm: _torch_batch_norm,
    F.layer_norm: _functional_layer_norm,
    torch.layer_norm: _torch_layer_norm,
    F.gelu: _gelu,
    F.relu: _relu,
    F.linear: _linear,
    F.scaled_dot_product_attention: _attention,
    F.multi_head_attention_forward: _multi_head_attention,
}
