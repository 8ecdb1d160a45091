"""Code the generated file carries (its source is copied there) for the optimizer's parameter
groups; the compiler runs the same functions on the meta modules for the summary's group table.

`_split_weight_decay` keeps weight decay off the parameters it only harms, as timm, fastai and
OpenMMLab do: those of norm layers, biases, other 1-D parameters, and the learned vectors a
model feeds in with its activations (embedding tables, position embeddings, class tokens),
told by their role, so the same model is treated alike whichever library builds it.
`_train_norm_affine` is `train_bn`: the affine parameters of frozen norm layers
train while their running statistics stay fixed.
"""

from torch import nn


def _is_norm(module: nn.Module) -> bool:
    """Whether `module` is a normalisation layer (BatchNorm, InstanceNorm, LayerNorm, ...)."""
    kinds = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.RMSNorm)
    return isinstance(module, kinds)


def _no_weight_decay(model: nn.Module) -> set[int]:
    """The ids of the parameters weight decay leaves alone: norm layers' parameters, biases
    and other 1-D parameters, embedding tables, learned tokens and position embeddings (held
    outside torch's layers with a leading 1 to join a batch: class, register, mask tokens),
    and what a timm model's `no_weight_decay()` names."""
    skip = set()
    for module in model.modules():
        if hasattr(module, "no_weight_decay"):
            named = dict(module.named_parameters())  # the names it gives
            skip |= {id(named[n]) for n in module.no_weight_decay() if n in named}
        table = isinstance(module, (nn.Embedding, nn.EmbeddingBag))
        # parameters of a class outside torch.nn's layers are no layer's weights
        classes = [c for c in type(module).__mro__ if c is not nn.Module]
        outside = not any(c.__module__.startswith("torch.nn.") for c in classes)
        for name, param in module.named_parameters(recurse=False):
            token = outside and param.ndim >= 3 and param.shape[0] == 1
            if _is_norm(module) or table or token or name == "bias" or param.ndim <= 1:
                skip.add(id(param))
    return skip


def _split_weight_decay(groups: list[dict], spared=lambda p: p.ndim <= 1) -> list[dict]:
    """Each group's trainable parameters in two: weight decay spares those `spared` picks."""
    split = []
    for group in groups:
        params = [p for p in group["params"] if p.requires_grad]
        split.append({**group, "params": [p for p in params if not spared(p)]})
        spare = [p for p in params if spared(p)]
        split.append({**group, "params": spare, "weight_decay": 0.0})
    return [group for group in split if group["params"]]


def _only_1d_spared(model: nn.Module) -> bool:
    """Whether the parameters `_no_weight_decay` spares in `model` are just its 1-D ones
    (biases, norm layers' weights): then the generated file says so in one line instead of
    carrying the rules (the compiler asks this of the model it builds)."""
    return _no_weight_decay(model) == {id(p) for p in model.parameters() if p.ndim <= 1}


def _train_norm_affine(module: nn.Module, parts: tuple[str, ...]) -> None:
    """Let the affine parameters (weight, bias) of the norm layers under the submodule paths
    `parts` ("" for all of `module`) train although their part is frozen."""
    for name, child in module.named_modules():
        inside = any(p == "" or name == p or name.startswith(p + ".") for p in parts)
        if inside and _is_norm(child):
            child.requires_grad_(True)
