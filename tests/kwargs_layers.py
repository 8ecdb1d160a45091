"""Layers whose constructors take any keyword arguments (`**kwargs`), as layers built from a
config dict do: every key of the spec (or of a checkpoint's hyperparameters) reaches the generated
call as `name=value`. Used by the injection and fuzz tests, imported from tests/ on sys.path."""

import pytorch_lightning as pl
import torch.nn as nn


class AnyArgs(nn.Module):
    def __init__(self, **kwargs):
        super().__init__()
        self.kwargs = kwargs
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return self.fc(x)


class AnyArgsModule(pl.LightningModule):
    def __init__(self, **kwargs):
        super().__init__()
        self.save_hyperparameters()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return self.fc(x)
