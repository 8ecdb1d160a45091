"""The context managers the generated file carries (their source is copied there) around the
statement that builds a pretrained model: offline, torchvision raises a bare `URLError`, and timm and
transformers Hugging Face's `LocalEntryNotFoundError`, from deep inside their download code;
this turns each into one error that names the weights, says where the files go, and points at
`pretrained=False`."""

from __future__ import annotations

import contextlib

import torch


@contextlib.contextmanager
def _download_hint(weights):
    """Offline, torch.hub fails to download `weights`: say where the file goes."""
    try:
        yield
    except OSError as exc:  # a URLError, whose traceback says no more than this message
        raise RuntimeError(
            f"cannot download {weights}: {exc}\nTo train offline, download {weights.url}"
            f" into {torch.hub.get_dir()}/checkpoints/, or pass pretrained=False"
        ) from None


@contextlib.contextmanager
def _hub_download_hint(weights: str, local: str = "file"):
    """Offline, timm or transformers fails to download `weights` (a Hugging Face repository
    or a URL) deep in its library: raise one error that says how to get them."""
    try:
        yield
    except OSError as exc:  # Hugging Face's errors, a URLError
        file = f"{torch.hub.get_dir()}/checkpoints/{weights.split('/')[-1]}"
        fetch = f"download {weights} as {file}"
        if not weights.startswith("https://"):
            from huggingface_hub.constants import HF_HUB_CACHE

            fetch = (
                f"fetch them with `hf download {weights}` where there is a network and copy"
                f" the Hugging Face cache to {HF_HUB_CACHE}, or set `weights:` in the spec to"
                f" a local {local}"
            )
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise RuntimeError(
            f"cannot download the pretrained weights {weights}: {reason}\nTo train offline,"
            f" {fetch}; or pass pretrained=False (random weights)"
        ) from None  # the download's own traceback says no more than the message
