"""Train generated LightningModules under strategy="ddp" with 2 CPU processes (gloo).

Usage: python ddp_train.py OUT_DIR GENERATED.py:CLASS:FROZEN_NODE:KIND ...
KIND says what the batches hold: `single` (16x16 images, a class out of 4), `multitask` (a
class and a box), `tokens` (input_ids and attention_mask of length 16, a class out of 4).
Lightning re-runs this script once for the second rank; the modules train one after the other
in the same process group. Every rank writes OUT_DIR/<CLASS>-rank<N>.json with a checksum of its
parameters after training, so the test can check that the ranks stayed in sync, its loss at
each step, and how many collectives (`torch.distributed.all_reduce`, `all_gather`) Lightning's
logging made inside training steps and outside them (gradients are reduced by DDP's C++ reducer,
not counted).
"""

import importlib.util
import json
import sys
import traceback
from pathlib import Path

import pytorch_lightning as pl
import torch


class LoggingCollectives(pl.Callback):
    """Counts the all_reduce and all_gather calls made from Lightning's logging (its result
    collection: values synced with sync_dist, metrics computed), inside training steps (batch
    start to batch end) and elsewhere, and records each step's loss."""

    NAMES = ("all_reduce", "all_gather")

    def __init__(self) -> None:
        self.in_step = False
        self.in_steps = self.elsewhere = 0
        self.losses: list[float] = []
        self.originals = {name: getattr(torch.distributed, name) for name in self.NAMES}
        for name, original in self.originals.items():
            setattr(torch.distributed, name, self.counted(original))

    def counted(self, collective):
        def call(*args, **kwargs):
            if any("logger_connector" in frame.filename for frame in traceback.extract_stack()):
                if self.in_step:
                    self.in_steps += 1
                else:
                    self.elsewhere += 1
            return collective(*args, **kwargs)

        return call

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.in_step = True

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.in_step = False
        self.losses.append(float(outputs["loss"]))

    def restore(self) -> None:
        for name, original in self.originals.items():
            setattr(torch.distributed, name, original)


def sample(kind: str, g: torch.Generator):
    label = torch.randint(0, 4, (), generator=g)
    if kind == "tokens":
        mask = (torch.arange(16) < torch.randint(4, 17, (), generator=g)).long()  # padded at the end
        return {"input_ids": torch.randint(1, 100, (16,), generator=g) * mask, "attention_mask": mask}, label
    target = {"label": label, "box": torch.rand(4, generator=g)} if kind == "multitask" else label
    return torch.randn(3, 16, 16, generator=g), target


def train(path: str, class_name: str, freeze: str, kind: str, out_dir: str) -> None:
    spec = importlib.util.spec_from_file_location(Path(path).stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(0)  # the same initial weights on every rank
    lm = getattr(module, class_name)()
    frozen = getattr(lm.model, freeze)
    frozen.requires_grad_(False)
    before = {k: v.clone() for k, v in frozen.state_dict().items()}

    g = torch.Generator().manual_seed(0)
    samples = [sample(kind, g) for _ in range(24)]
    loader = torch.utils.data.DataLoader(samples, batch_size=4)
    counter = LoggingCollectives()
    trainer = pl.Trainer(
        callbacks=[counter],
        accelerator="cpu",
        devices=2,
        strategy="ddp",
        max_steps=3,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(lm, train_dataloaders=loader, val_dataloaders=loader)
    counter.restore()
    with torch.no_grad():
        report = {
            "world_size": trainer.world_size,
            "global_step": trainer.global_step,
            "checksum": sum(float(p.double().sum()) for p in lm.parameters()),
            "frozen_unchanged": all(torch.equal(before[k], v) for k, v in frozen.state_dict().items()),
            "metrics": {k: float(v) for k, v in trainer.callback_metrics.items()},
            "step_losses": counter.losses,
            "logging_collectives_in_steps": counter.in_steps,
            "logging_collectives_elsewhere": counter.elsewhere,
        }
    Path(out_dir, f"{class_name}-rank{trainer.global_rank}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    for job in sys.argv[2:]:
        path, class_name, freeze, kind = job.rsplit(":", 3)
        train(path, class_name, freeze, kind, sys.argv[1])
