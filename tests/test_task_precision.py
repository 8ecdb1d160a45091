"""Losses and metrics are computed in float32 under mixed precision, never in the autocast dtype:
a generated module validated under precision="bf16-mixed" logs the same numbers as under
"32-true" (regression targets near 1000 would move by up to 4 if they were cast to bfloat16),
and both match a float64 computation made here from the same outputs and targets.

The model is swapped for an identity Linear fed with values bfloat16 holds exactly, so its
outputs are the same numbers in both precisions (bfloat16 under autocast, float32 without): any
difference in what is logged comes from the loss and metric half of the module."""

import pytest
import torch
import torch.nn.functional as F
from conftest import ROOT
from task_helpers import load_generated, trainer
from torch import nn

SPECS = ROOT / "specs"
N = 16


class ExactOutputs(nn.Module):
    """Returns its input through an identity Linear (autocast makes that bfloat16), split into
    named outputs of the given widths, or one output when `widths` has one entry."""

    def __init__(self, widths: dict[str, int]):
        super().__init__()
        total = sum(widths.values())
        self.linear = nn.Linear(total, total, bias=False)
        with torch.no_grad():
            self.linear.weight.copy_(torch.eye(total))
        self.widths = widths
        self.dtypes = []

    def forward(self, *args, **kwargs):
        (x,) = [*args, *kwargs.values()]
        out = self.linear(x)
        self.dtypes.append(out.dtype)
        if len(self.widths) == 1:
            return out
        parts = out.split(list(self.widths.values()), dim=1)
        return dict(zip(self.widths, parts, strict=True))  # non-contiguous views, as a split gives


def exact(t: torch.Tensor) -> torch.Tensor:
    """Values bfloat16 represents exactly, as float32."""
    return t.bfloat16().float()


def regression(g):
    outputs = exact(1000 + 8 * torch.randn(N, 3, generator=g))
    target = 1000 + 8 * torch.randn(N, 3, generator=g)  # not representable in bfloat16
    p, t = outputs.double(), target.double()
    r2 = 1 - ((t - p) ** 2).sum(0) / ((t - t.mean(0)) ** 2).sum(0)
    want = {
        "val_loss": F.huber_loss(p, t),
        "val_mae": (p - t).abs().mean(),
        "val_mse": ((p - t) ** 2).mean(),
        "val_r2": r2.mean(),
    }
    return {"forecast": 3}, outputs, target, want


def binary(g):
    outputs = exact(torch.randn(N, 1, generator=g))
    target = torch.tensor([0.0, 1.0] * (N // 2))
    p, t = outputs.double().squeeze(1), target.double()
    pos, neg = p[t == 1], p[t == 0]
    pairs = pos[:, None] - neg[None, :]
    want = {
        "val_loss": F.binary_cross_entropy_with_logits(p, t),
        "val_accuracy": ((p > 0).double() == t).double().mean(),
        "val_auroc": ((pairs > 0).double() + 0.5 * (pairs == 0).double()).mean(),
    }
    return {"logit": 1}, outputs, target, want


def multilabel(g):
    outputs = exact(torch.randn(N, 5, generator=g))
    target = torch.randint(0, 2, (N, 5), generator=g).float()
    p, t = outputs.double(), target.double()
    hit = (p > 0).double()
    tp, fp, fn = (hit * t).sum(), (hit * (1 - t)).sum(), ((1 - hit) * t).sum()
    pos_weight = torch.tensor([1.0, 1.0, 2.0, 4.0, 4.0], dtype=torch.float64)
    want = {
        "val_loss": F.binary_cross_entropy_with_logits(p, t, pos_weight=pos_weight),
        "val_accuracy": (hit == t).double().mean(),
        "val_f1": 2 * tp / (2 * tp + fp + fn),
    }
    return {"tags": 5}, outputs, target, want


def multitask(g):
    outputs = torch.cat(
        [exact(torch.randn(N, 4, generator=g)), exact(1000 + 8 * torch.randn(N, 4, generator=g))], dim=1
    )
    target = {
        "label": torch.randint(0, 4, (N,), generator=g),
        "box": 1000 + 8 * torch.randn(N, 4, generator=g),
    }
    label, box = outputs.double()[:, :4], outputs.double()[:, 4:]
    label_loss = F.cross_entropy(label, target["label"])
    box_loss = F.smooth_l1_loss(box, target["box"].double())
    want = {
        "val_loss": label_loss + 0.5 * box_loss,
        "val_label_loss": label_loss,
        "val_box_loss": box_loss,
        "val_label_accuracy": (label.argmax(1) == target["label"]).double().mean(),
        "val_box_mae": (box - target["box"].double()).abs().mean(),
    }
    return {"label": 4, "box": 4}, outputs, target, want


CASES = {
    "task_regression": ("ForecasterModule", regression),
    "task_binary": ("SpamFilterModule", binary),
    "task_multilabel": ("TaggerModule", multilabel),
    "task_multitask": ("DetectorModule", multitask),
}


@pytest.mark.parametrize("name", CASES)
def test_bf16_mixed_logs_what_32_true_logs(name, tmp_path):
    cls_name, make = CASES[name]
    module = load_generated(SPECS / f"{name}.yaml", tmp_path)
    widths, outputs, target, want = make(torch.Generator().manual_seed(0))
    loader = torch.utils.data.DataLoader([(outputs, target)], batch_size=None)
    logged = {}
    for precision in ("32-true", "bf16-mixed"):
        lm = getattr(module, cls_name)()
        lm.model = ExactOutputs(widths)
        (logged[precision],) = trainer(precision=precision).validate(lm, loader, verbose=False)
        autocast_dtype = torch.bfloat16 if precision == "bf16-mixed" else torch.float32
        assert lm.model.dtypes == [autocast_dtype]  # the outputs were in the autocast dtype
    assert set(want) <= set(logged["32-true"])
    for key, value in want.items():
        # torchmetrics' R2 takes the total sum of squares as sum(t^2) - sum(t)^2 / n, which loses
        # digits in float32 with targets near 1000: about 1e-3 here, in either precision.
        rel = 2e-3 if key == "val_r2" else 1e-5
        for precision in ("32-true", "bf16-mixed"):
            assert logged[precision][key] == pytest.approx(float(value), rel=rel), (precision, key)
        assert logged["bf16-mixed"][key] == pytest.approx(logged["32-true"][key], rel=1e-6, abs=1e-6), key
