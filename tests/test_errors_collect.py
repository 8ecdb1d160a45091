"""Every mistake in one run: the stages go on past an error wherever the rest can still be
checked, each mistake is reported once, and every unknown key gets a did-you-mean over all the
keys valid where it is."""

import pytest
from nncompile.errors import NncompileError
from nncompile.pipeline import compile_spec

FIVE_MISTAKES = """\
nncompile: 1
name: Five
inputs:
  image: [3, 64, 64]
nodes:
  resnet: {op: torchvision.resnet18, weights: null, head: remove, trainble: [layer4]}
  fc1: {op: Linear, out_featurs: 128}
  relu: {op: ReLU}
  fc2: {op: Linear, out_featurs: 10}
ouptuts: {logits: fc2}
task: {kind: classifcation, optimizer: {name: AdamW, lr: 1.0e-3}}
"""


def errors_of(tmp_path, text: str) -> NncompileError:
    spec = tmp_path / "spec.yaml"
    spec.write_text(text)
    with pytest.raises(NncompileError) as info:
        compile_spec(spec)
    return info.value


def test_five_independent_mistakes_in_one_run(tmp_path):
    err = errors_of(tmp_path, FIVE_MISTAKES)
    found = [(d.loc.line, d.loc.col, d.node, d.message, d.hint) for d in err.diagnostics]
    assert sorted(found) == [
        (
            6,
            67,
            "resnet",
            "unknown argument 'trainble' for torchvision.resnet18",
            "did you mean 'trainable' or 'train_bn'?",
        ),
        (
            7,
            21,
            "fc1",
            "unknown argument 'out_featurs' for nn.Linear",
            "did you mean 'out_features' or 'in_features'?",
        ),
        (
            9,
            21,
            "fc2",
            "unknown argument 'out_featurs' for nn.Linear",
            "did you mean 'out_features' or 'in_features'?",
        ),
        (10, 1, None, "unknown key 'ouptuts' in the spec", "did you mean 'outputs' or 'inputs'?"),
        (11, 14, None, "unknown task kind 'classifcation'", "did you mean 'classification'?"),
    ]
    text = err.render()
    assert text.endswith("\n5 errors") and text.count(": error: ") == 5
    assert f"{tmp_path}/spec.yaml:9:21: error: node 'fc2': unknown argument 'out_featurs'" in text


def test_each_mistake_is_reported_once_and_dependent_shapes_are_not_checked(tmp_path):
    """fc1 fails; fc2 (fed by it) has its own keys checked but no shape error of its own, and
    'head' (fed by the input, not by fc1) is built and checked as usual."""
    err = errors_of(
        tmp_path,
        "nncompile: 1\nname: Net\ninputs: {x: [8]}\nnodes:\n"
        "  fc1: {op: Linear, out_featurs: 4}\n"
        "  fc2: {op: Linear, out_features: 2, in_features: 99}\n"
        "  head: {op: Linear, in: x, in_features: 7, out_features: 1}\n"
        "outputs: {a: fc2, b: head}\ntask: {kind: multitask, heads: {a: {kind: regression}}}\n",
    )
    assert [(d.node, d.message.split(":")[0]) for d in err.diagnostics] == [
        ("fc1", "unknown argument 'out_featurs' for nn.Linear"),
        ("head", "in_features is 7 but the incoming tensor has 8 (features)"),
    ]


@pytest.mark.parametrize(
    ("node", "hint"),
    [
        (
            "{op: torchvision.resnet18, weights: null, trainble: [layer4]}",
            "did you mean 'trainable' or 'train_bn'?",
        ),
        ("{op: torchvision.resnet18, weights: null, lr_mul: 0.1}", "did you mean 'lr_mult'?"),
        ("{op: torchvision.resnet18, weights: null, frezee: true}", "did you mean 'freeze' or 'unfreeze'?"),
        ("{op: Linear, out_features: 3, fraeze: true}", "did you mean 'freeze' or 'unfreeze'?"),
        ("{op: flatten, lr_mul: 2}", "did you mean 'lr_mult'?"),
    ],
)
def test_misspelt_tuning_keys_get_did_you_mean(tmp_path, node, hint):
    err = errors_of(
        tmp_path,
        f"nncompile: 1\nname: Net\ninputs: {{x: [3, 32, 32]}}\nnodes:\n  n: {node}\ntask: {{kind: regression}}\n",
    )
    assert [d.hint for d in err.diagnostics] == [hint]


def test_without_a_close_key_the_hint_lists_every_valid_key(tmp_path):
    err = errors_of(
        tmp_path,
        "nncompile: 1\nname: Net\ninputs: {x: [3, 32, 32]}\nnodes:\n"
        "  n: {op: torchvision.resnet18, weights: null, zzzz: 1}\ntask: {kind: regression}\n",
    )
    assert [d.hint for d in err.diagnostics] == [
        "it takes: head, in_channels, new_bands, num_classes, output, strict, weights, weights_bands; "
        "every node also takes: in, shares, per_item, freeze, trainable, lr, lr_mult, unfreeze, lr_decay, "
        "train_bn, adapters"
    ]


def test_every_unknown_argument_of_a_node_is_reported(tmp_path):
    err = errors_of(
        tmp_path,
        "nncompile: 1\nname: Net\ninputs: {x: [4]}\nnodes:\n"
        "  fc: {op: Linear, out_featurs: 2, biass: false}\ntask: {kind: regression}\n",
    )
    assert [(d.message, d.hint) for d in err.diagnostics] == [
        ("unknown argument 'out_featurs' for nn.Linear", "did you mean 'out_features' or 'in_features'?"),
        ("unknown argument 'biass' for nn.Linear", "did you mean 'bias'?"),
    ]


def test_a_node_wired_to_an_unknown_name_does_not_hide_the_shapes_of_the_rest(tmp_path):
    """fc2's `in:` names no node: it and fc3 (fed by it) still have their keys checked, and
    head, wired to the input, is built; no follow-on error about fc3's output being unreachable."""
    err = errors_of(
        tmp_path,
        "nncompile: 1\nname: G\ninputs: {x: [8]}\nnodes:\n"
        "  fc1: {op: Linear, out_features: 4}\n"
        "  fc2: {op: Linear, in: fc0, out_featurs: 2}\n"
        "  fc3: {op: Linear, in: fc2, out_features: 2}\n"
        "  head: {op: Linear, in: x, in_features: 9, out_features: 3}\n"
        "outputs: {a: fc3, b: head, c: fc1}\ntask: {kind: multitask, heads: {a: {kind: regression}}}\n",
    )
    assert [(d.loc.line, d.node, d.message) for d in err.diagnostics] == [
        (6, "fc2", "unknown input 'fc0'"),
        (6, "fc2", "unknown argument 'out_featurs' for nn.Linear"),
        (8, "head", "in_features is 9 but the incoming tensor has 8 (features): x gives (B, 8)"),
    ]
    assert err.diagnostics[0].hint == "did you mean 'fc1' or 'fc2' or 'fc3'?"
