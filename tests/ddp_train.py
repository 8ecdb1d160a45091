"""Train generated LightningModules under strategy="ddp" with 2 CPU processes (gloo), the jobs one
after the other in the same process group: the tests that train under DDP share this one launch
(tests/ddp_jobs.py), whose two interpreters each import torch and Lightning once.

Usage: python ddp_train.py FOLDER
FOLDER/jobs.json lists the jobs: {"name", "path" (a generated file), "module" (its LightningModule
class), "run", and the run's arguments}. Lightning re-runs this script once for the second rank.
After each job every rank writes FOLDER/<name>-rank<N>.json, then waits for the other rank's, so a
failure later in the launch leaves the reports of the jobs before it whole. The runs:
- `train` (frozen: a node the generated code freezes; data: what the batches hold: `single` (16x16
  images, a class out of 4), `multitask` (a class and a box), `tokens` (input_ids and
  attention_mask of length 16, a class out of 4)): 3 steps with validation. The report holds a
  checksum of the parameters after training, so the test can check that the ranks stayed in sync,
  the loss at each step, and how many collectives (`torch.distributed.all_reduce`, `all_gather`)
  Lightning's logging made inside training steps and outside them (gradients are reduced by DDP's
  C++ reducer, not counted).
- `unfreeze` (a module with `unfreeze: {layer4: 1}` on a ResNet-18 node `resnet`): 2 epochs of 2
  batches per rank, find_unused_parameters left at its default (False). The report holds a digest
  of the parameters' bytes (equal on both ranks: same bits), and after each epoch the top-level
  parts whose state moved since the start (node ids, and resnet.<child> for the backbone).
"""

import hashlib
import importlib.util
import json
import os
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


def ddp_trainer(callback: pl.Callback, **limits) -> pl.Trainer:
    return pl.Trainer(
        callbacks=[callback],
        accelerator="cpu",
        devices=2,
        strategy="ddp",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **limits,
    )


def sample(data: str, g: torch.Generator):
    label = torch.randint(0, 4, (), generator=g)
    if data == "tokens":
        mask = (torch.arange(16) < torch.randint(4, 17, (), generator=g)).long()  # padded at the end
        return {"input_ids": torch.randint(1, 100, (16,), generator=g) * mask, "attention_mask": mask}, label
    target = {"label": label, "box": torch.rand(4, generator=g)} if data == "multitask" else label
    return torch.randn(3, 16, 16, generator=g), target


def train(lm: pl.LightningModule, frozen: str, data: str) -> tuple[pl.Trainer, dict]:
    frozen_node = getattr(lm.model, frozen)
    before = {k: v.clone() for k, v in frozen_node.state_dict().items()}
    g = torch.Generator().manual_seed(0)
    loader = torch.utils.data.DataLoader([sample(data, g) for _ in range(24)], batch_size=4)
    counter = LoggingCollectives()
    trainer = ddp_trainer(counter, max_steps=3)
    trainer.fit(lm, train_dataloaders=loader, val_dataloaders=loader)
    counter.restore()
    with torch.no_grad():
        return trainer, {
            "world_size": trainer.world_size,
            "global_step": trainer.global_step,
            "checksum": sum(float(p.double().sum()) for p in lm.parameters()),
            "frozen_unchanged": all(torch.equal(before[k], v) for k, v in frozen_node.state_dict().items()),
            "metrics": {k: float(v) for k, v in trainer.callback_metrics.items()},
            "step_losses": counter.losses,
            "logging_collectives_in_steps": counter.in_steps,
            "logging_collectives_elsewhere": counter.elsewhere,
        }


def unfreeze(lm: pl.LightningModule) -> tuple[pl.Trainer, dict]:
    moved = Moved({k: v.clone() for k, v in lm.model.state_dict().items()})
    g = torch.Generator().manual_seed(0)
    samples = [
        (torch.randn(4, 3, 32, 32, generator=g), torch.randint(0, 5, (4,), generator=g)) for _ in range(4)
    ]
    trainer = ddp_trainer(moved, max_epochs=2)
    trainer.fit(lm, train_dataloaders=torch.utils.data.DataLoader(samples, batch_size=None))
    return trainer, {
        "world_size": trainer.world_size,
        "global_step": trainer.global_step,
        "digest": hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in lm.parameters())).hexdigest(),
        "moved": moved.per_epoch,
    }


RUNS = {"train": train, "unfreeze": unfreeze}


def load(path: str):
    spec = importlib.util.spec_from_file_location(Path(path).stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(folder: Path) -> None:
    for job in json.loads((folder / "jobs.json").read_text()):
        name, run, path, class_name = (job.pop(key) for key in ("name", "run", "path", "module"))
        rank = os.environ.get("LOCAL_RANK", "0")  # set by Lightning from the first launch on
        print(f"ddp_train.py, rank {rank}: job {name!r} starts", file=sys.stderr, flush=True)
        module = load(path)
        torch.manual_seed(0)  # the same initial weights on every rank
        trainer, report = RUNS[run](getattr(module, class_name)(), **job)
        (folder / f"{name}-rank{trainer.global_rank}.json").write_text(json.dumps(report))
        torch.distributed.barrier()  # both reports written before either rank goes on


if __name__ == "__main__":
    main(Path(sys.argv[1]))
