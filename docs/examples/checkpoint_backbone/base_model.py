"""The model trained first: a small image classifier whose `encoder` we later reuse as a frozen
backbone (see finetune.yaml and docs/backbones.md)."""

import pytorch_lightning as pl
import torch
from torch import nn


class BaseNet(pl.LightningModule):
    def __init__(self, hidden: int = 16, classes: int = 3) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.encoder = nn.Sequential(
            nn.Conv2d(3, hidden, kernel_size=3, padding=1),
            nn.BatchNorm2d(hidden),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return nn.functional.cross_entropy(self(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def train_base(path: str, steps: int = 3) -> None:
    """Train BaseNet a few steps on random data and save its Lightning checkpoint at `path`."""
    torch.manual_seed(0)
    data = torch.utils.data.TensorDataset(
        torch.randn(4 * steps, 3, 32, 32), torch.randint(0, 3, (4 * steps,))
    )
    trainer = pl.Trainer(
        max_steps=steps,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(BaseNet(), torch.utils.data.DataLoader(data, batch_size=4))
    trainer.save_checkpoint(path)


if __name__ == "__main__":
    train_base("base.ckpt")
