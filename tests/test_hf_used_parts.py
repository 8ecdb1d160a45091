"""Hugging Face backbones build only what their `output:` reads: no pooler where the output does
not read it (`add_pooling_layer=False`), no layer above `hidden_states.N` (the config cut after
layer N), and what no gradient reaches all the same (a ViT's final norm under `hidden_states.N`)
frozen. For every output form of a tiny BERT and a tiny ViT, one training step gives a gradient
to every trainable parameter, and the header, the summary and the optimizer (with layer-wise
decay) hold exactly those; the kept layers load their pretrained weights and compute what the
whole model computes; a BERT classifier on `cls` trains under DDP (2 processes, gloo)."""

import re

import pytest
import torch
from conftest import ROOT
from ddp_jobs import ddp_job
from load_generated import compile_and_load
from task_helpers import batches, trainer

transformers = pytest.importorskip("transformers")

SEQ = 16
BERT = ROOT / "specs" / "hf" / "bert_tiny"
LAYER = re.compile(r"backbone\.(?:encoder\.layer|layers)\.(\d+)\.")  # BERT's and ViT's layers
OUTPUTS = [
    "cls",
    "last_hidden_state",
    "pooler_output",
    "hidden_states.0",
    "hidden_states.1",
    "hidden_states.-1",
]


def tiny_vit(folder=None):
    """A 2-layer ViT of hidden size 32 on 16x16 images, saved to `folder` when given."""
    torch.manual_seed(0)
    config = transformers.ViTConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=48,
        image_size=16,
        patch_size=8,
    )
    model = transformers.ViTModel(config)
    if folder is not None:
        model.save_pretrained(folder)
    return model


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """model kind -> a local folder: specs/hf/bert_tiny (a config alone), a ViT with weights."""
    vit = tmp_path_factory.mktemp("hf") / "vit_tiny"
    tiny_vit(vit)
    return {"bert": BERT, "vit": vit}


def spec(kind: str, folder, output: str, body: str = "") -> str:
    """The backbone (`output:`, layer-wise decay, options `body`), a mean over the tokens where
    the output has them, and a 3-class linear head trained with AdamW."""
    if kind == "bert":
        inputs = "".join(
            f"  {name}: {{shape: [{SEQ}], dtype: int64}}\n" for name in ("input_ids", "attention_mask")
        )
        wiring = "    in: [input_ids, attention_mask]\n"
    else:
        inputs, wiring = "  image: [3, 16, 16]\n", ""
    pool = "" if output in ("cls", "pooler_output") else "  pool: {op: mean, dim: 1}\n"
    return (
        f"nncompile: 1\nname: Net\ninputs:\n{inputs}nodes:\n  backbone:\n    op: transformers.AutoModel\n"
        f"{wiring}    model: {folder}\n    output: {output}\n    lr_decay: 0.8\n{body}"
        f"{pool}  fc: {{op: Linear, out_features: 3}}\n"
        "task: {kind: classification, optimizer: {name: AdamW, lr: 1.0e-3, weight_decay: 0.05}}\n"
    )


def make_batch(kind: str):
    def make(g, n):
        if kind == "bert":
            mask = torch.ones(n, SEQ, dtype=torch.int64)
            mask[0, SEQ // 2 :] = 0  # a padded sample
            inputs = {"input_ids": torch.randint(1, 100, (n, SEQ), generator=g), "attention_mask": mask}
        else:
            inputs = {"image": torch.randn(n, 3, 16, 16, generator=g)}
        return inputs, torch.randint(0, 3, (n,), generator=g)

    return make


class Gradients:
    """Lightning callback: the names of the parameters with a gradient, and the optimizer's
    parameters, at the optimizer step (before it is zeroed)."""

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.with_grad = {n for n, p in pl_module.model.named_parameters() if p.grad is not None}
        self.optimized = {id(p) for group in optimizer.param_groups for p in group["params"]}


def header_trainable(source: str) -> int:
    return int(re.search(r"([\d,]+) trainable\)", source).group(1).replace(",", ""))


@pytest.mark.parametrize("kind", ["bert", "vit"])
@pytest.mark.parametrize("output", OUTPUTS)
def test_one_step_gives_every_trainable_parameter_a_gradient(kind, output, folders, tmp_path):
    import pytorch_lightning as pl

    result, module = compile_and_load(spec(kind, folders[kind], output), tmp_path)
    lit = module.NetModule()
    seen = type("Seen", (Gradients, pl.Callback), {})()
    trainer(max_steps=1, callbacks=[seen]).fit(lit, batches(make_batch(kind), 1, batch=2))
    named = dict(lit.model.named_parameters())
    trainable = {n for n, p in named.items() if p.requires_grad}
    assert trainable - seen.with_grad == set()  # trainable, never given a gradient
    assert seen.with_grad <= trainable
    count = sum(named[n].numel() for n in seen.with_grad)
    assert header_trainable(result.source) == count
    assert result.summary().trainable_params == count
    assert seen.optimized == {id(named[n]) for n in seen.with_grad}  # every layer-wise decay group
    names = list(named)
    assert any(n.startswith("backbone.pooler.") for n in names) == (output == "pooler_output")
    layers = {m.group(1) for n in names if (m := LAYER.match(n))}
    assert len(layers) == (1 if output in ("hidden_states.0", "hidden_states.1") else 2)


@pytest.mark.parametrize(
    ("kind", "output", "left_out"),
    [
        ("bert", "hidden_states.1", "pooler and the last 1 of its 2 layers"),
        ("bert", "cls", "pooler"),
        ("vit", "hidden_states.0", "pooler and the last 1 of its 2 layers"),
        ("vit", "hidden_states.-2", "pooler and the last 1 of its 2 layers"),  # = hidden_states.1
    ],
)
def test_the_kept_layers_load_their_weights_and_compute_the_same_output(kind, output, left_out, tmp_path):
    """From a folder with the whole model's weights: the model built without the unread parts
    holds the same weights for what it keeps and gives the same output as the whole model."""
    folder = tmp_path / "saved"
    if kind == "bert":
        torch.manual_seed(0)
        whole = transformers.BertModel(transformers.BertConfig.from_pretrained(BERT))
        whole.save_pretrained(folder)
    else:
        whole = tiny_vit(folder)
    result, module = compile_and_load(spec(kind, folder, output, "    weights: DEFAULT\n"), tmp_path)
    index = int(output.rpartition(".")[2]) % 3 if output != "cls" else None  # 3 hidden states
    read = output if index is None else f"hidden_states.{index}"
    assert f"built without its {left_out}, which output {read} does not read" in result.source
    backbone = module.Net().backbone
    kept = backbone.state_dict()
    for key, value in whole.state_dict().items():
        assert key in kept or key.startswith(("pooler.", "encoder.layer.1.", "layers.1.")), key
        if key in kept:
            assert torch.equal(value, kept[key]), key
    inputs = make_batch(kind)(torch.Generator().manual_seed(1), 2)[0]
    inputs = inputs if kind == "bert" else {"pixel_values": inputs["image"]}
    with torch.no_grad():
        expected = whole.eval()(**inputs, output_hidden_states=True)
        got = backbone.eval()(**inputs, output_hidden_states=True)
    if output == "cls":
        torch.testing.assert_close(got.last_hidden_state[:, 0], expected.last_hidden_state[:, 0])
    else:
        torch.testing.assert_close(got.hidden_states[index], expected.hidden_states[index])


BERT_DDP = ddp_job(
    "bert",
    spec("bert", BERT, "cls").replace("out_features: 3", "out_features: 4").replace("Net", "Bert"),
    run="train",
    module="BertModule",
    frozen="fc",
    data="tokens",
)


@pytest.mark.xdist_group("ddp_launch")  # one worker launches DDP once for every job
def test_a_bert_classifier_on_cls_trains_under_ddp(ddp_launch):
    """DDP (find_unused_parameters left False) fails at the second step on a parameter that got
    no gradient at the first, such as an unread pooler."""
    reports = ddp_launch.reports(BERT_DDP)
    assert [r["global_step"] for r in reports] == [3, 3]
    assert reports[0]["checksum"] == reports[1]["checksum"]  # gradients all-reduced
