"""`make demo`: the seed article's story, end to end, on data generated here.

1. compile docs/demo/shapes_base.yaml and train it to tell 4 shapes apart;
2. save its Lightning checkpoint;
3. compile docs/demo/shapes_finetune.yaml, which restores that checkpoint as a frozen backbone
   (`op: checkpoint`) and adds new layers that also see colour, for 12 classes;
4. fine-tune it and print the validation accuracy.

Every file it writes goes to a work folder (default: a temporary one, deleted at the end; keep
it with --workdir).
"""

import argparse
import importlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from shapes import COLOURS, SHAPES, make

HERE = Path(__file__).resolve().parent
MIN_ACCURACY = 0.80


def compile_spec(spec: Path, out: Path, workdir: Path) -> subprocess.CompletedProcess:
    """Run the compiler as a user would; in the work folder, so the spec's relative paths resolve."""
    return subprocess.run(
        [sys.executable, "-m", "nncompile", str(spec), "-o", out.name],
        cwd=workdir,
        capture_output=True,
        text=True,
    )


def loaders(images, labels, n_train: int, batch_size: int = 64):
    train = torch.utils.data.TensorDataset(images[:n_train], labels[:n_train])
    val = torch.utils.data.TensorDataset(images[n_train:], labels[n_train:])
    return (
        torch.utils.data.DataLoader(train, batch_size=batch_size, shuffle=True),
        torch.utils.data.DataLoader(val, batch_size=256),
    )


def fit(lm, train, val, epochs: int) -> tuple[pl.Trainer, float]:
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=epochs,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
    )
    trainer.fit(lm, train_dataloaders=train, val_dataloaders=val)
    return trainer, float(trainer.callback_metrics["val_accuracy"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, help="keep the generated files and checkpoint here")
    args = parser.parse_args()
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
        return demo(args.workdir.resolve())
    cwd = Path.cwd()
    with tempfile.TemporaryDirectory(prefix="nncompile-demo-") as tmp:
        try:
            return demo(Path(tmp).resolve())
        finally:
            os.chdir(cwd)  # out of the folder before it is deleted


def demo(workdir: Path) -> int:
    sys.path.insert(0, str(workdir))  # the generated files import each other from here
    os.chdir(workdir)  # and the fine-tune spec names its checkpoint relative to it
    start = time.time()
    torch.manual_seed(0)
    pl.seed_everything(0, verbose=False)

    print(f"== data: coloured shapes ({', '.join(SHAPES)} x {', '.join(COLOURS)}), work folder {workdir}")
    images, shapes, colours = make(2400, seed=0)

    print("== 1. compile and train the base model (4 shapes)")
    run = compile_spec(HERE / "shapes_base.yaml", workdir / "shapes_base.py", workdir)
    if run.returncode != 0:
        print(run.stderr, file=sys.stderr)
        return 1
    base = importlib.import_module("shapes_base")
    train, val = loaders(images, shapes, 2000)
    trainer, base_accuracy = fit(base.ShapeNetModule(), train, val, epochs=4)
    print(f"base model: validation accuracy {base_accuracy:.1%} on 4 shapes")
    checkpoint = workdir / "base.ckpt"
    trainer.save_checkpoint(checkpoint, weights_only=False)  # a full checkpoint, as a user's would be
    print(f"== 2. saved the Lightning checkpoint {checkpoint.name}")

    print("== 3. compile the fine-tune spec: the checkpoint as a frozen backbone plus new layers")
    run = compile_spec(HERE / "shapes_finetune.yaml", workdir / "shapes_finetune.py", workdir)
    if run.returncode != 0:
        print(run.stderr, file=sys.stderr)
        if "unknown op 'checkpoint'" in run.stderr:
            print(
                "This build of nncompile has no `op: checkpoint` yet (issue 3: Lightning checkpoints "
                "as backbones); the base model above trained and saved, the fine-tune needs it.",
                file=sys.stderr,
            )
        return 1
    finetune = importlib.import_module("shapes_finetune")
    lm = finetune.ShapeColourNetModule()  # pretrained=True: restores base.ckpt
    saved = torch.load(checkpoint, weights_only=True)["state_dict"]
    restored = lm.model.shape_net.state_dict()
    same = all(torch.equal(saved[f"model.{k}"], v) for k, v in restored.items())
    print(f"backbone restored from {checkpoint.name}: {len(restored)} tensors, identical: {same}")

    print("== 4. fine-tune (12 classes: shape x colour)")
    images, shapes, colours = make(2000, seed=1)  # new images for the new task
    train, val = loaders(images, shapes * len(COLOURS) + colours, 1600)
    _, accuracy = fit(lm, train, val, epochs=4)
    frozen = all(torch.equal(saved[f"model.{k}"], v) for k, v in lm.model.shape_net.state_dict().items())
    print(f"frozen backbone unchanged by fine-tuning: {frozen}")
    print(f"fine-tuned model: validation accuracy {accuracy:.1%} on 12 classes ({time.time() - start:.0f} s)")
    if not (same and frozen and accuracy > MIN_ACCURACY):
        print(f"demo FAILED: expected identical restored weights and accuracy above {MIN_ACCURACY:.0%}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
