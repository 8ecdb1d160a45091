"""Every generated nn.Module exports with torch.export (batch dimension dynamic) and to ONNX with
torch.onnx.export; onnxruntime agrees with eager PyTorch. The ONNX half needs the optional
`export` extra (onnx, onnxscript, onnxruntime) and is skipped without it."""

import functools
import importlib.util
import inspect

import pytest
import torch
from conftest import compiled_spec, spec_params


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


@pytest.fixture(scope="module", params=spec_params("export"))
def exported(request, tmp_path_factory):
    """(inputs, the torch.export program at batch 2 with the batch dynamic, a batch of 3 and the
    eager model's outputs on it), built once for both tests of a spec: pytest runs a spec's tests
    one after the other (a module-scoped parameter), and the xdist group keeps them on one worker.
    `torch.onnx.export(model)` would trace the model with torch.export all over again; given the
    program, it converts that."""
    model, inputs = eval_model(request.param, tmp_path_factory.mktemp(request.param.stem))
    program = torch.export.export(model, (), kwargs=example(inputs, 2), dynamic_shapes=dynamic_batch(inputs))
    x = example(inputs, 3, seed=3)  # a batch size other than the traced one
    with torch.no_grad():
        expected = flat(model(**x))
    return inputs, program, x, expected


def test_torch_export_with_a_dynamic_batch(exported):
    _, program, x, expected = exported
    with torch.no_grad():
        got = flat(program.module()(**x))
    assert [t.shape[0] for t in got] == [3] * len(got)
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


def test_onnx_export_agrees_with_torch(exported, tmp_path, one_onnx_registry):
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    inputs, program, x, expected = exported
    # optimize=False: onnxscript's graph rewrites (a fifth of the export's time) are its own to
    # test; what this checks is that the program translates to ONNX and computes the same
    onnx_program = torch.onnx.export(
        program, (), kwargs=example(inputs, 2), dynamic_shapes=dynamic_batch(inputs), optimize=False
    )
    path = tmp_path / "model.onnx"
    onnx_program.save(str(path), external_data=True)  # raw weights beside it: VGG's 2.3 s faster
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {name: t.numpy() for name, t in x.items()})
    assert len(got) == len(expected)
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(torch.from_numpy(a), b, rtol=1e-4, atol=1e-4)
