"""A context manager the generated file carries (its source is copied there) around the statement
that builds a pretrained backbone: offline, torchvision raises a bare `URLError` and timm a
`LocalEntryNotFoundError` from deep inside their download code; this turns either into one error
that names the weights, says where the file goes, and points at `pretrained=False`."""

from __future__ import annotations

import torch

from ..pyfmt import Arg, Call, literal


class _PretrainedDownload:
    """`with _PretrainedDownload(weights):` turns a failed download of `weights` (a
    torchvision weights enum member, or timm's Hugging Face repository or URL of them)
    into one error that says how to get them without a network."""

    def __init__(self, weights) -> None:
        self.weights = weights

    def __enter__(self) -> None:
        pass

    def __exit__(self, kind, exc, traceback) -> None:
        # offline: urllib's URLError or Hugging Face's errors, all OSErrors
        if not isinstance(exc, OSError):
            return
        url = getattr(self.weights, "url", self.weights)
        if url.startswith("https://"):
            name = url.rsplit("/", 1)[-1]
            fetch = f"download {url} as {torch.hub.get_dir()}/checkpoints/{name}"
        else:
            from huggingface_hub.constants import HF_HUB_CACHE

            fetch = (
                f"fetch them with `hf download {url}` where there is a network and"
                f" copy the Hugging Face cache to {HF_HUB_CACHE}, or set `weights:`"
                " in the spec to a local file"
            )
        raise RuntimeError(
            f"cannot download the pretrained weights {self.weights}: {exc}\n"
            f"To train offline, {fetch}; or create the model with pretrained=False"
            " (random weights, e.g. before loading a checkpoint)"
        ) from None  # the download's own traceback says no more than the message


def guard(built, weights_code) -> None:
    """Put the statement that builds the backbone (built.init's first) inside
    `with _PretrainedDownload(<weights_code>):`, and carry the helper in the generated file."""
    import inspect

    prefix, expr, comment = built.init[0]
    built.init[0:1] = [
        ("with ", Call("_PretrainedDownload", (Arg(None, weights_code),), suffix=":"), None),
        ("    " + prefix, expr, comment),
    ]
    built.helpers["_PretrainedDownload"] = inspect.getsource(_PretrainedDownload)


def timm_weights(model) -> str:
    """The code naming a timm model's pretrained weights: its Hugging Face repository, or its URL."""
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    return literal(cfg.get("hf_hub_id") or cfg.get("url") or "")
