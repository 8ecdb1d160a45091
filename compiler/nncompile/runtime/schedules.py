"""Code the generated file carries (its source is copied there) when a cosine schedule has a floor.

torch's CosineAnnealingLR and CosineAnnealingWarmRestarts take one `eta_min` for every parameter
group, while each group's peak is its own rate (`lr_mult`, `lr_decay`, a node's `lr`): a group
whose peak is below that floor would run backwards. These take one floor per group, as
CyclicLR's `base_lr` and ReduceLROnPlateau's `min_lr` do, and otherwise follow torch's formulas
(the closed forms, which SequentialLR also uses).
"""

import math

import torch


class CosineAnnealingPerGroupLR(torch.optim.lr_scheduler.CosineAnnealingLR):
    """CosineAnnealingLR whose `eta_min` is a list: each group anneals from its own rate to
    its own floor over `T_max` steps."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        T_max: int,
        eta_min: list[float],
        last_epoch: int = -1,
    ) -> None:
        self.eta_mins = list(eta_min)
        super().__init__(optimizer, T_max, last_epoch=last_epoch)

    def get_lr(self) -> list[float]:
        cosine = (1 + math.cos(math.pi * self.last_epoch / self.T_max)) / 2
        pairs = zip(self.base_lrs, self.eta_mins, strict=True)
        return [floor + (peak - floor) * cosine for peak, floor in pairs]

    _get_closed_form_lr = get_lr


class CosineWarmRestartsPerGroup(torch.optim.lr_scheduler.CosineAnnealingWarmRestarts):
    """CosineAnnealingWarmRestarts whose `eta_min` is a list: in each cycle each group anneals
    from its own rate to its own floor."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        T_0: int,
        T_mult: int = 1,
        *,
        eta_min: list[float],
        last_epoch: int = -1,
    ) -> None:
        self.eta_mins = list(eta_min)
        super().__init__(optimizer, T_0, T_mult, last_epoch=last_epoch)

    def get_lr(self) -> list[float]:
        cosine = (1 + math.cos(math.pi * self.T_cur / self.T_i)) / 2
        pairs = zip(self.base_lrs, self.eta_mins, strict=True)
        return [floor + (peak - floor) * cosine for peak, floor in pairs]
