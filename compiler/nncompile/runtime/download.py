"""A context manager the generated file carries (its source is copied there) around the statement
that builds a pretrained model: offline, torchvision raises a bare `URLError`, and timm and
transformers Hugging Face's `LocalEntryNotFoundError`, from deep inside their download code;
this turns each into one error that names the weights, says where the files go, and points at
`pretrained=False`."""

from __future__ import annotations

import contextlib

import torch


@contextlib.contextmanager
def _download_hint(weights, local: str = "file"):
    """Offline, downloading `weights` (a torchvision enum member, a URL or a Hugging Face
    repository) fails deep in its library: raise one error that says how to get them."""
    try:
        yield
    except OSError as exc:  # torchvision's URLError, Hugging Face's errors
        url = getattr(weights, "url", weights)
        file = f"{torch.hub.get_dir()}/checkpoints/{url.split('/')[-1]}"
        fetch = f"download {url} as {file}"
        if not url.startswith("https://"):
            from huggingface_hub.constants import HF_HUB_CACHE

            fetch = (
                f"fetch them with `hf download {url}` where there is a network and copy the"
                f" Hugging Face cache to {HF_HUB_CACHE}, or set `weights:` in the spec to a"
                f" local {local}"
            )
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise RuntimeError(
            f"cannot download the pretrained weights {weights}: {reason}\nTo train offline,"
            f" {fetch}; or create the model with pretrained=False (random weights, e.g."
            " before loading a checkpoint)"
        ) from None  # the download's own traceback says no more than the message
