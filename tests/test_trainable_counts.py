"""The header's and summary's frozen/trainable counts are what training does: they include the
layers the LightningModule freezes because they feed only outputs the task does not train
(issue 14, bug 7)."""

import re

from nncompile import compile_spec
from task_helpers import load_generated

SPEC = """\
nncompile: 1
name: Net
inputs: {x: [8]}
nodes:
  trunk: {op: Linear, out_features: 16, freeze: true}
  head: {op: Linear, out_features: 3}
  aux_hidden: {op: Linear, in: trunk, out_features: 4}
  aux: {op: Linear, out_features: 2}
outputs: {logits: head, extra: aux}
task: {kind: multiclass, output: logits}
"""


def test_frozen_and_trainable_counts_include_the_layers_of_untrained_outputs(write_spec, tmp_path):
    path = write_spec(SPEC)
    compiled = compile_spec(path)
    lm = load_generated(path, tmp_path).NetModule()
    trainable = sum(p.numel() for p in lm.parameters() if p.requires_grad)
    total = sum(p.numel() for p in lm.parameters())
    assert trainable == 16 * 3 + 3  # head alone: trunk is frozen by the spec, aux_* by the task
    header = re.search(r"Parameters: ([\d,]+) .*; ([\d,]+) frozen, ([\d,]+) trainable\)", compiled.source)
    assert [int(g.replace(",", "")) for g in header.groups()] == [total, total - trainable, trainable]
    assert "The LightningModule freezes 78 of them" in compiled.source  # aux_hidden 68, aux 10
    summary = compiled.summary()
    assert summary.trainable_params == trainable
    rows = {r.node: r for r in summary.rows}
    assert rows["aux"].trainable == rows["aux_hidden"].trainable == 0
    assert rows["head"].trainable == rows["head"].params
