"""A backbone's stem built by band name: the input's `bands:` against the bands the pretrained
stem's channels saw (`weights_bands:`, or the weights' own list for torchgeo). A band the weights
saw gets exactly its pretrained filter slice; a new band starts by the `new_bands:` rule
(runtime/stem.py's `_stem_by_band`, which the generated file carries)."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from ...errors import Diagnostic, SpecError, did_you_mean
from ...pyfmt import Arg, Call, Seq, literal
from ..base import WeightsInput
from . import surgery

NEW_BANDS = ("mean", "zero", "random")
KEYS = ("weights_bands", "new_bands")


@dataclass(frozen=True)
class BandOptions:
    weights_bands: tuple[str, ...] | None  # declared in the spec
    new_bands: str


def parse(node) -> BandOptions:
    params = node.params
    declared = params.get("weights_bands")
    if declared is not None:
        names = declared if isinstance(declared, list) else [declared]
        for i, band in enumerate(names):
            at = node.doc.loc("nodes", node.id, "weights_bands", *([i] if isinstance(declared, list) else []))
            if not isinstance(band, str) or not band or not isinstance(declared, list):
                raise SpecError(
                    "`weights_bands:` takes a list of band names",
                    at,
                    node=node.id,
                    hint="the band each pretrained input channel saw, e.g. [B04, B03, B02] for RGB weights",
                )
            if band_key(band) in map(band_key, names[:i]):
                raise SpecError(f"band {band!r} is listed twice", at, node=node.id)
        declared = tuple(names)
    new_bands = params.get("new_bands", "mean")
    if new_bands not in NEW_BANDS:
        raise SpecError(
            f"unknown `new_bands` rule {new_bands!r}",
            node.param_loc("new_bands"),
            node=node.id,
            hint=did_you_mean(str(new_bands), NEW_BANDS) or "new_bands: mean | zero | random",
        )
    return BandOptions(declared, new_bands)


def band_key(name: str) -> str:
    """Band names compared as Sentinel-2's are written either way: B02 is B2, B8a is B8A."""
    match = re.fullmatch(r"([A-Za-z_]*)0*(\d\w*)", name)
    return (match[1] + match[2] if match else name).upper()


def sources(bands: tuple[str, ...], weights_bands: tuple[str, ...]) -> list[int | None]:
    """For each input band, the pretrained channel that saw it, or None for a new band."""
    index = {band_key(b): i for i, b in enumerate(weights_bands)}
    return [index.get(band_key(b)) for b in bands]


def check_declared(node, opts: BandOptions, stem_channels: int, what: str, bands) -> None:
    """`weights_bands:` names one band per pretrained stem channel, and needs the input's `bands:`."""
    if opts.weights_bands is None:
        return
    if len(opts.weights_bands) != stem_channels:
        raise SpecError(
            f"`weights_bands:` names {len(opts.weights_bands)} bands but the stem of {what} takes "
            f"{stem_channels} channels",
            node.param_loc("weights_bands"),
            node=node.id,
            hint=f"name the band each of its {stem_channels} pretrained input channels saw",
        )
    if bands is None:
        raise SpecError(
            "`weights_bands:` needs the names of the input's channels",
            node.param_loc("weights_bands"),
            node=node.id,
            hint="add `bands: [...]` to the input this node reads (it must read an input directly)",
        )


def by_band(node, model, path: str, conv, bands, weights_bands, rule: str, built) -> None:
    """Replace the stem `conv` (module `path` of `model`) by one built by band name, and say in the
    generated code and header which channel came from where."""
    import inspect

    import torch

    from ...runtime.stem import _stem_by_band

    mapping = sources(bands, weights_bands)
    if mapping == list(range(len(weights_bands))):
        return  # the bands the weights saw, in their order: the stem as it is
    with torch.device("meta"):
        surgery.set_submodule(model, path, _stem_by_band(conv, mapping, rule))
    code = f"self.{node.id}{surgery.module_path_code(path)}"
    args = (Arg(None, code), Arg(None, Seq(tuple(literal(s) for s in mapping))), Arg(None, literal(rule)))
    built.init.append(
        (
            f"{code} = ",
            Call("_stem_by_band", args),
            "stem by band, input band <- pretrained channel: " + _origins(bands, mapping),
        )
    )
    built.helpers["_stem_by_band"] = inspect.getsource(_stem_by_band)
    built.notes.append(
        f"stem {path} built by band: "
        + ", ".join(
            f"{band} = pretrained channel {s} ({weights_bands[s]})"
            if s is not None
            else f"{band} = new ({rule})"
            for band, s in zip(bands, mapping, strict=True)
        )
    )


def remap(expected: WeightsInput | None, channels: list[int | None] | None) -> WeightsInput | None:
    """The weights' per-channel statistics moved with the stem's channels (`channels`: the pretrained
    channel of each input channel); a new channel gets their average, which `new_channels` counts."""
    if expected is None or channels is None or len(expected.mean) == 1:
        return expected

    def pick(values: tuple[float, ...], source: int | None) -> float:
        return values[source] if source is not None else sum(values) / len(values)

    return dataclasses.replace(
        expected,
        mean=tuple(pick(expected.mean, s) for s in channels),
        std=tuple(pick(expected.std, s) for s in channels),
        new_channels=sum(s is None for s in channels),
    )


def _origins(bands, mapping) -> str:
    return ", ".join(
        f"{b}<-{s}" if s is not None else f"{b} new" for b, s in zip(bands, mapping, strict=True)
    )


def repeats_rgb(node, bands: tuple[str, ...], stem_channels: int) -> Diagnostic:
    """The warning for named bands fed to a stem whose pretrained channels are not named."""
    return Diagnostic(
        f"the input's {len(bands)} bands reach a stem pretrained on {stem_channels} unnamed channels: it "
        "repeats the pretrained filters, so which band gets which filter is arbitrary",
        node.op_loc(),
        node=node.id,
        hint="name what the pretrained channels saw, e.g. `weights_bands: [B04, B03, B02]` for RGB weights",
        severity="warning",
    )
