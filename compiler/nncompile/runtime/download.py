"""A context manager the generated file carries (its source is copied there) around the statement
that builds a pretrained model: offline, torchvision raises a bare `URLError`, and timm and
transformers Hugging Face's `LocalEntryNotFoundError`, from deep inside their download code;
this turns each into one error that names the weights, says where the files go, and points at
`pretrained=False`."""

from __future__ import annotations

import torch


class _PretrainedDownload:
    """`with _PretrainedDownload(weights):` turns a failed download of `weights` (a torchvision
    weights enum member, a URL, or a Hugging Face repository) into one error that says how to get
    them without a network; `local` is what `weights:` in the spec can name instead."""

    def __init__(self, weights, local: str = "file") -> None:
        self.weights = weights
        self.local = local

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
                f" in the spec to a local {self.local}"
            )
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise RuntimeError(
            f"cannot download the pretrained weights {self.weights}: {reason}\n"
            f"To train offline, {fetch}; or create the model with pretrained=False"
            " (random weights, e.g. before loading a checkpoint)"
        ) from None  # the download's own traceback says no more than the message
