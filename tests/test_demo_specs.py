"""The demo's base spec compiles with today's compiler (`make demo` runs it; the fine-tune spec
needs the base checkpoint the demo trains, so only the demo itself checks that one)."""

from pathlib import Path

import nncompile

DEMO = Path(__file__).resolve().parent.parent / "docs" / "demo"


def test_demo_base_spec_compiles():
    compiled = nncompile.compile_spec(DEMO / "shapes_base.yaml")
    assert "torch.optim.lr_scheduler.OneCycleLR" in compiled.source
