"""Specs that compose (`extends:`, `--set`, `nncompile resolve`, `nncompile sweep`): each composed
spec compiles to the same model code as its hand-flattened twin, every value keeps the file, line
and column it came from, and the generated header names every file that went in."""

import difflib
import hashlib
import json
import shlex
import textwrap

import jsonschema
import pytest
from nncompile import NncompileError, compile_spec
from nncompile.errors import Loc
from nncompile.pipeline import check_output
from nncompile.spec import load
from nncompile.spec.compose import load as compose_load
from nncompile.spec.compose import resolved_yaml
from nncompile.spec.schema import schema

BASE = """\
nncompile: 1
name: Mlp
inputs:
  features: [32]
nodes:
  fc1: {op: Linear, out_features: 64}
  act1: {op: ReLU}
  norm1: {op: BatchNorm1d}
  drop1: {op: Dropout, p: 0.1}
  head: {op: Linear, out_features: 1}
outputs: {value: head}
task:
  kind: regression
  loss: SmoothL1Loss
  optimizer: {name: Adam, lr: 3.0e-4, weight_decay: 1.0e-5}
"""


def write(folder, files: dict[str, str]):
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return folder


def body(source: str) -> str:
    """The generated file without its header (the module docstring naming the spec files)."""
    assert source.startswith('"""')
    return source[source.index('"""', 3) + 3 :]


def assert_same_model(composed, flat):
    a, b = body(compile_spec(composed).source), body(compile_spec(flat).source)
    assert a == b, "".join(difflib.unified_diff(b.splitlines(True), a.splitlines(True), "flat", "composed"))


def errors(exc) -> str:
    return exc.value.render()


def test_three_level_chain_edits_and_deletes_nodes_and_keys(tmp_path):
    write(
        tmp_path,
        {
            "base/base.yaml": BASE,
            "mid.yaml": """\
                extends: base/base.yaml
                nodes:
                  fc1: {out_features: 128}   # edit one key of a node
                  drop1: {p: null}           # delete a key: Dropout's default p
                """,
            "top.yaml": """\
                extends: mid.yaml
                name: MlpTop
                nodes:
                  norm1: null                # delete a node
                task:
                  optimizer: {lr: 1.0e-3, weight_decay: null}
                """,
            "flat.yaml": """\
                nncompile: 1
                name: MlpTop
                inputs:
                  features: [32]
                nodes:
                  fc1: {op: Linear, out_features: 128}
                  act1: {op: ReLU}
                  drop1: {op: Dropout}
                  head: {op: Linear, out_features: 1}
                outputs: {value: head}
                task:
                  kind: regression
                  loss: SmoothL1Loss
                  optimizer: {name: Adam, lr: 1.0e-3}
                """,
        },
    )
    assert_same_model(tmp_path / "top.yaml", tmp_path / "flat.yaml")
    spec = load(tmp_path / "top.yaml")
    assert [n.id for n in spec.nodes] == ["fc1", "act1", "drop1", "head"]
    assert [b.path for b in spec.bases] == [f"{tmp_path}/mid.yaml", f"{tmp_path}/base/base.yaml"]
    # each value is located where it was written, with the chain it was inherited along
    assert spec.node("fc1").param_loc("out_features") == Loc(
        str(tmp_path / "mid.yaml"), 3, 23, (str(tmp_path / "top.yaml"),)
    )
    head = spec.node("head").param_loc("out_features")
    assert (head.file, head.line, head.via) == (
        f"{tmp_path}/base/base.yaml",
        10,
        (f"{tmp_path}/top.yaml", f"{tmp_path}/mid.yaml"),
    )
    # a merged mapping stays where it was first written; its values where they were last written
    assert spec.task.optimizer.loc.file == f"{tmp_path}/base/base.yaml"
    assert spec.doc.loc("task", "optimizer", "lr").file == str(tmp_path / "top.yaml")


def test_two_bases_in_a_list_apply_in_order(tmp_path):
    write(
        tmp_path,
        {
            "base.yaml": BASE,
            "recipe.yaml": """\
                task:
                  optimizer: {name: SGD, lr: 0.1, momentum: 0.9, weight_decay: null}
                  scheduler: {name: StepLR, step_size: 10}
                """,
            "wide.yaml": """\
                nodes:
                  fc1: {out_features: 256}
                task:
                  optimizer: {lr: 0.05}
                """,
            "spec.yaml": """\
                extends: [base.yaml, recipe.yaml, wide.yaml]
                """,
            "flat.yaml": """\
                nncompile: 1
                name: Mlp
                inputs:
                  features: [32]
                nodes:
                  fc1: {op: Linear, out_features: 256}
                  act1: {op: ReLU}
                  norm1: {op: BatchNorm1d}
                  drop1: {op: Dropout, p: 0.1}
                  head: {op: Linear, out_features: 1}
                outputs: {value: head}
                task:
                  kind: regression
                  loss: SmoothL1Loss
                  optimizer: {name: SGD, lr: 0.05, momentum: 0.9}
                  scheduler: {name: StepLR, step_size: 10}
                """,
        },
    )
    assert_same_model(tmp_path / "spec.yaml", tmp_path / "flat.yaml")


def test_a_list_is_replaced_and_a_head_node_added_on_top(tmp_path):
    write(
        tmp_path,
        {
            "base.yaml": BASE,
            "spec.yaml": """\
                extends: base.yaml
                inputs:
                  features: [16]          # a list replaces the base's list
                nodes:
                  act2: {op: ReLU}        # new nodes go after the base's, so they chain on its last
                  head2: {op: Linear, out_features: 3}
                outputs: {value: head2}
                """,
            "flat.yaml": """\
                nncompile: 1
                name: Mlp
                inputs:
                  features: [16]
                nodes:
                  fc1: {op: Linear, out_features: 64}
                  act1: {op: ReLU}
                  norm1: {op: BatchNorm1d}
                  drop1: {op: Dropout, p: 0.1}
                  head: {op: Linear, out_features: 1}
                  act2: {op: ReLU}
                  head2: {op: Linear, out_features: 3}
                outputs: {value: head2}
                task:
                  kind: regression
                  loss: SmoothL1Loss
                  optimizer: {name: Adam, lr: 3.0e-4, weight_decay: 1.0e-5}
                """,
        },
    )
    assert_same_model(tmp_path / "spec.yaml", tmp_path / "flat.yaml")
    assert compile_spec(tmp_path / "spec.yaml").shapes["head2"] == (3,)


def test_a_node_inserted_mid_chain_with_explicit_in(tmp_path):
    """docs/composition.md: the new node names its input, the node after it names the new one."""
    write(
        tmp_path,
        {
            "base.yaml": BASE,
            "spec.yaml": """\
                extends: base.yaml
                nodes:
                  norm1: {in: extra}
                  extra: {op: Linear, out_features: 48, in: act1}
                """,
            "flat.yaml": """\
                nncompile: 1
                name: Mlp
                inputs:
                  features: [32]
                nodes:
                  fc1: {op: Linear, out_features: 64}
                  act1: {op: ReLU}
                  norm1: {op: BatchNorm1d, in: extra}
                  drop1: {op: Dropout, p: 0.1}
                  head: {op: Linear, out_features: 1}
                  extra: {op: Linear, out_features: 48, in: act1}
                outputs: {value: head}
                task:
                  kind: regression
                  loss: SmoothL1Loss
                  optimizer: {name: Adam, lr: 3.0e-4, weight_decay: 1.0e-5}
                """,
        },
    )
    assert_same_model(tmp_path / "spec.yaml", tmp_path / "flat.yaml")
    result = compile_spec(tmp_path / "spec.yaml")
    assert result.shapes["norm1"] == (48,)
    forward = result.source[result.source.index("def forward") :]
    assert forward.index("self.act1(") < forward.index("self.extra(") < forward.index("self.norm1(")


def test_a_shorthand_node_is_merged_as_its_mapping(tmp_path):
    write(
        tmp_path,
        {
            "base.yaml": BASE.replace("act1: {op: ReLU}", "act1: LeakyReLU"),
            "spec.yaml": "extends: base.yaml\nnodes:\n  act1: {negative_slope: 0.2}\n",
        },
    )
    act = load(tmp_path / "spec.yaml").node("act1")
    assert (act.op, act.params) == ("LeakyReLU", {"negative_slope": 0.2})
    assert act.op_loc() == Loc(str(tmp_path / "base.yaml"), 7, 9, (str(tmp_path / "spec.yaml"),))


def test_resolve_prints_yaml_that_compiles_to_the_same_model_with_a_source_per_value(tmp_path, run_cli):
    write(
        tmp_path,
        {"base.yaml": BASE, "spec.yaml": "extends: base.yaml\nnodes:\n  fc1: {out_features: 8}\n"},
    )
    code, out, err = run_cli("resolve", tmp_path / "spec.yaml", "--set", "task.optimizer.lr=0.01")
    assert code == 0, err
    assert f"    out_features: 8  # {tmp_path}/spec.yaml:3:23" in out
    assert f"    op: Linear  # {tmp_path}/base.yaml:6:13" in out
    assert "    lr: 0.01  # --set task.optimizer.lr=0.01" in out
    assert all("#" in line for line in out.splitlines())  # every line says where it comes from
    (tmp_path / "flat.yaml").write_text(out)
    composed = compile_spec(tmp_path / "spec.yaml", overrides=["task.optimizer.lr=0.01"])
    assert body(compile_spec(tmp_path / "flat.yaml").source) == body(composed.source)
    assert "torch" not in resolved_yaml(compose_load(tmp_path / "spec.yaml"))


# errors


def test_a_mistake_in_a_base_is_located_there_with_the_chain(tmp_path):
    write(
        tmp_path,
        {
            "base.yaml": BASE.replace("lr: 3.0e-4", "lr: -1"),
            "mid.yaml": "extends: base.yaml\n",
            "top.yaml": "extends: mid.yaml\n",
        },
    )
    with pytest.raises(NncompileError) as exc:
        compile_spec(tmp_path / "top.yaml")
    text = errors(exc)
    where = f"{tmp_path}/base.yaml:15:31"
    assert text.startswith(f"{where}: error: learning rate -1 must be positive"), text
    assert f"note: inherited along {tmp_path}/top.yaml -> {tmp_path}/mid.yaml -> {where}" in text
    assert "optimizer: {name: Adam, lr: -1" in text  # the base's line, with its caret


def test_a_shape_mistake_in_a_base_is_located_there(tmp_path):
    write(
        tmp_path,
        {
            "base.yaml": BASE.replace(
                "{op: Linear, out_features: 64}", "{op: Linear, in_features: 31, out_features: 64}"
            ),
            "top.yaml": "extends: base.yaml\n",
        },
    )
    with pytest.raises(NncompileError) as exc:
        compile_spec(tmp_path / "top.yaml")
    assert errors(exc).startswith(f"{tmp_path}/base.yaml:6:")
    assert f"note: inherited along {tmp_path}/top.yaml -> {tmp_path}/base.yaml:6:" in errors(exc)


def test_a_cycle_of_bases(tmp_path):
    write(
        tmp_path,
        {
            "a.yaml": "extends: b.yaml\n" + BASE,
            "b.yaml": "extends: [c.yaml]\n",
            "c.yaml": "extends: a.yaml\n",
        },
    )
    with pytest.raises(NncompileError) as exc:
        load(tmp_path / "a.yaml")
    text = errors(exc)
    assert text.startswith(
        f"{tmp_path}/c.yaml:1:10: error: `extends:` makes a cycle: a.yaml -> b.yaml -> c.yaml -> a.yaml"
    )
    assert f"inherited along {tmp_path}/a.yaml -> {tmp_path}/b.yaml -> {tmp_path}/c.yaml:1:10" in text


def test_a_spec_that_extends_itself(tmp_path):
    write(tmp_path, {"a.yaml": "extends: ./a.yaml\n" + BASE})
    with pytest.raises(NncompileError, match="cycle: a.yaml -> a.yaml"):
        load(tmp_path / "a.yaml")


def test_a_missing_base(tmp_path):
    write(tmp_path, {"base.yaml": BASE, "spec.yaml": "nncompile: 1\nextends: [bsae.yaml]\n"})
    with pytest.raises(NncompileError) as exc:
        load(tmp_path / "spec.yaml")
    text = errors(exc)
    assert text.startswith(
        f"{tmp_path}/spec.yaml:2:11: error: cannot read base spec {tmp_path}/bsae.yaml: No such file"
    )
    assert "hint: did you mean 'base.yaml'" in text


@pytest.mark.parametrize(
    ("base", "message"),
    [
        ("- a\n- b\n", "is not a spec: its top level is a list"),
        ("", "the spec is empty"),
        ("a: [\n", "invalid YAML"),
    ],
)
def test_a_base_that_is_not_a_spec(tmp_path, base, message):
    write(tmp_path, {"base.yaml": base, "spec.yaml": "extends: base.yaml\n"})
    with pytest.raises(NncompileError) as exc:
        load(tmp_path / "spec.yaml")
    text = errors(exc)
    assert text.startswith(f"{tmp_path}/base.yaml:") and message in text
    assert f"inherited along {tmp_path}/spec.yaml -> {tmp_path}/base.yaml:" in text


def test_extends_names_files(tmp_path):
    write(tmp_path, {"spec.yaml": "extends: [base.yaml, 3]\n"})
    with pytest.raises(NncompileError, match="names a spec file by its path, not 3"):
        load(tmp_path / "spec.yaml")


# --set


def test_set_changes_values_read_as_yaml_and_null_deletes(tmp_path):
    write(tmp_path, {"base.yaml": BASE})
    sets = ["nodes.fc1.out_features=16", "inputs.features=[8]", "nodes.drop1=null", "task.optimizer.lr=3e-2"]
    spec = load(tmp_path / "base.yaml", overrides=sets)
    assert spec.node("fc1").params == {"out_features": 16}
    assert spec.inputs[0].shape == (8,)
    assert "drop1" not in [n.id for n in spec.nodes]
    assert spec.task.optimizer.lr == 0.03
    assert spec.node("fc1").param_loc("out_features") == Loc("--set nodes.fc1.out_features=16", 0, 0)


def test_set_on_a_misspelled_path_suggests_the_real_keys(tmp_path, run_cli):
    write(tmp_path, {"base.yaml": BASE})
    code, _, err = run_cli("check", tmp_path / "base.yaml", "--set", "nodes.fc2.out_features=5")
    assert code == 2
    assert err.startswith(
        "--set nodes.fc2.out_features=5: error: `--set` path nodes.fc2.out_features: no key 'fc2' in nodes"
    )
    assert "hint: did you mean 'fc1'?" in err
    code, _, err = run_cli("summary", tmp_path / "base.yaml", "--set", "task.optimiser.lr=0.1")
    assert code == 2 and "did you mean 'optimizer'?" in err


def test_set_with_a_value_of_the_wrong_type_is_located_at_the_option(tmp_path, run_cli):
    write(tmp_path, {"base.yaml": BASE})
    code, _, err = run_cli("check", tmp_path / "base.yaml", "--set", "task.optimizer.lr=fast")
    assert code == 2
    assert err.startswith("--set task.optimizer.lr=fast: error: 'lr' must be number, not string"), err
    code, _, err = run_cli("check", tmp_path / "base.yaml", "--set", "task.kind=regresion")
    assert code == 2 and err.startswith("--set task.kind=regresion: error:") and "regression" in err


@pytest.mark.parametrize(
    "option", ["nodes.fc1.out_features", "nodes..x=1", "nodes.fc1.out_features=", "extends=a.yaml"]
)
def test_set_needs_path_and_value(tmp_path, option):
    write(tmp_path, {"base.yaml": BASE})
    with pytest.raises(NncompileError) as exc:
        load(tmp_path / "base.yaml", overrides=[option])
    assert errors(exc).startswith(f"--set {option}: error:")


def test_set_on_summary_graph_and_compile(tmp_path, run_cli):
    write(tmp_path, {"base.yaml": BASE})
    code, out, _ = run_cli("summary", tmp_path / "base.yaml", "--set", "nodes.fc1.out_features=7", "--json")
    fc1 = next(row for row in json.loads(out)["nodes"] if row["node"] == "fc1")
    assert fc1["output"] == "(B, 7)", fc1
    code, out, _ = run_cli("graph", tmp_path / "base.yaml", "--set", "nodes.fc1.out_features=7")
    assert code == 0 and "(B, 7)" in out
    code, out, _ = run_cli(tmp_path / "base.yaml", "-o", "-", "--set", "nodes.fc1.out_features=7")
    assert code == 0 and "nn.Linear(in_features=32, out_features=7)" in out


# the generated header, --check, sweep


def test_header_lists_every_file_and_set_and_regenerates_it(tmp_path, run_cli):
    write(tmp_path, {"base.yaml": BASE, "spec.yaml": "extends: base.yaml\nname: Child\n"})
    out = tmp_path / "child.py"
    code, _, err = run_cli(
        tmp_path / "spec.yaml",
        "-o",
        out,
        "--set",
        "nodes.fc1.out_features=5",
        "--set",
        "task.optimizer={name: SGD, lr: 0.1}",
    )
    assert code == 0, err
    source = out.read_text()
    header = source[: source.index('"""', 3)]
    sha = hashlib.sha256((tmp_path / "base.yaml").read_bytes()).hexdigest()
    assert f"Base {tmp_path}/base.yaml sha256: {sha}" in header
    assert "Set: nodes.fc1.out_features=5\nSet: task.optimizer={name: SGD, lr: 0.1}" in header
    regenerate = f"Regenerate: nncompile {tmp_path}/spec.yaml --set nodes.fc1.out_features=5 --set 'task.optimizer={{name: SGD, lr: 0.1}}' -o {out}"
    assert regenerate in header
    # the line reproduces the file: run it (without a shell, so undo its quoting)
    args = shlex.split(regenerate.removeprefix("Regenerate: nncompile "))
    out.unlink()
    assert run_cli(*args)[0] == 0
    assert out.read_text() == source
    code, stdout, _ = run_cli(*args, "--check")
    assert code == 0 and "up to date" in stdout


def test_check_notices_a_change_in_a_base(tmp_path, run_cli):
    write(
        tmp_path, {"base.yaml": BASE, "mid.yaml": "extends: base.yaml\n", "spec.yaml": "extends: mid.yaml\n"}
    )
    out = tmp_path / "spec.py"
    compile_spec(tmp_path / "spec.yaml").write(out)
    assert not check_output(tmp_path / "spec.yaml", out).stale
    (tmp_path / "base.yaml").write_text(BASE.replace("out_features: 64", "out_features: 65"))
    stale = check_output(tmp_path / "spec.yaml", out)
    assert stale.stale
    assert (
        stale.reason
        == f"{tmp_path}/base.yaml (a base of {tmp_path}/spec.yaml) changed since it was generated"
    )
    code, stdout, _ = run_cli(tmp_path / "spec.yaml", "-o", out, "--check")
    assert code == 1 and "base.yaml (a base of" in stdout


def test_a_spec_never_overwrites_its_base(tmp_path):
    write(tmp_path, {"base.yaml": BASE, "spec.yaml": "extends: base.yaml\n"})
    with pytest.raises(NncompileError, match="is the spec"):
        compile_spec(tmp_path / "spec.yaml").write(tmp_path / "base.yaml", force=True)


def test_sweep_writes_one_file_per_combination_and_a_manifest(tmp_path, run_cli):
    write(tmp_path, {"base.yaml": BASE, "spec.yaml": "extends: base.yaml\n"})
    folder = tmp_path / "sweep"
    code, _, err = run_cli(
        "sweep",
        tmp_path / "spec.yaml",
        "--grid",
        "nodes.fc1.out_features=24,40",
        "--grid",
        "task.optimizer.lr=1e-3,3e-4,5e-5",
        "-o",
        f"{folder}/",
    )
    assert code == 0, err
    manifest = json.loads((folder / "sweep.json").read_text())
    assert len(manifest) == 6
    assert manifest["spec__out_features_24__lr_3e_4.py"] == {
        "nodes.fc1.out_features": 24,
        "task.optimizer.lr": 3e-4,
    }
    assert sorted(p.name for p in folder.glob("*.py")) == sorted(manifest)
    swept = {str(v) for values in manifest.values() for v in values.values()} | {
        "24",
        "40",
        "1e-3",
        "3e-4",
        "5e-5",
    }
    sources = {name: (folder / name).read_text() for name in manifest}
    for name, values in manifest.items():  # each file holds its own combination
        width, lr = values["nodes.fc1.out_features"], values["task.optimizer.lr"]
        assert f"self.fc1 = nn.Linear(in_features=32, out_features={width})" in sources[name], name
        assert f"def __init__(self, lr: float = {lr!r}," in sources[name], name
    for a in sources:
        for b in sources:
            for line in difflib.unified_diff(
                body(sources[a]).splitlines(), body(sources[b]).splitlines(), n=0
            ):
                if line.startswith(("+", "-")) and not line.startswith(("+++", "---")):
                    assert any(value in line for value in swept), line  # only swept values differ
    # each file's header regenerates it, and --check on it notices a later change to the base
    name = "spec__out_features_40__lr_5e_5.py"
    sets = ["nodes.fc1.out_features=40", "task.optimizer.lr=5e-5"]
    assert "Set: nodes.fc1.out_features=40\nSet: task.optimizer.lr=5e-5" in sources[name]
    assert not check_output(tmp_path / "spec.yaml", folder / name, sets).stale
    (tmp_path / "base.yaml").write_text(BASE.replace("SmoothL1Loss", "MSELoss"))
    assert "base.yaml (a base of" in check_output(tmp_path / "spec.yaml", folder / name, sets).reason


def test_schema_describes_extends():
    s = schema()
    assert "JSON Merge Patch" in s["$defs"]["Spec"]["properties"]["extends"]["description"]
    # a spec that extends a base writes only what it changes: no key is required, nested ones neither
    assert (s["if"], s["then"]) == ({"required": ["extends"]}, {"$ref": "#/$defs/SpecPatch"})
    validator = jsonschema.Draft202012Validator(s)
    assert not list(validator.iter_errors({"extends": "base.yaml", "nodes": {"fc": {"out_features": 5}}}))
    assert list(validator.iter_errors({"nodes": {"fc": {"out_features": 5}}}))
    assert list(validator.iter_errors({"extends": "base.yaml", "task": {"optimizer": {"lr": "fast"}}}))


def test_a_user_layer_is_imported_from_the_folder_of_the_base_that_names_it(tmp_path):
    layer = (
        "from torch import nn\n\nclass Twice(nn.Module):\n    def forward(self, x):\n        return 2 * x\n"
    )
    base = BASE.replace("act1: {op: ReLU}", "act1: {op: mylayers_compose.Twice}")
    write(
        tmp_path,
        {"lib/mylayers_compose.py": layer, "lib/base.yaml": base, "spec.yaml": "extends: lib/base.yaml\n"},
    )
    assert "Twice" in compile_spec(tmp_path / "spec.yaml").source


def test_a_base_two_bases_extend_is_listed_once(tmp_path):
    write(
        tmp_path,
        {
            "base.yaml": BASE,
            "b.yaml": "extends: base.yaml\nnodes: {fc1: {out_features: 8}}\n",
            "c.yaml": "extends: base.yaml\nnodes: {head: {out_features: 2}}\n",
            "spec.yaml": "extends: [b.yaml, c.yaml]\n",
        },
    )
    spec = load(tmp_path / "spec.yaml")
    assert [b.path for b in spec.bases] == [
        f"{tmp_path}/{name}" for name in ("b.yaml", "base.yaml", "c.yaml")
    ]
    # c.yaml brings base.yaml's fc1 again, over b.yaml's edit: bases merge in order, whole
    assert spec.node("fc1").params == {"out_features": 64}
    assert spec.node("head").params == {"out_features": 2}


def test_check_generated_notices_a_change_in_a_base(tmp_path, run_cli):
    specs = write(tmp_path / "specs", {"base.yaml": BASE, "child.yaml": "extends: base.yaml\nname: Child\n"})
    generated = tmp_path / "generated"
    generated.mkdir()
    assert run_cli(specs / "base.yaml", specs / "child.yaml", "-o", f"{generated}/")[0] == 0
    assert run_cli("check-generated", specs, generated)[0] == 0
    (specs / "base.yaml").write_text(BASE.replace("p: 0.1", "p: 0.2"))
    code, out, _ = run_cli("check-generated", specs, generated)
    assert code == 1
    assert (
        f"{generated}/child.py: out of date: {specs}/base.yaml (a base of {specs}/child.yaml) changed" in out
    )


def test_check_generated_compiles_with_the_set_options_of_the_header(tmp_path, run_cli):
    specs = write(tmp_path / "specs", {"mlp.yaml": BASE})
    generated = tmp_path / "generated"
    generated.mkdir()
    option = 'task.optimizer={name: "SGD", lr: 0.1}'
    assert run_cli(specs / "mlp.yaml", "-o", generated / "mlp.py", "--set", option)[0] == 0
    assert 'Set: task.optimizer={name: \\"SGD\\", lr: 0.1}' in (generated / "mlp.py").read_text()
    code, out, _ = run_cli("check-generated", specs, generated)
    assert code == 0, out
    (specs / "mlp.yaml").write_text(BASE.replace("p: 0.1", "p: 0.2"))
    code, out, _ = run_cli("check-generated", specs, generated)
    assert code == 1
    assert f"regenerate with: nncompile {specs}/mlp.yaml --set '{option}' -o {generated}/mlp.py" in out
