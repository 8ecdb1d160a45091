"""Train a generated module with `unfreeze: {layer4: 1}` for 2 epochs under strategy="ddp" with 2
CPU processes (gloo), find_unused_parameters left at its default (False).

Usage: python ddp_unfreeze.py GENERATED.py OUT_DIR
Lightning re-runs this script for the second rank. Every rank writes OUT_DIR/rank<N>.json: a
digest of its state dict's bytes (equal on both ranks: same bits), and after each epoch the
top-level parts whose state moved since the start (node ids, and resnet.<child> for the backbone).
"""

import hashlib
import importlib.util
import json
import sys
from pathlib import Path

import pytorch_lightning as pl
import torch


class Moved(pl.Callback):
    """After each epoch, the top-level parts whose state differs from `before`."""

    def __init__(self, before: dict) -> None:
        self.before = before
        self.per_epoch: list[list[str]] = []

    def on_train_epoch_end(self, trainer, pl_module):
        moved = set()
        for key, value in pl_module.model.state_dict().items():
            if not torch.equal(self.before[key], value):
                parts = key.split(".")
                moved.add(".".join(parts[:2]) if parts[0] == "resnet" else parts[0])
        self.per_epoch.append(sorted(moved))


def main(path: str, out_dir: str) -> None:
    spec = importlib.util.spec_from_file_location(Path(path).stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(0)  # the same initial weights on every rank
    lm = module.TunedModule()
    moved = Moved({k: v.clone() for k, v in lm.model.state_dict().items()})
    g = torch.Generator().manual_seed(0)
    samples = [
        (torch.randn(4, 3, 32, 32, generator=g), torch.randint(0, 5, (4,), generator=g)) for _ in range(4)
    ]
    loader = torch.utils.data.DataLoader(samples, batch_size=None)
    trainer = pl.Trainer(
        callbacks=[moved],
        accelerator="cpu",
        devices=2,
        strategy="ddp",
        max_epochs=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(lm, train_dataloaders=loader)
    report = {
        "world_size": trainer.world_size,
        "global_step": trainer.global_step,
        "digest": hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in lm.parameters())).hexdigest(),
        "moved": moved.per_epoch,
    }
    Path(out_dir, f"rank{trainer.global_rank}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
