"""Hugging Face transformers backbones (`op: transformers.AutoModel`, `model:` an id or a folder):
a tiny random BERT saved to a local folder and to a fake Hugging Face cache, loaded through
transformers' real from_pretrained; shapes predicted on the meta device against a real forward
pass; freezing by prefix; training on a padded batch; the golden BERT classifier against a
hand-written reference; the errors."""

import json
import math
import os
import shutil
import subprocess
import sys

import pytest
import torch
from conftest import ROOT
from load_generated import compile_and_load, compile_text
from nncompile.errors import NncompileError
from offline_helpers import hub_snapshot, use_hub_cache
from task_helpers import batches, load_generated, trainer

transformers = pytest.importorskip("transformers")

SEQ = 12
REPO_ID = "tiny-org/tiny-bert"
WHOLE = "    output: pooler_output\n"  # reads every part: the whole model is built, every weight loads


def tiny_bert(folder=None, seed: int = 0):
    """A 2-layer BERT of hidden size 32 with random weights, saved to `folder` when given."""
    torch.manual_seed(seed)
    config = transformers.BertConfig(
        vocab_size=50,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=48,
        max_position_embeddings=40,
    )
    model = transformers.BertModel(config)
    if folder is not None:
        model.save_pretrained(folder)
    return model


@pytest.fixture
def bert_folder(tmp_path):
    folder = tmp_path / "tiny_bert"
    return folder, tiny_bert(folder)


def bert_spec(model: str, body: str = "", inputs=("input_ids", "attention_mask"), after: str | None = None):
    """Integer token inputs of symbolic length `seq` into node `bert` (options `body`), then `after`."""
    after = "  fc: {op: Linear, out_features: 3}\n" if after is None else after
    lines = "".join(f"  {name}: {{shape: [seq], dtype: int64}}\n" for name in inputs)
    return (
        f"nncompile: 1\nname: Net\ndims: {{seq: {SEQ}}}\ninputs:\n{lines}"
        f"nodes:\n  bert:\n    op: transformers.AutoModel\n    in: [{', '.join(inputs)}]\n"
        f"    model: {model}\n{body}{after}"
        "task: {kind: classification}\n"
    )


def token_batch(batch: int = 2, seq: int = SEQ, seed: int = 0, lengths=None):
    """input_ids, attention_mask (1 for real tokens, 0 for padding) and token_type_ids."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 50, (batch, seq), generator=g)
    lengths = lengths or [seq] * batch
    mask = torch.stack([(torch.arange(seq) < n).long() for n in lengths])
    return {"input_ids": ids * mask, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}


def assert_same_weights(model, reference):
    state, expected = model.state_dict(), reference.state_dict()
    assert sorted(state) == sorted(expected)
    assert all(torch.equal(state[k], expected[k]) for k in state)


def test_local_folder_weights_load_and_pretrained_false_needs_nothing(bert_folder, tmp_path):
    folder, saved = bert_folder
    result, module = compile_and_load(bert_spec(str(folder), WHOLE + "    weights: DEFAULT\n"), tmp_path)
    assert "transformers.BertConfig(" in result.source
    assert "_from_pretrained(" in result.source and f'"{folder}"' in result.source
    loaded = module.Net().bert
    assert_same_weights(loaded, saved)
    assert loaded.training  # as every layer starts (from_pretrained alone returns eval mode)
    # the architecture is in the file: with no folder, pretrained=False builds the same model
    shutil.rmtree(folder)
    fresh = module.Net(pretrained=False).bert
    assert {k: v.shape for k, v in fresh.state_dict().items()} == {
        k: v.shape for k, v in saved.state_dict().items()
    }
    provenance = {"_name_or_path": "", "architectures": None, "dtype": None}  # where it came from
    assert fresh.config.to_dict() | provenance == saved.config.to_dict() | provenance
    with pytest.raises(OSError, match="pretrained=False"):
        module.Net()


def test_a_model_class_as_the_tutorials_write_it(bert_folder, tmp_path):
    """`op: transformers.BertModel`: BertModel.from_pretrained, or BertModel(config) without weights."""
    folder, saved = bert_folder
    text = bert_spec(str(folder), WHOLE + "    weights: DEFAULT\n").replace(
        "transformers.AutoModel", "transformers.BertModel"
    )
    result, module = compile_and_load(text, tmp_path)
    assert "self.bert = transformers.BertModel(bert_config)" in result.source
    assert "transformers.BertModel," in result.source  # passed to _from_pretrained
    assert_same_weights(module.Net().bert, saved)


def test_weights_folder_and_null(bert_folder, tmp_path):
    folder, _ = bert_folder
    finetuned = tiny_bert(tmp_path / "finetuned", seed=1)
    body = WHOLE + f"    weights: {tmp_path / 'finetuned'}\n"
    _, module = compile_and_load(bert_spec(str(folder), body), tmp_path)
    assert_same_weights(module.Net().bert, finetuned)
    result, module = compile_and_load(bert_spec(str(folder)), tmp_path)
    assert "_from_pretrained" not in result.source and "pretrained: bool" not in result.source
    # last_hidden_state, the default, does not read the pooler
    assert "self.bert = transformers.AutoModel.from_config(\n" in result.source
    assert "bert_config, add_pooling_layer=False\n" in result.source
    assert isinstance(module.Net().bert, transformers.BertModel)


HUB_SCRIPT = """
import sys
from pathlib import Path
import torch
import transformers
from safetensors.torch import load_file

sys.path.insert(0, ".")
import model

loaded = model.Net().bert.state_dict()
saved = load_file(sys.argv[1])
print(sorted(loaded) == sorted(saved), all(torch.equal(loaded[k], saved[k]) for k in loaded), flush=True)
Path(sys.argv[2]).unlink()  # the weights gone from the cache: the generated error ends the run
model.Net()
"""


def test_model_id_from_the_hub_cache_without_network(tmp_path, run_cli, monkeypatch):
    """The config at compile time and the weights at run time come from a fake Hugging Face
    cache (hf_hub_download's layout) with HF_HUB_OFFLINE=1: the CLI compiles in-process pointed at
    it, the model runs in a fresh interpreter (huggingface_hub reads its cache location on import);
    a cache without the weights gives the generated error."""
    tiny_bert(tmp_path / "saved")
    snapshot = hub_snapshot(tmp_path / "hub", REPO_ID)
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tmp_path / "saved" / name, snapshot / name)
    spec = tmp_path / "spec.yaml"
    spec.write_text(bert_spec(REPO_ID, WHOLE + "    weights: DEFAULT\n"))
    use_hub_cache(monkeypatch, tmp_path / "hub")
    code, _, err = run_cli(spec, "-o", tmp_path / "model.py")
    assert code == 0, err
    assert f'"{REPO_ID}"' in (tmp_path / "model.py").read_text()
    saved = str(tmp_path / "saved" / "model.safetensors")
    built = subprocess.run(
        [sys.executable, "-c", HUB_SCRIPT, saved, str(snapshot / "model.safetensors")],
        cwd=tmp_path,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub")},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.stdout.split() == ["True", "True"], built.stderr[-3000:]
    assert f"RuntimeError: cannot download the pretrained weights {REPO_ID}: " in built.stderr
    assert f"`hf download {REPO_ID}`" in built.stderr and "pretrained=False" in built.stderr
    assert built.stderr.count("Traceback") == 1  # one error (test_pretrained_download.py)
    # not in the cache at all: a compile error naming the model and the cache
    use_hub_cache(monkeypatch, tmp_path / "empty")
    code, _, err = run_cli(spec, "-o", tmp_path / "other.py")
    assert code == 2
    assert f"model '{REPO_ID}' is not in the Hugging Face cache ({tmp_path / 'empty'})" in err
    assert f"hf download {REPO_ID}" in err
    assert not (tmp_path / "other.py").exists()


@pytest.mark.parametrize(
    ("output", "field"),
    [
        (None, "last_hidden_state"),
        ("pooler_output", "pooler_output"),
        ("hidden_states.1", "hidden"),
        ("hidden_states.-1", "last_hidden_state"),
        ("cls", "cls"),
    ],
)
def test_shapes_predicted_on_meta_equal_a_real_forward(output, field, bert_folder, tmp_path):
    folder, _ = bert_folder
    body = f"    output: {output}\n" if output else ""
    inputs = ("input_ids", "attention_mask", "token_type_ids")
    after = "  pool: {op: mean, dim: 1}\n" if field not in ("pooler_output", "cls") else ""
    result, module = compile_and_load(
        bert_spec(str(folder), body, inputs, after + "  fc: {op: Linear, out_features: 3}\n"), tmp_path
    )
    predicted = result.shaped.nodes["bert"].built.out.shape
    model = module.Net().eval()
    for seq in (SEQ, 2 * SEQ + 1):  # the symbolic length at a size the compiler did not check
        batch = token_batch(seq=seq, lengths=[seq, seq // 2])
        with torch.no_grad():
            real = model.bert(**batch, output_hidden_states=True)
            out = model(**batch)
        value = {
            "hidden": real.hidden_states[1],
            "cls": real.last_hidden_state[:, 0],
        }.get(field, getattr(real, field, None))
        expected = (predicted[0], seq, *predicted[2:]) if len(predicted) == 3 else predicted
        assert tuple(value.shape) == expected
        assert tuple(out.shape) == (2, 3)
    assert result.shaped.nodes["fc"].built.out.shape == (2, 3)


def test_a_vision_encoder(tmp_path):
    torch.manual_seed(0)
    config = transformers.ViTConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=48,
        image_size=32,
        patch_size=8,
    )
    transformers.ViTModel(config).save_pretrained(tmp_path / "vit")
    spec = (
        "nncompile: 1\nname: Net\ninputs:\n  image: [3, 32, 32]\n"
        f"nodes:\n  vit: {{op: transformers.AutoModel, model: {tmp_path / 'vit'}, output: cls}}\n"
        "  fc: {op: Linear, out_features: 5}\ntask: {kind: classification}\n"
    )
    result, module = compile_and_load(spec, tmp_path)
    assert "self.vit(pixel_values=image).last_hidden_state[:, 0]" in result.source
    with torch.no_grad():
        real = module.Net().vit(pixel_values=torch.randn(2, 3, 32, 32)).last_hidden_state
    assert result.shaped.nodes["vit"].built.out.shape == (2, 32)
    assert tuple(real.shape) == (2, 17, 32)


def test_freeze_and_trainable_by_prefix(bert_folder, tmp_path):
    folder, _ = bert_folder
    body = "    output: pooler_output\n    trainable: [encoder.layer.1, pooler]\n    lr_mult: 0.1\n"
    result, module = compile_and_load(bert_spec(str(folder), body), tmp_path)
    assert "self.bert.encoder.layer[0].requires_grad_(False)" in result.source
    model = module.Net()
    for name, param in model.bert.named_parameters():
        assert param.requires_grad == name.startswith(("encoder.layer.1.", "pooler.")), name
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert f"{frozen:,} frozen, {trainable:,} trainable" in result.source
    # the encoder's own learning rate; the optimizer gets trainable parameters only
    groups = model.param_groups(1.0)
    bert_trainable = {id(p) for p in model.bert.parameters() if p.requires_grad}
    assert [g["lr"] for g in groups] == [0.1, 0.1, 1.0, 1.0]  # each with its no-weight-decay twin
    assert {id(p) for g in groups[:2] for p in g["params"]} == bert_trainable
    assert [g["params"] for g in groups[2:]] == [[model.fc.weight], [model.fc.bias]]
    result, module = compile_and_load(
        bert_spec(str(folder), "    freeze: [embeddings, encoder.layer.0]\n"), tmp_path
    )
    for name, param in module.Net().bert.named_parameters():
        assert param.requires_grad != name.startswith(("embeddings.", "encoder.layer.0.")), name


def test_padded_tokens_do_not_change_the_loss_and_training_steps(bert_folder, tmp_path):
    """A padded batch and its attention mask: the loss and its gradients are the same whatever
    the padded positions hold; then 2 real training steps on padded batches."""
    folder, _ = bert_folder
    _, module = compile_and_load(bert_spec(str(folder), "    weights: DEFAULT\n    output: cls\n"), tmp_path)
    lit = module.NetModule()
    lit.model.eval()  # dropout off: the two passes must see the same network
    batch = token_batch(batch=3, lengths=[SEQ, 5, 8])
    target = torch.tensor([0, 1, 2])
    other = {**batch, "input_ids": torch.where(batch["attention_mask"] == 1, batch["input_ids"], 7)}
    assert not torch.equal(other["input_ids"], batch["input_ids"])
    results = []
    for inputs in (batch, other):
        lit.zero_grad()
        loss = torch.nn.functional.cross_entropy(lit(inputs["input_ids"], inputs["attention_mask"]), target)
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in lit.parameters() if p.grad is not None]))
    torch.testing.assert_close(results[0][0], results[1][0])
    for a, b in zip(results[0][1], results[1][1], strict=True):
        torch.testing.assert_close(a, b)
    unmasked = torch.nn.functional.cross_entropy(
        lit(other["input_ids"], torch.ones_like(other["input_ids"])), target
    )
    assert not torch.allclose(unmasked, results[0][0])  # the mask is what makes them equal

    def make(g, n):
        b = token_batch(
            batch=n, lengths=[SEQ, 4, 7, 9][:n], seed=int(torch.randint(0, 1000, (1,), generator=g))
        )
        return {"input_ids": b["input_ids"], "attention_mask": b["attention_mask"]}, torch.randint(
            0, 3, (n,), generator=g
        )

    lit = module.NetModule()
    before = {k: v.clone() for k, v in lit.state_dict().items()}
    trainer(max_steps=2).fit(lit, batches(make, 2), batches(make, 1))
    after = lit.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("model.bert.encoder"))
    assert math.isfinite(trainer().validate(lit, batches(make, 1), verbose=False)[0]["val_loss"])


def test_golden_bert_classifier_against_a_hand_written_reference(tmp_path, monkeypatch):
    """specs/bert_text_classifier.yaml as the tutorials write it (BertModel, Dropout, Linear,
    embeddings frozen): the same parameter counts, total and trainable; then its weights from a
    local folder at the path the spec names, and 2 training steps."""
    monkeypatch.chdir(ROOT)
    module = load_generated(ROOT / "specs" / "bert_text_classifier.yaml", tmp_path)
    header = (ROOT / "generated" / "bert_text_classifier.py").read_text()

    class Reference(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.bert = transformers.BertModel(transformers.BertConfig.from_pretrained("specs/hf/bert_tiny"))
            for param in self.bert.embeddings.parameters():
                param.requires_grad = False
            self.dropout = torch.nn.Dropout(0.1)
            self.classifier = torch.nn.Linear(self.bert.config.hidden_size, 4)

    def counts(model):
        params = list(model.parameters())
        return sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad)

    reference = counts(Reference())
    generated = module.BertTextClassifier(pretrained=False)
    assert counts(generated) == reference
    total, trainable = reference
    assert (
        f"Parameters: {total:,} (" in header
        and f"{total - trainable:,} frozen, {trainable:,} trainable" in header
    )

    # the spec's folder, with weights, where the generated code looks for it (relative to the cwd)
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    saved = transformers.BertModel(
        transformers.BertConfig.from_pretrained(ROOT / "specs" / "hf" / "bert_tiny")
    )
    saved.save_pretrained(tmp_path / "specs" / "hf" / "bert_tiny")
    lit = module.BertTextClassifierModule()
    assert_same_weights(lit.model.bert, saved)

    def make(g, n):
        b = token_batch(batch=n, lengths=[16, 9, 3, 12][:n], seq=16)
        return {"input_ids": b["input_ids"], "attention_mask": b["attention_mask"]}, torch.randint(
            0, 4, (n,), generator=g
        )

    embeddings = {k: v.clone() for k, v in lit.model.bert.embeddings.state_dict().items()}
    trainer(max_steps=2).fit(lit, batches(make, 2), batches(make, 1))
    assert all(torch.equal(v, lit.model.bert.embeddings.state_dict()[k]) for k, v in embeddings.items())


@pytest.mark.parametrize(
    ("op", "body", "message"),
    [
        ("transformers.FooModel", "", "transformers has no model class 'FooModel'"),
        ("transformers.AutoModle", "", "(?s)no model class 'AutoModle'.*did you mean.*AutoModel"),
        ("transformers.AutoModel", "    output: pooled\n", "gives no output 'pooled'"),
        ("transformers.AutoModel", "    output: hidden_states.9\n", "has no hidden state 9"),
        ("transformers.AutoModel", "    weights: IMAGENET1K_V1\n", "unknown weights 'IMAGENET1K_V1'"),
        ("transformers.AutoModel", "    weights: ./nowhere\n", "weights folder './nowhere' does not exist"),
        ("transformers.AutoModel", "    head: remove\n", "unknown argument 'head'"),
    ],
)
def test_errors(op, body, message, bert_folder, tmp_path):
    folder, _ = bert_folder
    text = bert_spec(str(folder), body).replace("transformers.AutoModel", op)
    with pytest.raises(NncompileError, match=message):
        compile_text(text, tmp_path)


def test_input_errors(bert_folder, tmp_path):
    folder, _ = bert_folder
    with pytest.raises(
        NncompileError, match="input 'mask' of bert names no argument of BertModel.forward"
    ) as err:
        compile_text(bert_spec(str(folder), inputs=("input_ids", "mask")), tmp_path)
    assert "attention_mask" in str(err.value)
    text = bert_spec(str(folder), inputs=("input_ids",)).replace("dtype: int64", "dtype: float32")
    with pytest.raises(NncompileError, match="fails on its input") as err:
        compile_text(text, tmp_path)
    assert "dtype: int64" in str(err.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(NncompileError, match="model folder '.*empty' has no config.json"):
        compile_text(bert_spec(str(tmp_path / "empty")), tmp_path)
    with pytest.raises(NncompileError, match="needs `model:`"):
        compile_text(bert_spec(str(folder)).replace(f"    model: {folder}\n", ""), tmp_path)


def test_missing_transformers_is_a_clear_error(bert_folder, tmp_path, monkeypatch):
    folder, _ = bert_folder
    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers now raises ImportError
    with pytest.raises(NncompileError, match="needs the transformers package") as err:
        compile_text(bert_spec(str(folder)), tmp_path)
    assert "pip install transformers" in str(err.value)


def test_a_spec_without_it_never_imports_transformers(tmp_path):
    """(torchmetrics imports transformers when it is installed, for its BERTScore: the spec has
    no metrics, so that what is checked is the compiler's own imports.)"""
    (tmp_path / "spec.yaml").write_text(
        "nncompile: 1\nname: Net\ninputs: {image: [3, 32, 32]}\n"
        "nodes:\n  net: {op: torchvision.resnet18, head: remove}\n  fc: {op: Linear, out_features: 2}\n"
        "task: {kind: regression, metrics: []}\n"
    )
    script = (
        "import sys\nfrom nncompile import compile_spec\n"
        "compile_spec('spec.yaml')\nprint('transformers' in sys.modules)\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert run.stdout.split() == ["False"], run.stderr[-2000:]


def test_config_written_as_plain_values_rebuilds_the_same_config(bert_folder, tmp_path):
    folder, saved = bert_folder
    result = compile_text(bert_spec(str(folder)), tmp_path)
    written = json.loads((folder / "config.json").read_text())
    for key in (
        "hidden_size",
        "num_hidden_layers",
        "intermediate_size",
        "vocab_size",
        "max_position_embeddings",
    ):
        assert f"{key}={written[key]}," in result.source
    assert "transformers_version" not in result.source and "architectures" not in result.source


def test_summary_counts_the_encoders_macs():
    """FlopCounterMode through the real attention-mask path: per sample, each layer's four
    attention projections, two feed-forward layers and two attention products, and the pooler."""
    from nncompile import compile_spec

    hidden, ffn, seq, layers = 32, 64, 16, 2  # specs/hf/bert_tiny at seq=16
    per_layer = 4 * hidden * hidden * seq + 2 * hidden * ffn * seq + 2 * seq * seq * hidden
    rows = {
        row.node: row for row in compile_spec(ROOT / "specs" / "bert_text_classifier.yaml").summary().rows
    }
    assert rows["bert"].macs == layers * per_layer + hidden * hidden
