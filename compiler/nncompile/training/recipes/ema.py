"""An exponential moving average of the weights (`task: {ema: {decay: 0.999}}`), kept by
Lightning's own `WeightAveraging` callback, which the LightningModule's `configure_callbacks`
returns (so a plain Trainer gets it). The average is updated after every optimizer step with
torch's `get_ema_multi_avg_fn` (a lerp: a weight that does not move, frozen, stays bit-identical
in the average); validation and the end of training use the averaged weights, and a checkpoint
holds both (`state_dict`: the average, `current_model_state`: the weights being trained), so
resuming restores both and `load_from_checkpoint` gives the average."""

from __future__ import annotations

from ...errors import SpecError
from ...pyfmt import Arg, Call
from ..hparams import HParams

IMPORTS = {
    "from pytorch_lightning.callbacks import WeightAveraging",
    "from torch.optim.swa_utils import get_ema_multi_avg_fn",
}


# Said where configure_callbacks returns the callback.
COMMENT = "WeightAveraging: validation uses the EMA, checkpoints keep both"


def plan_ema(ema, hparams: HParams) -> tuple[Call | None, set[str]]:
    """The `WeightAveraging` callback configure_callbacks returns, and its imports; the decay is
    the `ema_decay` hyperparameter."""
    if ema is None:
        return None, set()
    try:
        from pytorch_lightning.callbacks import WeightAveraging  # noqa: F401
    except ImportError:
        raise SpecError(
            "`ema:` uses Lightning's WeightAveraging callback, which this pytorch_lightning lacks",
            ema.loc,
            hint="pip install 'pytorch-lightning>=2.6'",
        ) from None
    decay = hparams.add("ema_decay", ema.decay, ema.loc)
    average = Call("get_ema_multi_avg_fn", (Arg(None, decay),))
    return Call("WeightAveraging", (Arg("multi_avg_fn", average),)), set(IMPORTS)
