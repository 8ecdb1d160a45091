"""Generated LightningModules train under strategy="ddp" with 2 CPU processes (gloo) without
tripping DDP's unused-parameter check: a multitask model with frozen layers, and a single-output
task on a two-output model (the layers of the untrained output are frozen by the generated code).
The two ranks see different batches and must end with the same weights. Logging makes no
collective call (all-reduce, all-gather) inside a training step, and the epoch's train_loss is
still the mean over both ranks."""

import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import ROOT
from nncompile import compile_spec

SINGLE_OUTPUT_TASK = """\
task:
  kind: multiclass
  output: label
"""


def test_multi_output_modules_with_frozen_layers_train_under_ddp(tmp_path):
    spec_text = (ROOT / "specs" / "task_multitask.yaml").read_text()
    single_spec = tmp_path / "single.yaml"
    single_spec.write_text(
        spec_text[: spec_text.index("task:")].replace("Detector", "Classifier") + SINGLE_OUTPUT_TASK
    )
    jobs = []
    for spec, name, kind in [
        (ROOT / "specs" / "task_multitask.yaml", "Detector", "multitask"),
        (single_spec, "Classifier", "single"),
    ]:
        generated = tmp_path / f"{name.lower()}.py"
        generated.write_text(compile_spec(spec, generated).source)
        jobs.append(f"{generated}:{name}Module:conv:{kind}")
    single_source = (tmp_path / "classifier.py").read_text()
    assert "self.model.box_fc.requires_grad_(False)" in single_source

    env = {**os.environ, "PYTHONPATH": "", "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "ddp_train.py"), str(tmp_path), *jobs],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    for name, metric in [("Detector", "val_box_mae"), ("Classifier", "val_accuracy")]:
        reports = [json.loads((tmp_path / f"{name}Module-rank{r}.json").read_text()) for r in (0, 1)]
        for report in reports:
            assert report["world_size"] == 2
            assert report["global_step"] == 3
            assert report["frozen_unchanged"]
            assert torch.isfinite(torch.tensor(report["metrics"]["train_loss"]))
            assert metric in report["metrics"]
        # Each rank saw different batches; equal weights mean the gradients were all-reduced.
        assert reports[0]["checksum"] == reports[1]["checksum"]
        assert reports[0]["metrics"]["val_loss"] == reports[1]["metrics"]["val_loss"]  # sync_dist
        for report in reports:
            assert report["logging_collectives_in_steps"] == 0  # no blocking sync per step
            assert report["logging_collectives_elsewhere"] > 0  # the epoch values are synced
        # train_loss: the epoch mean over every step of both ranks (equal batch sizes)
        steps = reports[0]["step_losses"] + reports[1]["step_losses"]
        assert len(steps) == 6
        for report in reports:
            assert report["metrics"]["train_loss"] == pytest.approx(sum(steps) / len(steps), rel=1e-6)
