"""Stage 3, shapes: run every node on the meta device in topological order.

Yields each node's output shapes and inferred constructor arguments. No weights are allocated
and nothing is downloaded, so this is exact and cheap even for very large backbones (the meta
kernels torch runs as slow Python code are answered by meta_kernels.py's shape rules). A spec with
symbolic dims (`[3, H, W]`) is run twice, at the example sizes and at the check sizes: a node
whose code would differ between the two (an inferred `in_features` that depends on H) only works
at one size and is an error; the dims that change between the runs get symbolic names (`H/2`).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass, field
from fractions import Fraction

from ..errors import Collector, Diagnostic, NncompileError, SpecError
from ..graph.build import Graph
from ..limits import MAX_NODE_PARAMETERS, MAX_TENSOR_ELEMENTS
from ..ops import Built, TensorInfo
from ..ops.base import META_BATCH, WeightsInput, one_pass
from ..spec.model import DimSpec, NodeSpec, Ref, Spec
from . import applying
from .adapters import with_adapters
from .applying import code_of
from .blocks import OpKinds
from .inputs import Normalization, expected_by_input, normalizations, size_warnings
from .meta_kernels import shape_rules


@dataclass
class NodeResult:
    spec: NodeSpec
    inputs: tuple[Ref, ...]
    in_infos: list[TensorInfo]
    built: Built


@dataclass
class Shaped:
    graph: Graph
    inputs: dict[str, TensorInfo]
    nodes: dict[str, NodeResult]  # in topological order
    outputs: dict[str, TensorInfo]
    warnings: list[Diagnostic] = field(default_factory=list)
    # input name -> (node id, what that node's pretrained weights expect of it); see inputs.py
    expected: dict[str, tuple[str, WeightsInput]] = field(default_factory=dict)
    normalization: dict[str, Normalization] = field(default_factory=dict)  # input name -> its normalisation


def propagate(graph: Graph) -> Shaped:
    spec = graph.spec
    shaped = run(graph, input_infos(spec, check=False))
    shaped.expected = expected_by_input(spec, shaped.nodes)
    shaped.normalization = normalizations(spec, shaped.expected, shaped.warnings)
    shaped.warnings += size_warnings(spec, shaped.expected)
    if not spec.dims:
        return shaped
    try:
        other = run(graph, input_infos(spec, check=True))
    except NncompileError as err:
        at = sizes_text(spec, check=True)
        for d in err.diagnostics:
            d.message = f"at {at} (the check size; the example size works): {d.message}"
            d.hint = d.hint or "the model only works at the example size; make this node size-independent"
        raise
    compare(spec, shaped, other)
    annotate(shaped, other, spec.dims)
    return shaped


def input_infos(spec: Spec, check: bool) -> dict[str, TensorInfo]:
    """Each input's meta shape at the example sizes, or at the check sizes of its symbolic dims."""
    out = {}
    for i in spec.inputs:
        shape = list(i.shape)
        for k, symbol in enumerate(i.symbols):
            if symbol is not None and check:
                shape[k] = spec.dims[symbol].check
        items = "tensors" if i.is_list else None
        out[i.name] = TensorInfo((META_BATCH, *shape), i.dtype, items=items, bands=i.bands)
    return out


def sizes_text(spec: Spec, check: bool) -> str:
    return ", ".join(f"{d.name}={d.check if check else d.example}" for d in spec.dims.values())


def run(graph: Graph, inputs: dict[str, TensorInfo]) -> Shaped:
    spec = graph.spec
    nodes: dict[str, NodeResult] = {}
    errors = Collector()
    failed: set[str] = set()
    with one_pass(), shape_rules():
        _run_nodes(graph, inputs, nodes, errors, failed)
    errors.raise_if_any()
    outputs = {}
    for out in spec.outputs:
        if out.ref.node in failed:  # reported already (a broken node's wiring)
            continue
        try:
            outputs[out.name] = value_of(out.ref, inputs, nodes, None)
        except SpecError as err:
            errors.add(err)
    errors.raise_if_any()
    warnings = list(graph.warnings) + [w for r in nodes.values() for w in r.built.warnings]
    return Shaped(graph, inputs, _skip_unread_ports(graph, nodes), outputs, warnings)


def _run_nodes(graph: Graph, inputs: dict, nodes: dict, errors: Collector, failed: set[str]) -> None:
    """Each node in order into `nodes`; a node that fails goes into `errors` and `failed`."""
    spec = graph.spec
    kinds = OpKinds(graph.blocks, propagate)
    for node_id in graph.order:
        node = spec.node(node_id)
        refs = graph.inputs_of[node_id]
        if node_id in graph.broken or any(r.node in failed for r in refs) or node.shares in failed:
            # its wiring or its input's error is reported already; its own op and keys are checked
            failed.add(node_id)
            try:
                if node.shares is None:
                    check_args = getattr(kinds.of(node), "check_args", None)
                    if check_args is not None:  # op kinds whose arguments are known without shapes
                        check_args(node)
            except NncompileError as err:
                errors.add(err)
            continue
        try:
            in_infos = [value_of(r, inputs, nodes, node_id) for r in refs]
            check_lists(node, kinds, in_infos, refs)
            built = applying.build_node(node, kinds, nodes, in_infos, [str(r) for r in refs])
            built = with_adapters(node, built)
            check_limits(node, built)
        except NncompileError as err:
            errors.add(err)
            failed.add(node_id)
            continue
        nodes[node_id] = NodeResult(node, refs, in_infos, built)


def check_lists(node: NodeSpec, kinds: OpKinds, in_infos: list[TensorInfo], refs) -> None:
    """A list (`list: true` images, a detector's predictions) goes only to an op kind that takes
    one (`takes_lists`, a whole torchvision detection model): any other op, and a node applying
    another's module again, wants a tensor."""
    for ref, info in zip(refs, in_infos, strict=True):
        if info.items is None:
            continue
        if node.shares is not None or not getattr(kinds.of(node), "takes_lists", False):
            raise SpecError(
                f"{node.op or 'shares ' + node.shares} takes tensors, but '{ref}' is a {info.comment()}",
                ref.loc,
                node=node.id,
                hint="only a whole detection model (torchvision.detection.<builder> without `output:`)"
                " takes a list of images, and its predictions are the model's output",
            )


def _skip_unread_ports(graph: Graph, nodes: dict[str, NodeResult]) -> dict[str, NodeResult]:
    """Nodes whose layer can skip an output nothing reads get the call that skips it."""
    refs = [r for rs in graph.inputs_of.values() for r in rs] + [o.ref for o in graph.spec.outputs]
    read = {(r.node, r.port) for r in refs}
    out = {}
    for node_id, result in nodes.items():
        built = result.built
        for port, call in built.unread_calls.items():
            if (node_id, port) not in read:
                ports = {k: v for k, v in built.ports.items() if k != port}
                built = dataclasses.replace(built, call=call, ports=ports, unread_calls={})
        out[node_id] = dataclasses.replace(result, built=built)
    return out


def check_limits(node: NodeSpec, built: Built) -> None:
    """Reject sizes the meta device accepts but no machine could run (see limits.py)."""
    outs = [built.out] if built.out is not None else [p.info for p in built.ports.values()]
    for info in outs:
        per_sample = math.prod(info.shape[1:])
        if per_sample == 0:
            raise SpecError(
                f"{node.op} outputs an empty tensor {info.comment()}",
                node.loc,
                node=node.id,
                hint="a size argument is 0, or a pooling or crop leaves nothing of the input",
            )
        if per_sample > MAX_TENSOR_ELEMENTS:
            raise SpecError(
                f"{node.op} outputs {info.comment()}: {per_sample:,} elements per sample, more than "
                f"the limit of {MAX_TENSOR_ELEMENTS:,}",
                node.loc,
                node=node.id,
                hint="is a size mistyped? the limit is in nncompile/limits.py",
            )
    if built.module is not None:
        count = sum(p.numel() for p in built.module.parameters())
        if count > MAX_NODE_PARAMETERS:
            raise SpecError(
                f"{node.op} has {count:,} parameters, more than the limit of {MAX_NODE_PARAMETERS:,}",
                node.loc,
                node=node.id,
                hint="is a size mistyped? the limit is in nncompile/limits.py",
            )


def value_of(
    ref: Ref, inputs: dict[str, TensorInfo], nodes: dict[str, NodeResult], user: str | None
) -> TensorInfo:
    """The tensor a reference names, checking its port against what the node really returns."""
    if ref.node in inputs:
        if ref.port is not None:
            raise SpecError(
                f"input '{ref.node}' has no ports", ref.loc, node=user, hint=f"write `{ref.node}`"
            )
        return inputs[ref.node]
    built = nodes[ref.node].built
    if ref.port is None:
        if built.out is None:
            raise SpecError(
                f"node '{ref.node}' returns several values",
                ref.loc,
                node=user,
                hint="pick one: " + ", ".join(f"{ref.node}.{p}" for p in built.ports),
            )
        return built.out
    if ref.port not in built.ports:
        choices = ", ".join(f"{ref.node}.{p}" for p in built.ports)
        raise SpecError(
            f"node '{ref.node}' has no output '{ref.port}'",
            ref.loc,
            node=user,
            hint=f"its outputs: {choices}" if choices else f"it has one output: write `{ref.node}`",
        )
    return built.ports[ref.port].info


# --- the two-size check --------------------------------------------------------------------------


def compare(spec: Spec, first: Shaped, second: Shaped) -> None:
    errors = Collector()
    for node_id, result in first.nodes.items():
        other = second.nodes[node_id].built
        if code_of(result.built) == code_of(other):
            continue
        changed = [
            f"{k} = {v} at {sizes_text(spec, False)} but {other.inferred.get(k)} at {sizes_text(spec, True)}"
            for k, v in result.built.inferred.items()
            if other.inferred.get(k) != v
        ]
        errors.add(
            SpecError(
                "this node only works at one input size: "
                + ("; ".join(changed) or "its code depends on the size of a symbolic dim"),
                result.spec.op_loc(),
                node=node_id,
                hint="make the size fixed before it (e.g. AdaptiveAvgPool2d, or mean over the symbolic "
                "dims), or give the input a fixed size",
            )
        )
    errors.raise_if_any()


def annotate(shaped: Shaped, other: Shaped, dims: dict[str, DimSpec]) -> None:
    """Name the dims that changed between the two runs, in place, blocks' inner graphs included."""
    for name, info in shaped.inputs.items():
        shaped.inputs[name] = with_symbols(info, other.inputs[name], dims)
    for name, info in shaped.outputs.items():
        shaped.outputs[name] = with_symbols(info, other.outputs[name], dims)
    for node_id, result in shaped.nodes.items():
        built, theirs = result.built, other.nodes[node_id].built
        if built.out is not None:
            built.out = with_symbols(built.out, theirs.out, dims)
        for name, port in built.ports.items():
            built.ports[name] = dataclasses.replace(
                port, info=with_symbols(port.info, theirs.ports[name].info, dims)
            )
        if built.block is not None:
            for mine, its in zip(built.block.instances, theirs.block.instances, strict=True):
                annotate(mine.shaped, its.shaped, dims)
    for result in shaped.nodes.values():  # comments that quote an input shape quote it with symbols
        named = [value_of(r, shaped.inputs, shaped.nodes, None) for r in result.inputs]
        for plain, symbolic in zip(result.in_infos, named, strict=True):
            result.built.init = [
                (prefix, expr, comment.replace(plain.comment(), symbolic.comment()) if comment else comment)
                for prefix, expr, comment in result.built.init
            ]
        result.in_infos = named


def with_symbols(info: TensorInfo, other: TensorInfo, dims: dict[str, DimSpec]) -> TensorInfo:
    symbols = tuple(symbol_of(a, b, dims) for a, b in zip(info.shape, other.shape, strict=True))
    return dataclasses.replace(info, symbols=symbols if any(symbols) else ())


def symbol_of(first: int, second: int, dims: dict[str, DimSpec]) -> str | None:
    """A name for a dim that was `first` at the example sizes and `second` at the check sizes:
    `k*H`, `H/k`, `H*W/k`, `H-2` or `(H-2)/2`; `?` where no such form fits; None for a fixed size."""
    if first == second:
        return None
    for size in (1, 2, 3):
        for group in itertools.combinations(dims.values(), size):
            a = b = 1
            for d in group:
                a, b = a * d.example, b * d.check
            k = Fraction(first, a)
            if k * b == second:
                names = "*".join(d.name for d in group)
                head = f"{k.numerator}*" if k.numerator != 1 else ""
                tail = f"/{k.denominator}" if k.denominator != 1 else ""
                return head + names + tail
    for d in dims.values():
        if first - d.example == second - d.check:
            return f"{d.name}{first - d.example:+d}"
        # (H + k) / m, as after a convolution without padding then a pooling
        m = Fraction(d.check - d.example, second - first)
        k = m * first - d.example
        if m.denominator == 1 and m > 1 and k.denominator == 1 and abs(k) <= 2 * m:  # a small offset
            return f"({d.name}{int(k):+d})/{m.numerator}"
    return "?"
