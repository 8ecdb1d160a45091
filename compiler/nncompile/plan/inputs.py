"""The inputs' normalisation as the model's first step: per-channel constants held as buffers (they
move with the model and are exported with it, but stay out of its state dict, so checkpoints and
weight files are those of the model without them)."""

from __future__ import annotations

import inspect

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


def transforms_method(shaped: Shaped) -> tuple[list[str], dict[str, str]]:
    """The LightningModule's `transforms()`, the evaluation preprocessing the weights expect of
    the input that declares `normalize:` or `bands:` (the inputs matched to their weights), and the
    helper it calls; nothing when no such input feeds weights nncompile knows."""
    spec = shaped.graph.spec
    matched = [i for i in spec.inputs if (i.normalize or i.bands) and i.name in shaped.expected]
    if len(matched) != 1:
        return [], {}
    from ..runtime.transforms import _eval_transforms  # imports torchvision.transforms.v2: only here

    given = matched[0]
    node_id, weights = shaped.expected[given.name]
    inside = given.name in shaped.normalization
    stats = (
        () if inside else (Arg("mean", literal(list(weights.mean))), Arg("std", literal(list(weights.std))))
    )
    args = (
        Arg(None, literal(list(weights.resize) if weights.resize else None)),
        Arg(None, literal(weights.crop)),
        Arg(None, literal(weights.interpolation)),
        Arg("scale", literal(weights.scale)),
        *stats,
    )
    then = "the model normalises it itself" if inside else "then normalised as the weights expect"
    lines = [
        "",
        "    @staticmethod",
        "    def transforms() -> nn.Module:",
        f'        """The evaluation preprocessing of input `{given.name}` that the weights of node {node_id!r}',
        f"        expect: resize, centre crop, float; {then}. For the DataModule's",
        "        validation and test images. From:",
        f'        {weights.source}"""',
        *statement("return ", Call("_eval_transforms", args), 2),
    ]
    return lines, {"_eval_transforms": inspect.getsource(_eval_transforms)}
