"""A context manager the generated file carries (its source is copied there) around the statement
that builds a pretrained model: offline, torchvision raises a bare `URLError`, and timm and
transformers Hugging Face's `LocalEntryNotFoundError`, from deep inside their download code;
this turns each into one error that names the weights, says where the files go, and points at
`pretrained=False`."""

from __future__ import annotations

import torch


class _PretrainedDownload:
    """`with _PretrainedDownload(weights):` turns an offline download of `weights` (a
    torchvision weights enum member, a URL or a Hugging Face repository) into one error that
    says how to get them; `local`: what the spec's `weights:` can name instead."""

    def __init__(self, weights, local: str = "file") -> None:
        self.weights, self.local = weights, local

    def __enter__(self) -> None:
        pass

    def __exit__(self, kind, exc, traceback) -> None:
        if not isinstance(exc, OSError):  # offline: URLError, Hugging Face's errors
            return
        url = getattr(self.weights, "url", self.weights)
        file = f"{torch.hub.get_dir()}/checkpoints/{url.split('/')[-1]}"
        fetch = f"download {url} as {file}"
        if not url.startswith("https://"):
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
