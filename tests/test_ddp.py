"""Generated LightningModules train under strategy="ddp" with 2 CPU processes (gloo) without
tripping DDP's unused-parameter check: a multitask model with frozen layers, and a single-output
task on a two-output model (the layers of the untrained output are frozen by the generated code).
The two ranks see different batches and must end with the same weights. Logging makes no
collective call (all-reduce, all-gather) inside a training step, and the epoch's train_loss is
still the mean over both ranks."""

import pytest
import torch
from conftest import ROOT
from ddp_jobs import ddp_job

SINGLE_OUTPUT_TASK = """\
task:
  kind: multiclass
  output: label
"""
MULTITASK = (ROOT / "specs" / "task_multitask.yaml").read_text()
# frozen by the spec: the generated code's freezing is what keeps it fixed under DDP
FROZEN_CONV = MULTITASK.replace("conv: {op: Conv2d,", "conv: {op: Conv2d, freeze: true,")
SINGLE = MULTITASK[: MULTITASK.index("task:")].replace("Detector", "Classifier") + SINGLE_OUTPUT_TASK
DETECTOR = ddp_job(
    "detector", FROZEN_CONV, run="train", module="DetectorModule", frozen="conv", data="multitask"
)
# box_fc: the layers of the output the task does not train, frozen by the generated code
CLASSIFIER = ddp_job(
    "classifier", SINGLE, run="train", module="ClassifierModule", frozen="box_fc", data="single"
)


@pytest.mark.xdist_group("ddp_launch")  # one worker launches DDP once for every job
def test_multi_output_modules_with_frozen_layers_train_under_ddp(ddp_launch):
    assert "self.model.box_fc.requires_grad_(False)" in ddp_launch.source(CLASSIFIER)
    assert "self.conv.requires_grad_(False)" in ddp_launch.source(DETECTOR)
    for job, metric in [(DETECTOR, "val_box_mae"), (CLASSIFIER, "val_accuracy")]:
        reports = ddp_launch.reports(job)
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
