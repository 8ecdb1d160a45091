"""The emit IR: what planning hands the templates, and the only thing emit/ reads. Every field is
text to write or a plain value; templates render it and compute nothing."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .training.general import LightningIR


@dataclass
class BlockClassIR:
    name: str
    doc: str
    init_signature: list[str]
    init_lines: list[str]
    forward_signature: list[str]
    forward_lines: list[str]
    uses: int  # instances of the class in the model: each has its own weights
    pretrained: bool  # whether the constructor takes `pretrained` (a node inside loads pretrained weights)

    def copies_note(self) -> str | None:
        """The header's and summary's warning that the uses of a block do not share weights."""
        if self.uses == 1:
            return None
        return f"Block {self.name}: used {self.uses} times, as {self.uses} copies that do not share weights."


@dataclass
class ModelIR:
    name: str
    pretrained: bool  # whether the constructors take `pretrained` (some node loads pretrained weights)
    init_signature: list[str]
    init_lines: list[str]  # indented code for __init__ after super().__init__()
    forward_signature: list[str]
    forward_lines: list[str]  # indented code for forward(), the return included
    methods: list[str]  # indented lines of further methods (param_groups)
    helpers: list[str]  # module-level functions the constructor calls (stem adaptation, weight loading)
    frozen_by_node: dict[str, int]  # frozen parameter count per node (for the summary)
    path_args: list[
        tuple[str, str, object]
    ]  # constructor arguments holding a file's path: name, default code, loc
    # more constructor arguments, hyperparameters (an adapter's r, alpha, dropout): name, value, loc
    hparams: list[tuple[str, object, object]] = field(default_factory=list)
    param_groups: list = field(default_factory=list)  # freezing.Group: the optimizer's groups (summary)


@dataclass
class FileIR:
    header: list[str]  # docstring lines
    imports: list[str]
    constants: list[str]  # module-level lines after the imports
    blocks: list[BlockClassIR]  # one class per block the model uses, nested blocks first
    model: ModelIR
    training: LightningIR
