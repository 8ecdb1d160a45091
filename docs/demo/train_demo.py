"""`make demo`: train a generated model for a few steps on the CPU and print its loss.

Run after `make generate`, which compiles every spec in specs/ into generated/.
"""

import sys
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from generated.tabular_mlp import TabularMLPModule  # noqa: E402


class PrintLoss(pl.Callback):
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step % 10 == 0:
            print(f"step {trainer.global_step:3d}  loss {outputs['loss'].item():.4f}")


def main() -> None:
    torch.manual_seed(0)
    features = torch.randn(2048, 32)
    target = (features[:, :4].sum(dim=1, keepdim=True) + 0.1 * torch.randn(2048, 1)).float()
    loader = DataLoader(TensorDataset(features, target), batch_size=64, shuffle=True)
    trainer = pl.Trainer(
        accelerator="cpu", max_epochs=2, logger=False, enable_checkpointing=False, callbacks=[PrintLoss()]
    )
    trainer.fit(TabularMLPModule(lr=3e-3), loader)
    print(f"final train loss {trainer.callback_metrics['train_loss'].item():.4f}")


if __name__ == "__main__":
    main()
