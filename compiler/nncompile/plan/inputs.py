"""The inputs' normalisation as the model's first step: per-channel constants held as buffers (they
move with the model and are exported with it, but stay out of its state dict, so checkpoints and
weight files are those of the model without them)."""

from __future__ import annotations

from ..errors import SpecError
from ..pyfmt import Arg, Call, Seq, literal, statement
from ..shapes.propagate import Shaped


def normalization_lines(shaped: Shaped) -> tuple[list[str], list[str]]:
    """(__init__ lines registering each normalised input's mean and std, forward() lines applying them)."""
    init: list[str] = []
    forward: list[str] = []
    spec = shaped.graph.spec
    for given in spec.inputs:
        norm = shaped.normalization.get(given.name)
        if norm is None:
            continue
        names = (f"{given.name}_mean", f"{given.name}_std")
        taken = [n for n in names if n in shaped.nodes]
        if taken:
            raise SpecError(
                f"node '{taken[0]}' has the name of input '{given.name}''s normalisation constants",
                given.normalize_loc,
                hint=f"rename node '{taken[0]}'",
            )
        ones = ", 1" * (len(given.shape) - 1)
        init.append(
            f"        # input {given.name} normalised as the model's first step, with the numbers of:"
        )
        init.append(f"        # {norm.source}")
        for name, values in zip(names, (norm.mean, norm.std), strict=True):
            tensor = Call(
                "torch.tensor",
                (Arg(None, Seq(tuple(literal(v) for v in values))),),
                suffix=f".view(1, -1{ones})",
            )
            args = (Arg(None, literal(name)), Arg(None, tensor), Arg("persistent", "False"))
            init += statement("", Call("self.register_buffer", args), 2)
        forward += statement(f"{given.name} = ", f"({given.name} - self.{names[0]}) / self.{names[1]}", 2)
    return init, forward
