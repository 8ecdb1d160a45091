"""Task kinds: what the generated LightningModule does with the model's outputs.

One table maps each task kind to its module under kinds/. Each module plans its kind's
LightningModule with `plan(...)` and says which outputs it trains with `trained_outputs(...)`;
a new kind is one module, one entry here and, if the general template does not fit it, its
template. Losses and metrics are built and run once on dummy tensors at compile time, so a wrong
argument, a class weight of the wrong length or a loss that does not fit the kind fails here,
at the spec's line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..pyfmt import Expr
from ..spec.model import TaskSpec
from . import untrained
from .general import LightningIR
from .kinds import classification, custom, detection, multitask, segmentation
from .kinds.detection import DetectionIR

if TYPE_CHECKING:
    from ..shapes.propagate import Shaped

KINDS = {
    "multiclass": classification,
    "classification": classification,
    "multilabel": classification,
    "binary": classification,
    "regression": classification,
    "multitask": multitask,
    "custom": custom,
    "segmentation": segmentation,
    "detection": detection,
}

# The expression handed to `configure_optimizers`' optimizer; per-node parameter groups replace it.
ALL_PARAMETERS = "self.parameters()"


def plan_lightning(
    task: TaskSpec,
    shaped: Shaped,
    model,
    params: list[str],
    returns: str,
    optimizer_params: Expr = ALL_PARAMETERS,
    rates: list[tuple[str, float, object]] = (),
) -> LightningIR | DetectionIR:
    """The LightningModule half of the emit IR (`model` is the planned nn.Module, a plan.ModelIR).

    `optimizer_params` is what configure_optimizers hands the optimizer: the trainable
    parameters, or per-node parameter groups, when the plan computes them; `rates`: the
    hyperparameters those groups read (name, default, spec location).
    """
    return KINDS[task.kind].plan(task, shaped, model, params, returns, optimizer_params, rates)


def untrained_nodes(shaped: Shaped) -> list[str]:
    """The nodes with parameters that feed only outputs the task does not train."""
    task = shaped.graph.spec.task
    if task is None:
        return []
    return untrained.untrained_nodes(shaped, KINDS[task.kind].trained_outputs(task, shaped.outputs))
