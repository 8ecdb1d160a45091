"""Code the generated file carries (its source is copied there): LoRA adapters (Hu et al., 2021).

A LoRA layer is the torch layer it adapts (a subclass) holding that layer's own parameters under
their own names, so the state-dict keys of the base weights do not change, and two new ones beside
them: the layer computes with `weight + scale * lora_B @ lora_A`, where lora_A (r rows) starts
random and lora_B starts at zero (the layer starts out as it was) and only they train.
`_merge_lora` folds each adapter into its weight and leaves the plain torch layer.

The compiler applies `_add_lora` to the meta modules too, so counts and parameter groups see the
adapters exactly as the generated file builds them.
"""

import torch
from torch import nn


class LoRALinear(nn.Linear):
    """nn.Linear computing with weight + scale * lora_B @ lora_A."""

    def __init__(self, base: nn.Linear, r: int, alpha: float, dropout: float) -> None:
        sizes = base.in_features, base.out_features, base.bias is not None
        super().__init__(*sizes, device="meta")
        shapes = (r, self.in_features), (self.out_features, r)
        _lora_init(self, base, r, alpha, dropout, *shapes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_a = nn.functional.linear(self.lora_dropout(x), self.lora_A)
        return super().forward(x) + nn.functional.linear(x_a, self.lora_B) * self.scale

    def merged(self) -> nn.Linear:
        sizes = self.in_features, self.out_features, self.bias is not None
        plain = nn.Linear(*sizes, device="meta")
        return _merged(plain, self, self.lora_B @ self.lora_A)


class LoRAConv2d(nn.Conv2d):
    """nn.Conv2d (groups 1) computing with weight + scale * lora_B @ lora_A: lora_A a convolution
    like the layer's with r output channels, lora_B a 1x1 convolution from r channels."""

    def __init__(self, base: nn.Conv2d, r: int, alpha: float, dropout: float) -> None:
        super().__init__(**_conv_settings(base), device="meta")
        shapes = (r, self.in_channels, *self.kernel_size), (self.out_channels, r, 1, 1)
        _lora_init(self, base, r, alpha, dropout, *shapes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_a = self._conv_forward(self.lora_dropout(x), self.lora_A, None)
        return super().forward(x) + nn.functional.conv2d(x_a, self.lora_B) * self.scale

    def merged(self) -> nn.Conv2d:
        update = (self.lora_B.flatten(1) @ self.lora_A.flatten(1)).view_as(self.weight)
        return _merged(nn.Conv2d(**_conv_settings(self), device="meta"), self, update)


class LoRAEmbedding(nn.Embedding):
    """nn.Embedding looking up weight + scale * (lora_B @ lora_A).T (no dropout: its inputs are
    indices)."""

    def __init__(self, base: nn.Embedding, r: int, alpha: float, dropout: float):
        super().__init__(**_embedding_settings(base), device="meta")
        shapes = (r, self.num_embeddings), (self.embedding_dim, r)
        _lora_init(self, base, r, alpha, dropout, *shapes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_a = nn.functional.embedding(x, self.lora_A.T)
        return super().forward(x) + x_a @ self.lora_B.T * self.scale

    def merged(self) -> nn.Embedding:
        plain = nn.Embedding(**_embedding_settings(self), device="meta")
        return _merged(plain, self, (self.lora_B @ self.lora_A).T)


def _conv_settings(conv: nn.Conv2d) -> dict:
    keys = ("in_channels", "out_channels", "kernel_size", "stride", "padding")
    keys += ("dilation", "padding_mode")
    return {key: getattr(conv, key) for key in keys} | {"bias": conv.bias is not None}


def _embedding_settings(table: nn.Embedding) -> dict:
    keys = ("num_embeddings", "embedding_dim", "padding_idx", "max_norm", "norm_type")
    keys += ("scale_grad_by_freq", "sparse")
    return {key: getattr(table, key) for key in keys}


def _lora_init(layer, base, r: int, alpha: float, dropout: float, a_shape, b_shape):
    """Give `layer` (built on the meta device) the parameters of `base`, the same tensors under
    the same names, and the adapter's two."""
    for name, param in base.named_parameters(recurse=False):
        setattr(layer, name, param)
    like = {"device": base.weight.device, "dtype": base.weight.dtype}
    layer.lora_A = nn.Parameter(torch.empty(a_shape, **like))
    nn.init.kaiming_uniform_(layer.lora_A, a=5**0.5)
    layer.lora_B = nn.Parameter(torch.zeros(b_shape, **like))
    layer.lora_dropout = nn.Dropout(dropout)
    layer.scale = alpha / r
    layer.train(base.training)


def _merged(plain: nn.Module, layer: nn.Module, update: torch.Tensor) -> nn.Module:
    """`plain` (built on the meta device) with `layer`'s parameters, `update` folded into its weight."""
    for name, param in layer.named_parameters(recurse=False):
        if not name.startswith("lora_"):
            setattr(plain, name, param)
    with torch.no_grad():
        weight = layer.weight + update * layer.scale
    plain.weight = nn.Parameter(weight, requires_grad=layer.weight.requires_grad)
    return plain.train(layer.training)


def _add_lora(module: nn.Module, paths: tuple, r: int, alpha: float, dropout: float):
    """`module` with a LoRA adapter on each layer at `paths` ("" is `module` itself)."""
    kinds = {nn.Linear: LoRALinear, nn.Conv2d: LoRAConv2d}
    kinds[nn.Embedding] = LoRAEmbedding
    for path in paths:
        layer = module.get_submodule(path)
        adapted = kinds[type(layer)](layer, r, alpha, dropout)
        if not path:
            return adapted
        parent, _, name = path.rpartition(".")
        setattr(module.get_submodule(parent), name, adapted)
    return module


def _merge_lora(module: nn.Module) -> None:
    """Fold every adapter inside `module` into its layer, which becomes the plain torch layer."""
    for path, layer in list(module.named_modules()):
        if isinstance(layer, (LoRALinear, LoRAConv2d, LoRAEmbedding)):
            parent, _, name = path.rpartition(".")
            setattr(module.get_submodule(parent), name, layer.merged())


def _lora_parameters(module: nn.Module) -> list[nn.Parameter]:
    """The adapters' parameters inside `module`: they train from the start, also inside a part
    that gradual unfreezing holds frozen until its epoch."""
    kinds = (LoRALinear, LoRAConv2d, LoRAEmbedding)
    return [p for m in module.modules() if isinstance(m, kinds) for p in (m.lora_A, m.lora_B)]


def _trained_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """The state of the parameters that train (adapters and whatever trains beside them)."""
    params = module.named_parameters()
    return {name: param.detach() for name, param in params if param.requires_grad}


def _load_trained_state(module: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load a `_trained_state` into `module`: every parameter that trains, and nothing else."""
    trained = {name for name, param in module.named_parameters() if param.requires_grad}
    if set(state) != trained:
        missing, unexpected = sorted(trained - set(state)), sorted(set(state) - trained)
        found = f"missing {missing}, unexpected {unexpected}"
        raise KeyError(f"not the trained state of this model: {found}")
    module.load_state_dict(state, strict=False)
