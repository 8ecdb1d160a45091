"""Compile a spec and import the generated file as a module, for tests that train it in-process."""

import importlib.util
import itertools
from pathlib import Path

import torch
from conftest import ROOT, compiled_spec
from nncompile import compile_spec

_counter = itertools.count()


def load_generated(spec_path, tmp_path):
    """Compile `spec_path` into tmp_path and import it; returns the module. A spec of specs/ is
    compiled once per test process (conftest.compiled_spec)."""
    out = tmp_path / f"generated_{next(_counter)}.py"
    resolved = Path(spec_path).resolve()
    shared = resolved.parent == ROOT / "specs"
    out.write_text((compiled_spec(resolved) if shared else compile_spec(spec_path, out)).source)
    spec = importlib.util.spec_from_file_location(out.stem, out)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def trainer(**kwargs):
    import pytorch_lightning as pl

    options = dict(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    return pl.Trainer(**(options | kwargs))


def batches(make, n: int, batch: int = 4, seed: int = 0) -> torch.utils.data.DataLoader:
    """A loader of `n` batches made by `make(generator, batch)` -> (inputs, target)."""
    g = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader([make(g, batch) for _ in range(n)], batch_size=None)


class Fixed(torch.nn.Module):
    """A model that returns given outputs, whatever its input."""

    def __init__(self, outputs):
        super().__init__()
        self.outputs = outputs

    def forward(self, *args, **kwargs):
        return self.outputs
