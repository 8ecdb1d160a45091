"""What each input must be, from the pretrained weights it feeds: its normalisation (`normalize:
weights` or by hand) and the preprocessing the weights expect (for the LightningModule's
`transforms()`). An input's weights are those of the nodes that read it directly."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import Diagnostic, SpecError
from ..ops.base import WeightsInput


@dataclass(frozen=True)
class Normalization:
    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: str  # where the numbers come from, for the generated comment


def expected_by_input(spec, nodes) -> dict[str, tuple[str, WeightsInput]]:
    """Input name -> (node id, what its weights expect) for the inputs read by a node whose
    weights' metadata nncompile knows (the first such node)."""
    out: dict[str, tuple[str, WeightsInput]] = {}
    names = {i.name for i in spec.inputs}
    for node_id, result in nodes.items():
        expected = result.built.weights_input
        for ref in result.inputs:
            if expected is not None and ref.port is None and ref.node in names:
                out.setdefault(ref.node, (node_id, expected))
    return out


def normalizations(spec, expected: dict[str, tuple[str, WeightsInput]], warnings: list) -> dict:
    """Input name -> its Normalization, for the inputs with `normalize:`; a note for those left
    as they come that feed weights trained on normalised inputs."""
    out = {}
    for given in spec.inputs:
        found = expected.get(given.name)
        if given.normalize is None:
            if found is not None:
                warnings.append(_unnormalized_note(given, *found))
            continue
        if given.normalize != "weights":
            mean, std = given.normalize
            out[given.name] = Normalization(mean, std, "given in the spec")
            continue
        if found is None:
            raise SpecError(
                f"`normalize: weights` but no node reading input '{given.name}' has pretrained weights "
                "whose normalisation nncompile knows",
                given.normalize_loc,
                hint="feed the input straight to a pretrained backbone (torchvision, timm, torchgeo), or give "
                "`normalize: {mean: [...], std: [...]}`",
            )
        node_id, weights = found
        channels = given.shape[0]
        if len(weights.mean) not in (1, channels):
            raise SpecError(
                f"the weights of node '{node_id}' normalise {len(weights.mean)} channels, the input has {channels}",
                given.normalize_loc,
                hint="name the bands (`bands:` and the node's `weights_bands:`), or give "
                "`normalize: {mean: [...], std: [...]}`",
            )
        if weights.new_channels:
            warnings.append(
                Diagnostic(
                    f"{weights.new_channels} channel(s) of input '{given.name}' are bands the weights never "
                    "saw: they are normalised with the average of the weights' statistics",
                    given.normalize_loc,
                    hint="give `normalize: {mean: [...], std: [...]}` with the statistics of your data",
                    severity="warning",
                )
            )
        mean, std = (tuple(v * channels) if len(v) == 1 else v for v in (weights.mean, weights.std))
        out[given.name] = Normalization(mean, std, f"{weights.source}, the weights of node '{node_id}'")
    return out


FAR = 2  # an input more than this many times smaller or larger than the training size: a warning


def size_warnings(spec, expected: dict[str, tuple[str, WeightsInput]]) -> list[Diagnostic]:
    """A warning for each image input far from the size its weights were trained at: the
    features they learnt are of that scale."""
    out = []
    for given in spec.inputs:
        if given.name not in expected or len(given.shape) != 3:
            continue
        node_id, weights = expected[given.name]
        trained = weights.crop
        if trained is None or all(trained / FAR <= side <= trained * FAR for side in given.shape[1:]):
            continue
        size = "x".join(map(str, given.shape[1:]))
        out.append(
            Diagnostic(
                f"input '{given.name}' is {size}, far from the {trained}x{trained} the weights of node "
                f"'{node_id}' were trained at ({weights.source})",
                given.loc,
                hint=f"resize to about {trained}x{trained} (the LightningModule's transforms(), where generated), "
                "or expect the pretrained features to transfer less well",
                severity="warning",
            )
        )
    return out


def _unnormalized_note(given, node_id: str, weights: WeightsInput) -> Diagnostic:
    return Diagnostic(
        f"input '{given.name}' feeds node '{node_id}', whose weights expect inputs normalised with mean "
        f"{_numbers(weights.mean)} and std {_numbers(weights.std)} ({weights.source})",
        given.loc,
        hint="add `normalize: weights` to the input to do it inside the model, or normalise in your data pipeline",
        severity="note",
    )


def _numbers(values: tuple[float, ...]) -> str:
    return "[" + ", ".join(f"{v:g}" for v in values) + "]"
