"""Stage 4, plan: shapes -> the emit IR: attribute names, imports, forward statements with shape
comments, and the release of intermediates after their last use."""

from __future__ import annotations

import dataclasses
import os
import shlex
import sys
from pathlib import Path

from ..errors import SpecError
from ..ir import BlockClassIR, FileIR, ModelIR
from ..pyfmt import docstring_text, literal, signature, statement
from ..shapes.propagate import Shaped
from ..training.lightning import plan_lightning, untrained_nodes
from ..training.recipes import unfreezing
from ..training.recipes.adapters import header_lines as adapter_header_lines
from ..training.recipes.adapters import plan_adapters
from ..training.recipes.freezing import Tuning, plan_tuning
from ..version import __version__
from .block_class import BlockPlanner
from .forward import forward_lines
from .inputs import normalization_lines, transforms_method
from .whole_models import shared_builds

BASE_IMPORTS = (
    "import pytorch_lightning as pl",
    "import torch",
    "from torch import nn",
)


def plan(shaped: Shaped, spec_display_path: str, output_display_path: str) -> FileIR:
    spec = shaped.graph.spec
    imports = set(BASE_IMPORTS)
    blocks = BlockPlanner(shaped)
    _check_class_names(shaped, blocks)
    path_args = []
    tuning = plan_tuning(shaped)
    tuning, untrained = _with_untrained(shaped, tuning)
    adapters = plan_adapters(shaped)
    helpers: dict[str, str] = tuning.helpers | adapters.helpers
    parts = shared_builds(shaped)
    inits = blocks.node_inits(shaped, parts)
    init_lines, normalize_lines = normalization_lines(shaped)
    for node_id, result in shaped.nodes.items():
        imports |= result.built.imports
        helpers |= result.built.helpers
        part = parts.get(node_id)  # a part of a model another node also takes a part of
        path_args += [
            (name, _beside_output(path, output_display_path), loc)
            for name, path, loc in (part.path_args if part else result.built.path_args)
        ]
        statements = inits[node_id] + tuning.init.get(node_id, []) + adapters.init.get(node_id, [])
        for prefix, expr, comment in statements:
            init_lines += statement(prefix, expr, 2, comment)
    pretrained = any(r.built.uses_pretrained for r in shaped.nodes.values())
    returns = "dict[str, torch.Tensor]" if len(spec.outputs) > 1 else "torch.Tensor"
    if len(spec.outputs) == 1 and spec.outputs[0].ref.node in shaped.nodes:
        returns = shaped.nodes[spec.outputs[0].ref.node].built.returns or returns
    params = ["self"] + [
        f"{name}: {'list[torch.Tensor]' if info.items else 'torch.Tensor'}"
        for name, info in shaped.inputs.items()
    ]
    params += [p for r in shaped.nodes.values() for p in r.built.forward_params]
    model = ModelIR(
        name=spec.name,
        pretrained=pretrained,
        init_signature=signature(
            "__init__",
            ["self"]
            + (["pretrained: bool = True"] if pretrained else [])
            + [f"{name}: str = {code}" for name, code, _ in path_args]
            + [f"{name}: {type(value).__name__} = {literal(value)}" for name, value, _ in adapters.args],
            "None",
            1,
        ),
        init_lines=init_lines,
        forward_signature=signature("forward", params, returns, 1),
        forward_lines=normalize_lines + forward_lines(shaped),
        methods=tuning.methods + adapters.methods,
        helpers=[line for name in sorted(helpers) for line in ["", "", *helpers[name].splitlines()]],
        frozen_by_node=tuning.frozen_by_node,
        path_args=path_args,
        hparams=adapters.args,
        param_groups=tuning.groups,
    )
    training = plan_lightning(
        spec.task,
        shaped,
        model,
        params,
        returns,
        optimizer_params=tuning.optimizer_params,
        rates=tuning.rates,
    )
    transforms, transforms_helper = transforms_method(shaped)
    training.recipe_lines += transforms
    training.helpers += [
        line for source in transforms_helper.values() for line in ["", "", *source.splitlines()]
    ]
    imports |= training.imports | ({"from torchvision.transforms import v2"} if transforms else set())
    header = _header(shaped, tuning, untrained, blocks.classes, spec_display_path, output_display_path)
    constants = [HERE] if path_args else []
    return FileIR(header, _import_lines(imports), constants, blocks.classes, model, training)


# The folder the default paths of weight files are relative to (see _beside_output).
HERE = "HERE = os.path.dirname(os.path.abspath(__file__))  # default weight paths are relative to it"


def _beside_output(path: str, output_path: str) -> str:
    """The default of a path argument: the file, relative to the generated file's folder, joined to
    HERE at run time (the same file from any working directory, and no absolute path of this
    machine written into a file meant to be copied)."""
    folder = Path(output_path).resolve().parent
    try:
        relative = Path(os.path.relpath(path, folder)).as_posix()
    except ValueError:  # another drive (Windows): no relative path exists
        return literal(path)
    return f"os.path.join(HERE, {literal(relative)})"


def _check_class_names(shaped: Shaped, blocks: BlockPlanner) -> None:
    """The model, the block classes and the user layers imported by name share the module's namespace."""
    spec = shaped.graph.spec
    owners = {spec.name: "the model class"}
    for block in blocks.classes:
        owners[block.name] = f"block '{block.name}'"
    for result in shaped.nodes.values():
        for line in sorted(result.built.imports):
            name = line.split()[-1]
            if line.startswith("from ") and name in owners:
                raise SpecError(
                    f"user layer {result.spec.op} has the name of {owners[name]}",
                    result.spec.op_loc(),
                    node=result.spec.id,
                    hint="rename the block or the model",
                )


def _import_lines(imports: set[str]) -> list[str]:
    """isort's order: the standard library's imports, a blank line (""), the others; in each
    section `import x` lines before `from x import y` lines, sorted by module."""
    ordered = sorted(imports, key=_import_key)
    stdlib = [line for line in ordered if not _import_key(line)[0]]
    return stdlib + ([""] if stdlib else []) + ordered[len(stdlib) :]


def _import_key(line: str) -> tuple:
    module = line.split()[1]
    return (module.split(".")[0] not in sys.stdlib_module_names, line.startswith("from "), module.lower())


def _with_untrained(shaped: Shaped, tuning: Tuning) -> tuple[Tuning, int]:
    """The counts of `tuning` with the parameters the LightningModule freezes (nodes that feed only
    untrained outputs) counted as frozen, and how many those are."""
    frozen_by_node = dict(tuning.frozen_by_node)
    added = 0
    for node_id in untrained_nodes(shaped):
        count, _ = shaped.nodes[node_id].built.parameter_counts()
        added += count - frozen_by_node.get(node_id, 0)
        frozen_by_node[node_id] = count
    counts = dict(
        frozen=tuning.frozen + added, trainable=tuning.trainable - added, frozen_by_node=frozen_by_node
    )
    return dataclasses.replace(tuning, **counts), added


def _command_args(spec_path: str, overrides: tuple[str, ...]) -> str:
    """The spec and its `--set` options as a shell command line names them."""
    return " ".join([spec_path, *(f"--set {shlex.quote(option)}" for option in overrides)])


def _header(
    shaped: Shaped, tuning: Tuning, untrained: int, classes: list[BlockClassIR], spec_path: str, out_path: str
) -> list[str]:
    spec = shaped.graph.spec
    total = pretrained = 0
    notes = []
    for node_id, result in shaped.nodes.items():
        notes += [f"{node_id}: {note}" for note in result.built.notes]
        count, loaded = result.built.parameter_counts()
        total += count
        pretrained += loaded
    notes += [note for block in classes if (note := block.copies_note())]
    notes += [note] if (note := unfreezing.header_note(unfreezing.schedules(shaped))) else []
    notes += adapter_header_lines(shaped)
    if spec.dims:
        example = ", ".join(f"{d.name}={d.example}" for d in spec.dims.values())
        check = ", ".join(f"{d.name}={d.check}" for d in spec.dims.values())
        notes.insert(0, f"Symbolic dims {', '.join(spec.dims)}: shapes checked at {example} and at {check}.")
    return [
        f"{spec.name}: generated by nncompile {__version__} from {docstring_text(spec_path)};",
        "edit the spec and regenerate, not this file.",
        f"Spec sha256: {spec.sha256}",
        *(f"Base {docstring_text(base.path)} sha256: {base.sha256}" for base in spec.bases),
        *(f"Set: {docstring_text(option)}" for option in spec.overrides),
        f"Regenerate: nncompile {docstring_text(_command_args(spec_path, spec.overrides))}"
        f" -o {docstring_text(out_path)}",
        f"Parameters: {total:,} ({pretrained:,} pretrained, {total - pretrained:,} new;"
        f" {tuning.frozen:,} frozen, {tuning.trainable:,} trainable).",
        *(
            [
                f"The LightningModule freezes {untrained:,} of them: they feed only outputs the task does not train."
            ]
            if untrained
            else []
        ),
        *(docstring_text(n) for n in notes),
    ]
