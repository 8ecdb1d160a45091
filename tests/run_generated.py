"""Run generated files the way a user would, with nncompile NOT importable.

Usage: python run_generated.py  -> serves requests: one JSON line each on stdin, {"path": the
generated file, "expected": the compiler's predictions (class name, inputs, each node's output
shapes...), "cwd": the folder to run in}; one JSON line each on stdout, {"report": ...} or
{"error": a traceback}. One process runs every generated file a test process asks for: torch and
Lightning are imported once, not once a file (about 5 s each). `Runner` is the tests' side.
"""

import importlib.abc
import importlib.util
import json
import math
import os
import select
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path


class _BlockNncompile(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "nncompile" or name.startswith("nncompile."):
            raise ImportError("generated code must not import nncompile")
        return None


def shapes_of(value):
    import torch

    if isinstance(value, torch.Tensor):
        return list(value.shape)
    if isinstance(value, dict):
        return {k: shapes_of(v) for k, v in value.items()}
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return [len(value)]  # a detector's predictions: a list of B dicts, shape (B,)
    if isinstance(value, (list, tuple)):
        return {str(i): shapes_of(v) for i, v in enumerate(value) if isinstance(v, torch.Tensor)}
    return None


def small_detectors(model) -> None:
    """Detection models resize their images to 800 pixels and run their heads on up to 2000
    proposals and 100 detections an image: 64 pixels, 64 proposals (16 sampled for training) and
    4 detections keep this run cheap on a CPU."""
    from torchvision.models.detection.roi_heads import RoIHeads
    from torchvision.models.detection.rpn import RegionProposalNetwork
    from torchvision.models.detection.transform import GeneralizedRCNNTransform

    for module in model.modules():
        if isinstance(module, GeneralizedRCNNTransform):
            module.min_size, module.max_size = (64,), 64
        elif isinstance(module, RegionProposalNetwork):
            module._pre_nms_top_n = module._post_nms_top_n = {"training": 64, "testing": 64}
        elif isinstance(module, RoIHeads):
            module.fg_bg_sampler.batch_size_per_image = 16
            module.detections_per_img = 4


def detection_sample(shape):
    """A list of 2 images with 2 boxes each (and their masks and keypoints)."""
    import torch

    images, targets = [], []
    for _ in range(2):
        _, h, w = shape
        boxes = torch.tensor([[2.0, 3.0, w / 2, h / 2], [w / 4, h / 4, w - 1.0, h - 1.0]])
        masks = torch.zeros(2, h, w, dtype=torch.uint8)
        for mask, (x1, y1, x2, y2) in zip(masks, boxes.int().tolist(), strict=True):
            mask[y1:y2, x1:x2] = 1
        keypoints = torch.cat([boxes[:, None, :2], torch.ones(2, 1, 1)], dim=2)
        images.append(torch.rand(*shape))
        targets.append(
            {"boxes": boxes, "labels": torch.tensor([1, 1]), "masks": masks, "keypoints": keypoints}
        )
    return images, targets


def dummy_inputs(inputs: dict, batch: int) -> dict:
    """Random inputs {name: tensor} of `batch` samples for the spec's `inputs` {name: (shape, dtype)}."""
    import torch

    out = {}
    for name, (shape, dtype) in inputs.items():
        if dtype.startswith("int"):
            out[name] = torch.randint(0, 4, (batch, *shape), dtype=getattr(torch, dtype))
        else:
            out[name] = torch.randn(batch, *shape, dtype=getattr(torch, dtype))
    return out


def dummy_target(preds, heads: dict, task: str, batch: int):
    """A random target shaped for the model's predictions `preds`: `heads` maps each trained
    output to its kind; a multitask target is a dict of them."""
    import torch

    targets = {}
    for name, kind in heads.items():
        p = preds[name] if isinstance(preds, dict) else preds
        if kind in ("multiclass", "classification", "segmentation"):
            targets[name] = torch.randint(0, p.shape[1], p.shape[:1] + p.shape[2:])
        elif kind == "multilabel":
            targets[name] = torch.randint(0, 2, p.shape).float()
        elif kind == "binary":
            targets[name] = torch.randint(0, 2, p.shape[:1]).float()
        else:
            targets[name] = torch.randn_like(p)
    if task == "multitask":
        return targets
    return next(iter(targets.values())) if targets else torch.zeros(batch)


def with_training_step(lightning_cls):
    """A subclass of a `kind: custom` LightningModule with the training step a user writes: the
    mean square of every output."""

    class Custom(lightning_cls):
        def training_step(self, batch, batch_idx):
            inputs, _ = self.unpack_batch(batch)
            out = self(**inputs)
            values = out.values() if isinstance(out, dict) else [out]
            loss = sum(v.float().pow(2).mean() for v in values)
            self.log("train_loss", loss)
            return loss

    return Custom


def run(path: str, expected: dict, module_name: str) -> dict:
    """Import one generated file, check its shapes, train it 2 steps and round-trip a checkpoint."""
    import pytorch_lightning as pl
    import torch

    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    report = {"nncompile_imported": "nncompile" in sys.modules}
    model_cls = getattr(module, expected["name"])
    lightning_cls = getattr(module, expected["name"] + "Module")
    kwargs = {"pretrained": False} if expected["pretrained"] else {}

    torch.manual_seed(0)
    batch = 2

    def make_inputs():
        return dummy_inputs(expected["inputs"], batch)

    detection = expected["task"] == "detection"
    if expected["task"] == "custom":
        lightning_cls = with_training_step(lightning_cls)
    # The spec's learning rate is for pretrained weights: from random ones (FrozenBatchNorm2d
    # layers that do not normalize) 2 steps of it leave a detector whose every output is NaN.
    lm = lightning_cls(**kwargs, lr=1e-4) if detection else lightning_cls(**kwargs)
    small_detectors(lm)

    # Shapes, on the model the LightningModule built (one build fewer: VGG's takes a second).
    model = lm.model
    assert type(model) is model_cls, type(model)
    modes = {m: m.training for m in model.modules()}
    seen, hooks = {}, []
    for node_id in expected["nodes"]:
        sub = getattr(model, node_id, None)
        if isinstance(sub, torch.nn.Module):
            hooks.append(
                sub.register_forward_hook(
                    lambda m, a, o, node_id=node_id: seen.__setitem__(node_id, shapes_of(o))
                )
            )
    if detection:  # one input: a list of images; the model's own losses are trained
        ((shape, _),) = expected["inputs"].values()
        shape = [shape[0], 64, 64]  # the size small_detectors resizes to: masks are pasted back cheaply
        inputs = {next(iter(expected["inputs"])): detection_sample(shape)[0]}
    else:
        inputs = make_inputs()
    with torch.no_grad():
        out = model.eval()(**inputs)
    for hook in hooks:
        hook.remove()
    for m, training in modes.items():  # as built: the Trainer starts from there
        m.training = training
    report["node_shapes"] = seen
    report["output_shapes"] = shapes_of(out)

    # Train 2 steps, checkpoint, restore, compare outputs.
    samples = [detection_sample(shape) for _ in range(2)] if detection else []
    for _ in range(0 if detection else 2):
        x = make_inputs()
        y = dummy_target(out, expected["heads"], expected["task"], batch)  # shaped as any batch's
        single = len(x) == 1
        samples.append((next(iter(x.values())) if single else x, y))
    trainer = pl.Trainer(
        accelerator="cpu",
        max_steps=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,  # the validation after the 2 steps runs the same code
        limit_val_batches=1,
    )
    loader = torch.utils.data.DataLoader(samples, batch_size=None)
    validate = expected["task"] != "custom"  # a custom module has no validation_step
    trainer.fit(lm, train_dataloaders=loader, val_dataloaders=loader if validate else None)
    losses = {k: float(v) for k, v in trainer.callback_metrics.items()}
    report["metrics"] = losses
    report["finite_loss"] = all(math.isfinite(v) for v in losses.values()) and "train_loss" in losses
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "model.ckpt"
        trainer.save_checkpoint(ckpt, weights_only=True)  # what load_from_checkpoint reads
        restored = lightning_cls.load_from_checkpoint(ckpt)  # must not download weights
        small_detectors(restored)
        lm.eval()
        restored.eval()
        x = {"images": detection_sample(shape)[0]} if detection else make_inputs()
        with torch.no_grad():
            a, b = (lm(*x.values()), restored(*x.values())) if detection else (lm(**x), restored(**x))
        if detection:  # one dict of predictions per image
            pairs = [(p[k], q[k]) for p, q in zip(a, b, strict=True) for k in p]
        else:
            pairs = [(a[k], b[k]) for k in a] if isinstance(a, dict) else [(a, b)]
        report["restored_equal"] = all(torch.equal(p, q) for p, q in pairs)
        report["compared_values"] = sum(p.numel() for p, _ in pairs)
    return report


def serve() -> None:
    replies = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # what Lightning or a generated file prints goes to stderr, not into the replies
    sys.meta_path.insert(0, _BlockNncompile())
    for number, line in enumerate(sys.stdin):
        request = json.loads(line)
        os.chdir(request["cwd"])
        try:
            reply = {"report": run(request["path"], request["expected"], f"generated_model_{number}")}
        except Exception:
            reply = {"error": traceback.format_exc()}
        replies.write(json.dumps(reply) + "\n")
        replies.flush()


class Runner:
    """Sends files to one serving process, started on first use and again after it died or hung.
    Its stderr goes to `log`; a failed run's message shows the part written during that run."""

    def __init__(self, env: dict, log: Path, timeout: float = 600):
        self.env, self.log, self.timeout = env, log, timeout
        self.process = None

    def run(self, path, expected: dict, cwd) -> dict:
        if self.process is None:
            with open(self.log, "ab") as stderr:
                command = [sys.executable, __file__]
                self.process = subprocess.Popen(
                    command,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=stderr,
                    env=self.env,
                    text=True,
                )
        start = self.log.stat().st_size
        request = {"path": str(path), "expected": expected, "cwd": str(cwd)}
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        ready, _, _ = select.select([self.process.stdout], [], [], self.timeout)
        line = self.process.stdout.readline() if ready else ""
        if not line:  # hung or died: the next run starts a fresh process
            self.close()
        with open(self.log, errors="replace") as stderr:
            stderr.seek(start)
            written = stderr.read()
        assert line, f"the runner {'hung' if not ready else 'died'}:\n{written[-4000:]}"
        reply = json.loads(line)
        assert "error" not in reply, f"{reply['error']}\n{written[-4000:]}"
        return reply["report"]

    def close(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


if __name__ == "__main__":
    serve()
