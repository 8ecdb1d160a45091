"""Building a backbone to read its structure, without computing weights nobody reads.

On the meta device every in-place initialiser (`normal_`, timm's `trunc_normal_` as `uniform_`,
`erfinv_`, `mul_`, ...) runs torch's Python decompositions to produce values that do not exist:
most of a compile's time for a ViT (timm vit_base: 1.0 s of 1.1 s). `values_skipped` returns the
tensor as it is instead; shapes, dtypes and the module tree stay what the builder makes.
"""

from __future__ import annotations

import contextlib

import torch
from torch.nn import init
from torch.overrides import TorchFunctionMode

# torch.nn.init's initialisers, and the Tensor methods that write values in place and keep the
# tensor's shape and dtype. A mode sees no call made inside one it handles: the initialisers are
# skipped whole, not only the value writes they make.
INITIALISERS = frozenset(n for n in vars(init) if n.endswith("_") and not n.startswith("_"))
VALUE_WRITES = INITIALISERS | {
    "normal_", "uniform_", "erfinv_", "exponential_", "bernoulli_", "random_", "fill_", "zero_",
    "copy_", "mul_", "div_", "add_", "sub_", "clamp_", "clamp_min_", "clamp_max_", "sqrt_", "exp_",
    "fill_diagonal_",
}  # fmt: skip


class values_skipped(TorchFunctionMode):  # noqa: N801 - used as a context manager, like torch.no_grad
    """Value writes into meta tensors are skipped (the tensor is returned as it is)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        target = args[0] if args else kwargs.get("tensor")  # torch.nn.init passes it by name
        if (
            isinstance(target, torch.Tensor)
            and target.is_meta
            and getattr(func, "__name__", "") in VALUE_WRITES
        ):
            return target
        return func(*args, **kwargs)


@contextlib.contextmanager
def weights_left_uninitialised():
    """torch.nn.init's in-place initialisers as no-ops, for builders that must run on the CPU
    (their values are thrown away when the model moves to meta)."""
    names = [
        n for n in vars(init) if n.endswith("_") and not n.startswith("_") and callable(getattr(init, n))
    ]
    saved = {n: getattr(init, n) for n in names}
    for name in names:
        setattr(init, name, lambda tensor, *args, **kwargs: tensor)
    try:
        yield
    finally:
        for name, function in saved.items():
            setattr(init, name, function)
