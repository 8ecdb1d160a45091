"""No code injection: adversarial values through every spec field that reaches generated code.

A spec value reaches the output only through pyfmt (identifier, dotted path, literal via repr).
Each payload below tries to break out of its string, comment, docstring or template and run
`pwned`. Either the compiler rejects the spec with its own error, or the output parses and holds
the payload only as data: no statement, name, import or call comes from it.
"""

import ast
import io
import json
import keyword
import math
import tokenize

import pytest
import torch
import yaml
from conftest import ROOT
from hypothesis import given, settings
from hypothesis import strategies as st
from load_generated import load_source
from nncompile import compile_spec
from nncompile.errors import NncompileError
from nncompile.pyfmt import Arg, Call, UnsafeValue, docstring_text, dotted, flat, identifier, literal

PAYLOADS = [
    'x"); pwned() #',
    "x'); pwned() #",
    '"""\npwned()\n"""',
    "'''\npwned()\n'''",
    "x\npwned()",
    "x\r\npwned()",
    "x\u2028pwned()",
    "x\\",
    "x\\\npwned()",
    "x\0pwned()",
    "x\x1b[2Jpwned()",
    "os.system('pwned')",
    "__import__('os').system('pwned')",
    "../pwned",
    "{pwned}",
    "{{ pwned() }}",
    "{% raw %}pwned(){% endraw %}",
    "# pwned",
]
# Modules a generated file may import (the user's own modules would be listed in the spec); os
# for os.path: weight paths next to the file, a Hugging Face folder checked before loading.
ALLOWED_IMPORTS = {
    "os",
    "pytorch_lightning",
    "torch",
    "torchmetrics",
    "torchvision",
    "torchvision.models.feature_extraction",
    "transformers",
}

SPEC = """\
nncompile: 1
name: {name}
inputs:
  {input}: [16]
nodes:
  {node}: {{op: {op}, out_features: 10, bias: {layer_arg}}}
outputs: {{{output}: {node}}}
task:
  kind: classification
  output: {task_output}
  loss: {{name: {loss}, reduction: {loss_arg}}}
  optimizer: {{name: {optimizer}, lr: 0.1, momentum: {optimizer_arg}}}
"""
DEFAULTS = {
    "name": "Net",
    "input": "x",
    "node": "fc",
    "op": "Linear",
    "layer_arg": "true",
    "output": "logits",
    "task_output": "logits",
    "loss": "CrossEntropyLoss",
    "loss_arg": "mean",
    "optimizer": "SGD",
    "optimizer_arg": "0.9",
}
BACKBONE_SPEC = """\
nncompile: 1
name: Net
inputs:
  image: [3, 32, 32]
nodes:
  backbone: {{op: torchvision.resnet18, weights: {weights}, output: {output}}}
  pool: {{op: AdaptiveAvgPool2d, output_size: 1}}
  flat: {{op: Flatten}}
  fc: {{op: Linear, out_features: 10}}
task:
  kind: classification
"""


def quoted(text: str) -> str:
    """A YAML double-quoted scalar for any text (JSON strings are valid YAML ones)."""
    return json.dumps(text)


def assert_no_injection(source: str) -> None:
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            modules = [node.module] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            assert set(modules) <= ALLOWED_IMPORTS, ast.unparse(node)
        names = []
        if isinstance(node, ast.Name):
            names.append(node.id)
        elif isinstance(node, ast.Attribute):
            names.append(node.attr)
        elif isinstance(node, ast.FunctionDef | ast.ClassDef):
            names.append(node.name)
        elif isinstance(node, ast.keyword) and node.arg:
            names.append(node.arg)
        for name in names:
            assert "pwned" not in name and name not in ("system", "popen", "__import__", "exec", "eval"), name
    assert_payload_only_in_data(source)


def assert_payload_only_in_data(source: str) -> None:
    """A payload lives only inside a string or a comment."""
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if "pwned" in token.string:
            assert token.type in (tokenize.STRING, tokenize.COMMENT), token


def compile_or_reject(spec_path, output="model.py"):
    """The generated source, or None when the compiler rejected the spec with its own error."""
    try:
        return compile_spec(spec_path, output).source
    except NncompileError:
        return None


@pytest.mark.parametrize("field", sorted(DEFAULTS))
@pytest.mark.parametrize("payload", PAYLOADS, ids=range(len(PAYLOADS)))
def test_payload_in_field(field, payload, write_spec):
    spec = write_spec(SPEC.format(**{**DEFAULTS, field: quoted(payload)}))
    source = compile_or_reject(spec)
    if source is not None:
        assert_no_injection(source)
        assert field in ("layer_arg", "loss_arg", "optimizer_arg"), f"{field} accepted {payload!r}"


def test_string_arguments_reach_the_code_as_data(write_spec):
    """A field that accepts any string carries it as an exact string literal (loss and optimizer
    arguments are not such fields: both are built at compile time and refuse a bad value)."""
    payload = PAYLOADS[2]
    values = {"layer_arg": quoted(payload)}
    source = compile_spec(write_spec(SPEC.format(**{**DEFAULTS, **values}))).source
    assert_no_injection(source)
    strings = [n.value for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Constant)]
    assert strings.count(payload) == 1


@pytest.mark.parametrize("field", ["weights", "output"])
@pytest.mark.parametrize("payload", PAYLOADS, ids=range(len(PAYLOADS)))
def test_payload_in_backbone_field(field, payload, write_spec):
    values = {"weights": "null", "output": "layer4", field: quoted(payload)}
    with pytest.raises(NncompileError):
        compile_spec(write_spec(BACKBONE_SPEC.format(**values)))


HF_SPEC = """\
nncompile: 1
name: Net
inputs: {{input_ids: {{shape: [4], dtype: int64}}}}
nodes:
  bert: {{op: transformers.AutoModel, model: {model}, weights: {weights}, output: {output}}}
task: {{kind: regression}}
"""


@pytest.mark.parametrize("payload", [p for p in PAYLOADS if "\0" not in p and "/" not in p])
def test_payload_in_hf_model_folders(payload, tmp_path):
    """A Hugging Face model's folder (`model:`, `weights:`) reaches the code as a string literal;
    `output:` names a field of the model's output or is refused."""
    transformers = pytest.importorskip("transformers")
    folder = tmp_path / f"m {payload}"
    config = dict(
        vocab_size=10, hidden_size=8, num_hidden_layers=1, num_attention_heads=1, intermediate_size=8
    )
    transformers.BertConfig(**config).save_pretrained(folder)
    spec = tmp_path / "spec.yaml"
    values = {"model": quoted(str(folder)), "weights": quoted(str(folder)), "output": "last_hidden_state"}
    spec.write_text(HF_SPEC.format(**values))
    source = compile_spec(spec).source
    assert_no_injection(source)
    strings = [n.value for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Constant)]
    assert str(folder) in strings
    spec.write_text(HF_SPEC.format(**{**values, "output": quoted(payload)}))
    with pytest.raises(NncompileError, match="gives no output"):
        compile_spec(spec)


@pytest.mark.parametrize("payload", [p for p in PAYLOADS if "\0" not in p and "/" not in p])
def test_payload_in_file_paths(payload, tmp_path):
    """The spec path and the output path are written into the header docstring."""
    spec = tmp_path / f"spec {payload}.yaml"
    spec.write_text(SPEC.format(**DEFAULTS))
    source = compile_spec(spec, tmp_path / f"out {payload}.py").source
    assert_no_injection(source)
    docstring = ast.get_docstring(ast.parse(source))
    assert f"spec {payload}.yaml" in docstring and f"out {payload}.py" in docstring


UNSAFE_TAGS = [
    '!!python/object/apply:os.system ["touch {marker}"]',
    '!!python/object/new:os.system ["touch {marker}"]',
    "!!python/name:os.system",
    "!!python/module:os",
    "!!python/object:os.system {{}}",
]


@pytest.mark.parametrize("tag", UNSAFE_TAGS)
@pytest.mark.parametrize("field", ["layer_arg", "loss_arg", "op", "node"])
def test_yaml_tags_never_run(tag, field, write_spec, tmp_path):
    marker = tmp_path / "pwned"
    value = tag.format(marker=marker)
    if field == "node":  # as a mapping key
        value = f"? {value}\n    "
    spec = write_spec(SPEC.format(**{**DEFAULTS, field: value}))
    with pytest.raises(NncompileError):
        compile_spec(spec)
    assert not marker.exists()


# --- the three pyfmt functions, on any text -----------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_literal_round_trips_any_string(text):
    assert ast.literal_eval(literal(text)) == text
    assert "\n" not in literal(text)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_docstring_text_round_trips_inside_a_docstring(text):
    safe = docstring_text(text)
    assert "\n" not in safe and '"""' not in safe
    assert ast.literal_eval(f'"""{safe} """') == text + " "


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_identifier_and_dotted_accept_only_python_names(text):
    try:
        identifier(text)
    except UnsafeValue:
        pass
    else:
        assert text.isidentifier() and text.isascii()
    try:
        dotted(text)
    except UnsafeValue:
        pass
    else:
        assert all(part.isidentifier() and part.isascii() for part in text.split("."))


PLAIN = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(PLAIN)
def test_literal_of_any_yaml_value_is_one_expression(value):
    tree = ast.parse(literal(value), mode="eval")
    for node in ast.walk(tree):  # only displays and constants; `float("nan")` for nan/inf
        if isinstance(node, ast.Call):
            assert ast.literal_eval(node.args[0]) in ("nan", "inf", "-inf") and not node.keywords
            continue
        assert isinstance(
            node,
            ast.Expression
            | ast.Constant
            | ast.Tuple
            | ast.Dict
            | ast.UnaryOp
            | ast.USub
            | ast.Load
            | ast.Name,
        ), ast.dump(node)
        if isinstance(node, ast.Name):
            assert node.id == "float"


def test_literal_refuses_other_objects():
    for value in (b"bytes", object(), {1, 2}, math):
        with pytest.raises(UnsafeValue):
            literal(value)


def test_yaml_payload_values_survive_loading():
    """The payloads reach the compiler intact (so the tests above test what they claim)."""
    for payload in PAYLOADS:
        if "\0" in payload:
            continue
        assert yaml.safe_load(quoted(payload)) == payload


def test_generated_files_load_weights_only_safely(tmp_path, monkeypatch):
    """Generated code may load local weight files only with torch.load(weights_only=True) (or
    safetensors): unpickling a file can run arbitrary code. No spec of specs/ reads a weight file,
    so the files of the two that do (a state dict, a Lightning checkpoint) are checked too."""
    monkeypatch.chdir(tmp_path)
    sources = {p.name: p.read_text() for p in sorted((ROOT / "generated").glob("*.py"))}
    for path in ("checkpoint_args", "checkpoint_hyperparameters"):
        (tmp_path / path).mkdir()
        spec = keyword_spec(tmp_path / path, path, "width")
        sources[path] = compile_spec(spec, tmp_path / path / "model.py").source
    loads = []
    unpickles = ("pickle.load", "pickle.loads", "pickle.Unpickler")  # its UnpicklingError is fine
    for name, source in sources.items():
        for node in ast.walk(ast.parse(source)):
            func = ast.unparse(node.func) if isinstance(node, ast.Call) else ""
            if func in ("torch.load", "load") or func.endswith(".load_from_checkpoint"):
                loads.append(name)
                flags = {k.arg: k.value for k in node.keywords}
                assert "weights_only" in flags and ast.literal_eval(flags["weights_only"]) is True, (
                    f"{name}: {ast.unparse(node)}"
                )
            assert not (isinstance(node, ast.Attribute) and ast.unparse(node) in unpickles), name
    assert {"checkpoint_args", "checkpoint_hyperparameters"} <= set(loads), loads


# --- keyword names: a key that becomes `name=` in a generated call ----------------------------

# Each would be code, or a syntax error, as `name=1` in a call; the marker file is what the first
# one makes when the generated model is built.
HOSTILE_NAMES = [
    "a=__import__('os').system('touch {marker}'),b",
    "a\n__import__('os').system('touch {marker}')\nb",
    "a\nb",
    "__class__",
    "lambda",
    "a b",
    "café",
]
# Every path by which a name from outside the compiler becomes a keyword argument of the
# generated code: a spec key of a user layer taking **kwargs, `args:` of `op: checkpoint`, and the
# `hyper_parameters` of a Lightning checkpoint (both branches: load_from_checkpoint, and the
# class called with them when pretrained=False).
KEYWORD_NODES = {
    "user_layer": "{{op: kwargs_layers.AnyArgs, {name}: 1}}",
    "checkpoint_args": "{{op: checkpoint, path: {folder}/plain.pt, class: kwargs_layers.AnyArgs, "
    "args: {{{name}: 1}}}}",
    "checkpoint_hyperparameters": "{{op: checkpoint, path: {folder}/hparams.ckpt, "
    "class: kwargs_layers.AnyArgsModule}}",
}
KEYWORD_SPEC = """\
nncompile: 1
name: Net
inputs: {{x: [4]}}
nodes:
  enc: {node}
task: {{kind: regression}}
"""


def keyword_spec(folder, path: str, name: str):
    """The spec of `path` using `name`, and the weight files it reads (hyperparameters holding `name`)."""
    state = {f"fc.{k}": v for k, v in torch.nn.Linear(4, 4).state_dict().items()}
    torch.save(state, folder / "plain.pt")
    import pytorch_lightning as pl

    checkpoint = {
        "state_dict": state,
        "hyper_parameters": {name: 1},
        "pytorch-lightning_version": pl.__version__,
    }
    torch.save(checkpoint, folder / "hparams.ckpt")
    node = KEYWORD_NODES[path].format(name=quoted(name), folder=folder)
    spec = folder / "spec.yaml"
    spec.write_text(KEYWORD_SPEC.format(node=node))
    return spec


def checkpoint_spec(folder, file, cls: str = "AnyArgs"):
    """A spec whose one node is `op: checkpoint` reading `file` into kwargs_layers.<cls>."""
    spec = folder / "spec.yaml"
    node = f"{{op: checkpoint, path: {quoted(str(file))}, class: kwargs_layers.{cls}}}"
    spec.write_text(KEYWORD_SPEC.format(node=node))
    return spec


def assert_printable(text: str) -> None:
    """No control character but line ends: nothing that moves the cursor, clears the terminal,
    rings the bell or starts a line of its own inside a message or a comment."""
    bad = [line for line in text.split("\n") if not line.isprintable()]
    assert not bad, f"raw control characters in {bad}"


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=range(len(HOSTILE_NAMES)))
@pytest.mark.parametrize("path", sorted(KEYWORD_NODES))
def test_keyword_names_must_be_identifiers(path, name, run_cli, tmp_path):
    marker = tmp_path / "PWNED"
    name = name.format(marker=marker)
    spec = keyword_spec(tmp_path, path, name)
    out = tmp_path / "model.py"

    code, stdout, err = run_cli(spec, "-o", out)

    assert code == 2 and stdout == "", err
    assert "Traceback" not in err
    assert "is not a Python identifier" in err or "starts with '__'" in err, err
    assert err.startswith(f"{spec}:5:"), err  # the key, or the checkpoint's `path:`
    assert "hint: " in err
    assert_printable(err)
    assert not out.exists() and not marker.exists()


@pytest.mark.parametrize("path", sorted(KEYWORD_NODES))
def test_plain_keyword_names_reach_the_call(path, tmp_path, monkeypatch):
    """The paths above do emit keyword arguments: with a plain name the generated model is built
    with it, from the checkpoint and without it."""
    monkeypatch.chdir(tmp_path)
    source = compile_spec(keyword_spec(tmp_path, path, "width"), tmp_path / "model.py").source
    calls = [n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Call)]
    assert any(k.arg == "width" and ast.literal_eval(k.value) == 1 for c in calls for k in c.keywords)
    module = load_source(source, tmp_path)
    for flags in ({}, {"pretrained": False}) if path.startswith("checkpoint") else ({},):
        model = module.Net(**flags)
        assert model(torch.randn(2, 4)).shape == (2, 4)
        if path != "checkpoint_hyperparameters":
            assert model.enc.kwargs == {"width": 1}
        else:
            assert dict(model.enc.hparams) == {"width": 1}


@settings(max_examples=300, deadline=None)
@given(st.text() | st.sampled_from(HOSTILE_NAMES))
def test_every_keyword_argument_is_checked_where_it_is_written(name):
    """pyfmt's Arg refuses a name that is not an argument name, whoever builds the call."""
    try:
        call = Call("f", (Arg(name, "1"),))
    except UnsafeValue:
        assert (
            not (name.isascii() and name.isidentifier()) or keyword.iskeyword(name) or name.startswith("__")
        )
        return
    tree = ast.parse(flat(call), mode="eval").body
    assert isinstance(tree, ast.Call) and [k.arg for k in tree.keywords] == [name]


# --- file names in comments ---------------------------------------------------------------------

CONTROL_PAYLOADS = [p for p in PAYLOADS if "\0" not in p and "/" not in p and not p.isprintable()]


@pytest.mark.parametrize("cls", ["AnyArgs", "AnyArgsModule"])
@pytest.mark.parametrize("payload", CONTROL_PAYLOADS, ids=range(len(CONTROL_PAYLOADS)))
def test_checkpoint_file_names_stay_in_their_comment(cls, payload, tmp_path, monkeypatch):
    """The generated constructor comments on the checkpoint it loads (`# the trained weights of
    <file name>`): a newline, CR or escape code in the name stays inside that one comment, and the
    file is still the one loaded."""
    monkeypatch.chdir(tmp_path)
    keyword_spec(tmp_path, "checkpoint_args", "width")
    file = tmp_path / f"w {payload}.ckpt"
    (tmp_path / ("hparams.ckpt" if cls == "AnyArgsModule" else "plain.pt")).rename(file)
    source = compile_spec(checkpoint_spec(tmp_path, file, cls), tmp_path / "model.py").source

    assert_printable(source)
    assert_payload_only_in_data(source)
    comments = [
        t.string for t in tokenize.generate_tokens(io.StringIO(source).readline) if t.type == tokenize.COMMENT
    ]
    assert any("the trained weights of w " in c and "pwned" in c for c in comments)
    model = load_source(source, tmp_path).Net()
    weights = torch.load(file, weights_only=True)
    state = weights.get("state_dict", weights)
    assert torch.equal(model.enc.fc.weight, state["fc.weight"])


# --- spec text in messages ----------------------------------------------------------------------

FORGERIES = [
    "x\x1b[2J",
    "x\x07",
    "x\nFAKE-LINE: compiled OK, 0 errors",
    "x\rFAKE-LINE: compiled OK, 0 errors",
    "x\u2028FAKE-LINE: compiled OK, 0 errors",
]
MESSAGE_SPEC = """\
nncompile: 1
name: Net
inputs: {{{input}: [8]}}
nodes:
  {node}: {{op: {op}, out_features: 4, {key}: 1}}
  head: {{op: Linear, out_features: 2, in: {ref}}}
outputs: {{{output}: {target}}}
task:
  kind: classification
  output: {output}
  optimizer: {{name: SGD, lr: 0.1, {optimizer_key}: 0.9}}
"""
MESSAGE_FIELDS = {
    "input": "x",
    "node": "fc",
    "op": "Linear",
    "key": "bias",
    "ref": "fc",
    "output": "logits",
    "target": "head",
    "optimizer_key": "momentum",
}


@pytest.mark.parametrize("forgery", FORGERIES, ids=range(len(FORGERIES)))
@pytest.mark.parametrize("field", sorted(MESSAGE_FIELDS))
def test_spec_text_in_messages_is_escaped(field, forgery, write_spec, run_cli, tmp_path):
    """An unknown key, op, reference or name is echoed in the message with its control characters
    escaped: it cannot clear the terminal, ring the bell or print a line that looks like the
    compiler's own."""
    values = {**MESSAGE_FIELDS, field: quoted(forgery)}
    if field == "ref":
        values["ref"] = quoted("f" + forgery)  # close to `fc`: a did-you-mean quotes it back
    spec = write_spec(MESSAGE_SPEC.format(**values))

    code, stdout, err = run_cli(spec, "-o", tmp_path / "model.py")

    assert code == 2 and stdout == "", err
    assert "Traceback" not in err
    assert_printable(err)
    assert not any(line.startswith("FAKE-LINE") for line in err.splitlines()), err
    assert not (tmp_path / "model.py").exists()


def test_file_paths_in_messages_are_escaped(run_cli, tmp_path):
    """A weights path from the spec, in the "not found" message."""
    spec = checkpoint_spec(tmp_path, tmp_path / "w\x1b[2J\nFAKE-LINE: compiled OK.pt")
    code, _, err = run_cli(spec, "-o", tmp_path / "model.py")
    assert code == 2 and "not found" in err
    assert_printable(err)
    assert "\\x1b[2J\\nFAKE-LINE" in err


def test_weights_file_keys_in_messages_are_escaped(run_cli, tmp_path):
    """State-dict keys come from the file, not the spec: a mismatch lists them escaped."""
    torch.save({"fc.weight\nFAKE-LINE: compiled OK": torch.zeros(4, 4)}, tmp_path / "w.pt")
    code, _, err = run_cli(checkpoint_spec(tmp_path, tmp_path / "w.pt"), "-o", tmp_path / "model.py")
    assert code == 2 and "does not match the model" in err
    assert_printable(err)
    assert not any(line.startswith("FAKE-LINE") for line in err.splitlines()), err


@pytest.mark.parametrize("name", HOSTILE_NAMES[:3] + ["lambda"], ids=range(4))
def test_hf_config_keys_must_be_identifiers(name, tmp_path):
    """A Hugging Face config's entries become `transformers.BertConfig(name=value)` (refused
    here before this round too: a guard on the same check as the paths above)."""
    transformers = pytest.importorskip("transformers")
    folder = tmp_path / "model"
    config = dict(
        vocab_size=10, hidden_size=8, num_hidden_layers=1, num_attention_heads=1, intermediate_size=8
    )
    transformers.BertConfig(**config).save_pretrained(folder)
    saved = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**saved, name.format(marker=tmp_path / "PWNED"): 1}))
    spec = tmp_path / "spec.yaml"
    values = {"model": quoted(str(folder)), "weights": "null", "output": "last_hidden_state"}
    spec.write_text(HF_SPEC.format(**values))
    with pytest.raises(NncompileError, match="cannot be written as plain values"):
        compile_spec(spec, tmp_path / "model.py")
    assert not (tmp_path / "model.py").exists() and not (tmp_path / "PWNED").exists()
