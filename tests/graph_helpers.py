"""Helpers for the graph-language tests: compile a spec text and run the generated model in-process."""

import torch
from nncompile import compile_spec


def spec_text(inputs: str, nodes: str, extra: str = "", kind: str = "regression") -> str:
    """A spec with the given `inputs:` flow mapping and indented `nodes:` lines."""
    return f"nncompile: 1\nname: Net\n{extra}inputs: {inputs}\nnodes:\n{nodes}\ntask: {{kind: {kind}}}\n"


def compile_text(write_spec, text: str, name: str = "spec.yaml"):
    return compile_spec(write_spec(text, name))


def run_generated(compiled, inputs: dict[str, torch.Tensor]):
    return run_source(compiled.source, compiled.spec.name, inputs)


def run_source(source: str, name: str, inputs: dict[str, torch.Tensor]):
    """Execute generated source in this process and call its model class `name` on `inputs`."""
    namespace: dict = {}
    exec(compile(source, "<generated>", "exec"), namespace)  # the compiler's own output
    model = namespace[name]().eval()
    with torch.no_grad():
        return model(**inputs), namespace


def random_inputs(compiled, batch: int = 3) -> dict[str, torch.Tensor]:
    out = {}
    for i in compiled.spec.inputs:
        dtype = getattr(torch, i.dtype)
        if dtype.is_floating_point:
            out[i.name] = torch.randn(batch, *i.shape, dtype=dtype)
        else:
            out[i.name] = torch.randint(0, 4, (batch, *i.shape), dtype=dtype)
    return out


def shapes_of(value):
    if isinstance(value, torch.Tensor):
        return tuple(value.shape)
    return {k: tuple(v.shape) for k, v in value.items()}
