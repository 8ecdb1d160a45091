"""The typed spec (spec/keys.py, spec/tuning.py): a node's tuning keys are a typed record whose
grammar is checked when the spec loads, every mistake located and in the project's words, and
the `unfreeze:` schedule is parsed once per compile."""

import pytest
from nncompile.errors import NncompileError
from nncompile.spec import loads

HEAD = "nncompile: 1\nname: Net\ninputs: {x: [4]}\nnodes:\n"
TASK = "task: {kind: regression}\n"


def messages(text: str) -> list[str]:
    with pytest.raises(NncompileError) as info:
        loads(text, "s.yaml")
    return [f"{d.loc.line}:{d.loc.col} {d.message}" for d in info.value.diagnostics]


def test_tuning_keys_are_a_typed_record():
    spec = loads(
        HEAD + "  fc: {op: Linear, out_features: 2, freeze: [weight], lr_mult: 2}\n"
        "  net: {op: Linear, out_features: 2, unfreeze: {at_step: {weight: 5}, warmup_steps: 10}}\n" + TASK
    )
    fc, net = spec.nodes
    assert fc.tuning.freeze == ("weight",) and fc.tuning.lr_mult == 2 and fc.tuning.lr is None
    assert fc.tuning.given("freeze") and not fc.tuning.given("trainable")
    assert fc.params == {"out_features": 2}
    plan = net.tuning.unfreeze
    assert (plan.unit, plan.starts, plan.warmup) == ("step", {"weight": 5}, 10)
    assert (plan.locs["weight"].line, plan.locs["weight"].col) == (6, 67)
    assert net.tuning.freeze is False and not net.tuning.given("freeze")


@pytest.mark.parametrize(
    ("tuning", "expected"),
    [
        ("lr_decay: 1.5", "5:47 `lr_decay` must be a number in (0, 1], not 1.5"),
        ("lr: 0", "5:41 `lr` must be a positive number, not 0"),
        ("freeze: []", "5:45 `freeze` takes a list of submodule paths or true"),
        ("lr: 0.1, lr_mult: 2", "5:55 `lr` and `lr_mult` cannot be combined"),
        ("freeze: true, trainable: [a]", "5:51 `freeze` and `trainable` cannot be combined"),
        ("unfreeze: {a: 1, a.b: 2}", "5:54 'a.b' and 'a' overlap: a parameter would unfreeze twice"),
        ("unfreeze: {at_epoch: {a: -1}}", "5:62 'a' starts training at epoch -1: give a whole number >= 0"),
    ],
)
def test_tuning_grammar_is_checked_at_load(tuning, expected):
    """Before, these were found in stage 4, after the shapes, one per compile."""
    assert messages(HEAD + f"  fc: {{op: Linear, out_features: 2, {tuning}}}\n" + TASK) == [expected]


def test_every_tuning_mistake_and_the_graphs_are_reported_in_one_run(run_cli, write_spec, tmp_path):
    spec = write_spec(
        HEAD + "  a: {op: Linear, out_features: 2, lr: -1}\n"
        "  b: {op: Linear, out_features: 2, lr_decay: 2}\n"
        "  c: {op: Lineer, out_features: 2}\n" + TASK
    )
    code, _, err = run_cli("check", spec)
    assert code == 2
    assert "`lr` must be a positive number, not -1" in err
    assert "`lr_decay` must be a number in (0, 1], not 2" in err
    assert "unknown op 'Lineer'" in err and "3 errors" in err


def test_the_unfreeze_schedule_is_parsed_once_per_compile(monkeypatch):
    from conftest import ROOT
    from nncompile.pipeline import compile_spec
    from nncompile.spec import tuning

    made = []
    parse = tuning.Unfreeze.__init__
    monkeypatch.setattr(tuning.Unfreeze, "__init__", lambda self, *a: made.append(a) or parse(self, *a))
    compile_spec(ROOT / "specs" / "finetune_gradual_unfreeze.yaml")
    assert len(made) == 1


def test_block_parameters_that_are_not_names_are_located_errors():
    """A list item that is itself a list or a mapping crashed the loader (unhashable)."""
    text = "nncompile: 1\nname: Net\ninputs: {x: [4]}\nblocks:\n  B:\n    params: [[1], n]\n"
    text += "    nodes: {r: ReLU}\nnodes:\n  b: {op: B, n: 1}\n" + TASK
    assert messages(text) == ["6:14 block parameter [1] is not an identifier"]


def test_numbers_keep_the_type_yaml_read():
    """`lr: 1` stays the integer 1 (the generated code writes what the spec wrote)."""
    spec = loads(
        HEAD + "  fc: {op: Linear, out_features: 2, lr: 1}\ntask: {kind: regression, optimizer: {lr: 1}}\n"
    )
    assert spec.task.optimizer.lr == 1 and isinstance(spec.task.optimizer.lr, int)
    assert isinstance(spec.nodes[0].tuning.lr, int)


EVERY_MAPPING = """\
nncompile: 1
name: Net
dims: {T: 4}
inputs:
  x: {shape: [3, T], dtype: float32, list: false}
blocks:
  B: {params: {n: 2}, inputs: [x], nodes: {r: ReLU}, output: r}
nodes:
  a: {op: Linear, in: x, out_features: 2, per_item: 1, freeze: [weight], lr: 0.1, lr_decay: 0.5, train_bn: false}
  b: {op: Linear, out_features: 2, lr_mult: 2, unfreeze: {at_epoch: {weight: 1}, warmup_epochs: 1}}
  c: {shares: b, in: a}
  d: {op: Linear, out_features: 2, trainable: [weight]}
outputs: {y: d}
task:
  kind: multitask
  heads:
    y: {kind: regression, loss: {name: MSELoss}, weight: 0.5, metrics: [mae, {name: mse}]}
  optimizer: {name: AdamW, lr: 1.0e-3, decay_norm_and_bias: true}
  scheduler: {name: StepLR, interval: epoch, frequency: 1, monitor: val_loss, step_size: 2}
  ema: {decay: 0.9}
"""


def _key_paths(value, path=()):
    if isinstance(value, dict):
        for key, item in value.items():
            yield (*path, key)
            yield from _key_paths(item, (*path, key))


@pytest.mark.parametrize("wrong", [3, "x", None, {"a": 1}])
def test_every_key_of_every_mapping_is_checked_in_our_words(wrong):
    """Any key of any mapping set to a wrong value: located mistakes, never a library's message."""
    import copy

    import yaml

    base = yaml.safe_load(EVERY_MAPPING)
    loads(EVERY_MAPPING)  # the base is valid
    for path in _key_paths(base):
        spec = copy.deepcopy(base)
        parent = spec
        for key in path[:-1]:
            parent = parent[key]
        parent[path[-1]] = wrong
        try:
            loads(yaml.safe_dump(spec, sort_keys=False), "s.yaml")
        except NncompileError as err:
            for d in err.diagnostics:
                assert d.loc is not None and d.loc.file == "s.yaml", (path, d)
                text = f"{d.message} {d.hint}"
                assert not any(w in text for w in ("Input should", "pydantic", "Field required")), (
                    path,
                    text,
                )
