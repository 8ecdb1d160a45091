"""Every generated nn.Module exports with torch.export (batch dimension dynamic) and to ONNX with
torch.onnx.export(dynamo=True); onnxruntime agrees with eager PyTorch. The ONNX half needs the
optional `export` extra (onnx, onnxscript, onnxruntime) and is skipped without it."""

import functools
import importlib.util
import inspect

import pytest
import torch
from conftest import SPECS, compiled_spec


def eval_model(spec, tmp_path):
    """The generated nn.Module built without pretrained weights, and example inputs of batch 2."""
    out = tmp_path / f"{spec.stem}.py"
    result = compiled_spec(spec)
    out.write_text(result.source)
    module_spec = importlib.util.spec_from_file_location(spec.stem, out)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    cls = getattr(module, result.spec.name)
    if any(i.is_list for i in result.spec.inputs):
        pytest.skip("a detection model takes a list of images and returns per-image dicts: not exported")
    model = cls(pretrained=False) if "pretrained" in inspect.signature(cls).parameters else cls()
    return model.eval(), result.spec.inputs


def example(inputs, batch: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for spec in inputs:
        dtype = getattr(torch, spec.dtype)
        shape = (batch, *spec.shape)
        if dtype.is_floating_point:
            out[spec.name] = torch.randn(shape, generator=g).to(dtype)
        else:
            out[spec.name] = torch.randint(0, 4, shape, generator=g).to(dtype)
    return out


def flat(value) -> list[torch.Tensor]:
    return list(value.values()) if isinstance(value, dict) else [value]


def dynamic_batch(inputs) -> dict:
    batch = torch.export.Dim("batch")
    return {spec.name: {0: batch} for spec in inputs}


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_torch_export_with_a_dynamic_batch(spec, tmp_path):
    model, inputs = eval_model(spec, tmp_path)
    exported = torch.export.export(model, (), kwargs=example(inputs, 2), dynamic_shapes=dynamic_batch(inputs))
    for batch in (3,):
        x = example(inputs, batch, seed=batch)
        with torch.no_grad():
            expected = flat(model(**x))
            got = flat(exported.module()(**x))
        assert [t.shape[0] for t in got] == [batch] * len(got)
        for a, b in zip(got, expected, strict=True):
            torch.testing.assert_close(a, b)


@pytest.fixture(scope="module")
def one_onnx_registry():
    """torch.onnx.export builds its registry of ONNX functions anew on every call: about 1 s of
    each export's 1.5 s for a small model (it parses the source of every torchlib function). An
    export only reads it, so the tests share one (a private API: without it, each builds its own)."""
    try:
        from torch.onnx._internal.exporter._registration import ONNXRegistry
    except ImportError:
        yield
        return
    build = functools.cache(ONNXRegistry.from_torchlib)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            ONNXRegistry, "from_torchlib", staticmethod(lambda *args, **kwargs: build(*args, **kwargs))
        )
        yield


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_onnx_export_agrees_with_torch(spec, tmp_path, one_onnx_registry):
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    model, inputs = eval_model(spec, tmp_path)
    program = torch.onnx.export(
        model, (), kwargs=example(inputs, 2), dynamic_shapes=dynamic_batch(inputs), dynamo=True
    )
    path = tmp_path / "model.onnx"
    program.save(str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = example(inputs, 3, seed=3)  # a batch size other than the traced one
    got = session.run(None, {name: t.numpy() for name, t in x.items()})
    with torch.no_grad():
        expected = flat(model(**x))
    assert len(got) == len(expected)
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(torch.from_numpy(a), b, rtol=1e-4, atol=1e-4)
