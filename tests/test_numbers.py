"""Numbers as people write them (YAML 1.2, Python, Hydra configs): `lr: 3e-4` is a number in every
place a number goes, an integer form stays an integer, and a quoted number stays a string."""

import ast

import pytest
import yaml
from nncompile import compile_spec
from nncompile.errors import NncompileError
from nncompile.spec.yamlsrc import parse

# float forms of YAML 1.2 and Python (all but .5e-1 and -2.5e-3 are strings to YAML 1.1), and their values
FLOATS = {
    "3e-4": 3e-4,
    "1E5": 1e5,
    "1e+3": 1e3,
    "1.5e3": 1500.0,
    ".5e-1": 0.05,
    "-2.5e-3": -2.5e-3,
    "-.5": -0.5,
}
# and the ones a learning rate or a loss weight may take, with `.5`, which YAML 1.1 reads too
POSITIVE = [text for text, value in FLOATS.items() if value > 0] + [".5"]


def read(text: str):
    return parse(f"value: {text}\n", "s.yaml").data["value"]


@pytest.mark.parametrize("text", FLOATS)
def test_number_forms_are_floats(text):
    value = read(text)
    assert type(value) is float and value == FLOATS[text]


def test_integer_forms_stay_as_yaml_1_1_reads_them():
    assert [read(text) for text in ("1_000", "1000", "0x1F", "-3")] == [1000, 1000, 31, -3]
    assert all(type(read(text)) is int for text in ("1_000", "1000"))


@pytest.mark.parametrize("text", ['"3e-4"', "'1e5'", "'.5'", '"1_000"'])
def test_a_quoted_number_stays_a_string(text):
    assert read(text) == text[1:-1]


def test_booleans_and_non_finite_numbers_are_unchanged():
    assert [read(text) for text in ("on", "no", "true", "nan", "inf")] == [True, False, True, "nan", "inf"]
    for text in (".inf", "-.inf", ".nan", "1e400"):
        with pytest.raises(NncompileError, match="is not a finite number"):
            read(text)


def test_pyyaml_own_loaders_keep_yaml_1_1():
    """The forms are added to the spec loader's copy of the resolver table, not PyYAML's."""
    parse("lr: 3e-4\n", "s.yaml")
    assert yaml.safe_load("lr: 3e-4") == {"lr": "3e-4"}
    assert yaml.load("lr: -.5", Loader=yaml.SafeLoader) == {"lr": "-.5"}


SPEC = """\
nncompile: 1
name: Net
inputs:
  x: [16]
nodes:
  fc: {{op: Linear, out_features: {size}, lr: {v}}}
  act: {{op: LeakyReLU, negative_slope: {signed}}}
  bn: {{op: BatchNorm1d, eps: {v}}}
  label_fc: {{op: Linear, in: bn, out_features: 4, lr_mult: {v}}}
  box_fc: {{op: Linear, in: bn, out_features: 4}}
outputs: {{label: label_fc, box: box_fc}}
task:
  kind: multitask
  heads:
    label: {{kind: multiclass}}
    box: {{kind: regression, loss: {{name: SmoothL1Loss, beta: {v}}}, weight: {v}}}
  optimizer: {{name: AdamW, lr: {v}, weight_decay: {v}}}
  scheduler: {{name: StepLR, step_size: {step}, gamma: {v}}}
"""


def compiled(write_spec, **values):
    return compile_spec(write_spec(SPEC.format(**({"size": 8, "step": 10, "signed": 0.1} | values))))


def hparams(source: str) -> dict:
    """The LightningModule's hyperparameters: its __init__'s defaults."""
    module = ast.parse(source)
    init = next(
        f
        for c in module.body
        if isinstance(c, ast.ClassDef) and c.name == "NetModule"
        for f in c.body
        if isinstance(f, ast.FunctionDef) and f.name == "__init__"
    )
    args = init.args.args[len(init.args.args) - len(init.args.defaults) :]
    return {a.arg: ast.literal_eval(d) for a, d in zip(args, init.args.defaults, strict=True)}


def layer_args(source: str, layer: str) -> dict:
    """The keyword arguments of `self.<layer> = nn.X(...)` in the generated model."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == f"self.{layer}":
            return {k.arg: ast.literal_eval(k.value) for k in node.value.keywords}
    raise AssertionError(f"no self.{layer} in the generated code")


@pytest.mark.parametrize("text", POSITIVE)
def test_a_number_form_is_a_number_in_every_place(text, write_spec):
    value = FLOATS.get(text, 0.5)
    result = compiled(write_spec, v=text)
    assert hparams(result.source) == {
        "lr": value,  # optimizer
        "weight_decay": value,  # optimizer argument
        "scheduler_step_size": 10,
        "scheduler_gamma": value,  # scheduler argument
        "box_loss_beta": value,  # loss argument
        "box_weight": value,  # task head's loss weight
        "label_weight": 1.0,
        "lr_fc": value,  # a node's own learning rate
        "lr_mult_label_fc": value,
    }
    assert layer_args(result.source, "bn")["eps"] == value  # a layer argument
    assert result.spec.task.optimizer.lr == value and type(result.spec.task.optimizer.lr) is float


@pytest.mark.parametrize("text", FLOATS)
def test_a_signed_number_form_is_a_layer_argument(text, write_spec):
    result = compiled(write_spec, v=".5", signed=text)
    assert layer_args(result.source, "act") == {"negative_slope": FLOATS[text]}
    assert next(n for n in result.spec.nodes if n.id == "act").params == {"negative_slope": FLOATS[text]}


def test_integer_forms_are_integers(write_spec):
    result = compiled(write_spec, v=".5", size="1_000", step="1_0")
    assert layer_args(result.source, "fc") == {"in_features": 16, "out_features": 1000}
    assert type(layer_args(result.source, "fc")["out_features"]) is int
    assert hparams(result.source)["scheduler_step_size"] == 10


def errors(write_spec, **values) -> list:
    with pytest.raises(NncompileError) as info:
        compiled(write_spec, **values)
    return info.value.diagnostics


@pytest.mark.parametrize(
    ("values", "line", "message", "hint"),
    [
        (
            {"size": "1e5"},
            6,
            "`out_features` must be an integer, not the float 100000.0",
            "write 100000: a number written with a dot or an exponent is a float",
        ),
        (
            {"size": "2.5"},
            6,
            "`out_features` must be an integer, not the float 2.5",
            "sizes, counts and indexes are whole numbers",
        ),
        (
            {"step": "1e1"},
            18,
            "`step_size` must be an integer, not the float 10.0",
            "write 10: a number written with a dot or an exponent is a float",
        ),
    ],
)
def test_a_float_where_an_integer_goes_is_a_located_error_not_rounded(
    values, line, message, hint, write_spec
):
    [error] = errors(write_spec, v=".5", **values)
    assert (error.message, error.hint, error.loc.line) == (message, hint, line)


def test_a_quoted_number_where_a_number_goes_says_to_remove_the_quotes(write_spec):
    text = SPEC.format(v="3e-4", size=8, step=10, signed=0.1)
    with pytest.raises(NncompileError) as info:
        compile_spec(write_spec(text.replace("lr: 3e-4, weight", 'lr: "3e-4", weight')))
    [error] = info.value.diagnostics
    assert (error.message, error.loc.line) == ("'lr' must be number, not string", 17)
    assert error.hint == "remove the quotes: a quoted value stays a string"
    [error] = errors(write_spec, v="3e-4", signed="'1e-2'")
    assert (error.message, error.loc.line) == ("`negative_slope` must be a number, not the string '1e-2'", 7)
    assert error.hint == "remove the quotes: a quoted value stays a string"
