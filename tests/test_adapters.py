"""LoRA adapters (`adapters:` on a node): targets resolved at compile time into explicit layer
lists, the analytic count of trained parameters on a timm ViT (Linear), a torchvision ResNet
(Conv2d), a Hugging Face BERT (query/value) and a block; merge_adapters() keeps the outputs and
leaves plain layers (the export graph of the model without adapters); the adapter-only state dict;
a training step moves only what should train; the located errors."""

import pytest
import torch
from load_generated import compile_and_load, compile_text
from nncompile.errors import NncompileError
from nncompile.shapes.adapters import compact, matches
from torch import nn

LORA = ("LoRALinear", "LoRAConv2d", "LoRAEmbedding")
VIT_ADAPTERS = (
    "    adapters:\n"
    '      - {kind: lora, target: "blocks.*.attn.qkv", r: 4, alpha: 8}\n'
    '      - {kind: lora, target: ["blocks.*.mlp.fc1"], r: 2, dropout: 0.1}\n'
)


def spec(
    node: str, inputs: str = "  image: [3, 224, 224]\n", head: str = "  fc: {op: Linear, out_features: 5}\n"
):
    return f"nncompile: 1\nname: Net\ninputs:\n{inputs}nodes:\n{node}{head}task: {{kind: classification}}\n"


def vit(body: str = VIT_ADAPTERS) -> str:
    """timm's test ViT: 6 blocks of width 64 (qkv 64 -> 192, fc1 64 -> 192), 160 x 160 images."""
    return spec("  net:\n    op: timm.test_vit\n    head: remove\n" + body, "  image: [3, 160, 160]\n")


@pytest.fixture(scope="module")
def vit_compiled(tmp_path_factory):
    """The ViT with adapters, compiled once for the tests that only run it."""
    pytest.importorskip("timm")
    return compile_and_load(vit(), tmp_path_factory.mktemp("vit"))


def build(module, seed: int = 0):
    torch.manual_seed(seed)
    return module.Net()


def lora_layers(model) -> dict:
    """The LoRA layers (each generated file has its own copy of the classes)."""
    return {name: m for name, m in model.named_modules() if type(m).__name__ in LORA}


def trained(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def randomize_adapters(model, seed: int = 1) -> None:
    """lora_B starts at zero (the adapted layer computes what it did): give it values, so merging
    and saving have something to keep."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for layer in lora_layers(model).values():
            layer.lora_B.normal_(0, 0.5)


# --- the analytic counts ---------------------------------------------------------------------------


def test_vit_linear_count_is_analytic(vit_compiled):
    result, module = vit_compiled
    model = build(module)
    layers = lora_layers(model)
    assert sorted(layers) == sorted(
        [f"net.blocks.{i}.attn.qkv" for i in range(6)] + [f"net.blocks.{i}.mlp.fc1" for i in range(6)]
    )
    adapters = 6 * 4 * (64 + 192) + 6 * 2 * (64 + 192)
    assert trained(model) == adapters + 64 * 5 + 5  # and the new head
    assert f"{trained(model):,} trainable" in result.source
    assert "blocks.{0..5}.attn.qkv" in result.source  # the header lists the adapted layers
    assert isinstance(model.net.blocks[3].mlp.fc1.lora_dropout, nn.Dropout)
    assert model.net.blocks[3].mlp.fc1.lora_dropout.p == 0.1
    assert model.net.blocks[3].attn.qkv.scale == 2.0  # alpha / r


def test_resnet_conv2d_count_is_analytic_and_batchnorm_stays_fixed(tmp_path):
    body = '    adapters: [{kind: lora, target: "layer*.*.conv2", r: 3}]\n'
    _, module = compile_and_load(
        spec("  net: \n    op: torchvision.resnet18\n    head: remove\n" + body, "  image: [3, 64, 64]\n"),
        tmp_path,
    )
    model = build(module)
    convs = lora_layers(model)
    assert len(convs) == 8
    expected = sum(3 * (m.in_channels * 3 * 3 + m.out_channels) for m in convs.values())
    assert trained(model) == expected + 512 * 5 + 5
    lit = module.NetModule(lora_r_net=2)  # r, alpha, dropout are hyperparameters
    assert lit.hparams.lora_r_net == 2 and lit.hparams.lora_alpha_net == 3.0
    assert lit.model.net.layer4[1].conv2.lora_A.shape == (2, 512, 3, 3)
    stats = model.net.layer1[0].bn1.running_mean.clone()
    model.train()(torch.randn(2, 3, 64, 64))
    assert torch.equal(model.net.layer1[0].bn1.running_mean, stats)  # frozen BatchNorm


def tiny_bert_folder(folder):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=48
    )
    transformers.BertModel(config).save_pretrained(folder)
    return folder


def test_bert_query_value_count_is_analytic(tmp_path):
    folder = tiny_bert_folder(tmp_path / "bert")
    node = (
        f"  bert:\n    op: transformers.AutoModel\n    in: [ids]\n    model: {folder}\n"
        "    output: pooler_output\n    adapters:\n"
        '      - {kind: lora, target: ["encoder.layer.*.attention.self.query", '
        '"encoder.layer.*.attention.self.value"], r: 4, alpha: 8}\n'
    )
    _, module = compile_and_load(spec(node, "  ids: {shape: [12], dtype: int64}\n"), tmp_path)
    model = build(module)
    assert len(lora_layers(model)) == 4
    assert trained(model) == 4 * 4 * (32 + 32) + 32 * 5 + 5
    ids = torch.randint(0, 50, (2, 12))
    randomize_adapters(model.eval())
    with torch.no_grad():
        before = model(ids)
        model.merge_adapters()
        assert torch.allclose(model(ids), before, atol=1e-5)
    assert type(model.bert.encoder.layer[1].attention.self.value) is nn.Linear


def test_block_count_is_analytic(tmp_path):
    text = (
        "nncompile: 1\nname: Net\ninputs:\n  x: [16]\n"
        "blocks:\n  Mlp:\n    nodes:\n      up: {op: Linear, out_features: 32}\n      act: GELU\n"
        "      down: {op: Linear, out_features: 16}\n"
        "nodes:\n  mlp:\n    op: Mlp\n    adapters: [{kind: lora, target: [up, down], r: 2}]\n"
        "  fc: {op: Linear, out_features: 5}\ntask: {kind: classification}\n"
    )
    _, module = compile_and_load(text, tmp_path)
    model = build(module)
    assert sorted(lora_layers(model)) == ["mlp.down", "mlp.up"]
    assert trained(model) == 2 * (16 + 32) + 2 * (32 + 16) + 16 * 5 + 5


def test_a_torch_layer_node_adapts_itself(tmp_path):
    text = spec(
        "  emb: {op: Embedding, num_embeddings: 20, embedding_dim: 8, adapters: [{kind: lora, r: 2}]}\n",
        "  ids: {shape: [6], dtype: int64}\n",
        "  flat: Flatten\n  fc: {op: Linear, out_features: 5}\n",
    )
    _, module = compile_and_load(text, tmp_path)
    model = build(module)
    assert type(model.emb).__name__ == "LoRAEmbedding"
    assert trained(model) == 2 * (20 + 8) + 48 * 5 + 5


# --- merging, export, the adapter-only state dict, training -----------------------------------------


def test_merged_outputs_equal_and_layers_are_plain(vit_compiled, tmp_path):
    _, module = vit_compiled
    _, plain_module = compile_and_load(vit(""), tmp_path)
    model = build(module).eval()
    randomize_adapters(model)
    x = torch.randn(2, 3, 160, 160)
    with torch.no_grad():
        before = model(x)
        model.merge_adapters()
        after = model(x)
    assert torch.allclose(before, after, atol=1e-5)
    assert not lora_layers(model)
    assert type(model.net.blocks[0].attn.qkv) is nn.Linear
    assert list(model.state_dict()) == list(build(plain_module).state_dict())


def _ops(model, x) -> list[str]:
    exported = torch.export.export(model.eval(), (x,))
    return [str(n.target) for n in exported.graph.nodes if n.op == "call_function"]


def test_export_of_the_merged_model_has_no_adapter_operations(tmp_path):
    body = '    adapters: [{kind: lora, target: ["layer4.*.conv1", "layer4.*.conv2"], r: 2}]\n'
    node = "  net:\n    op: torchvision.resnet18\n    head: remove\n"
    _, module = compile_and_load(spec(node + body, "  image: [3, 32, 32]\n"), tmp_path)
    _, plain_module = compile_and_load(spec(node, "  image: [3, 32, 32]\n"), tmp_path)
    model, x = build(module).eval(), torch.randn(1, 3, 32, 32)
    randomize_adapters(model)
    adapted_ops = _ops(model, x)
    with torch.no_grad():
        before = model(x)
        model.merge_adapters()
        assert torch.allclose(model(x), before, atol=1e-5)
    assert _ops(model, x) == _ops(build(plain_module), x)
    assert len(adapted_ops) > len(_ops(model, x))  # the adapters' convolutions are gone


def test_adapter_state_dict_is_small_and_reloads(vit_compiled):
    _, module = vit_compiled
    model = build(module, seed=0).eval()
    randomize_adapters(model)
    saved = model.adapter_state_dict()
    full = sum(t.numel() for t in model.state_dict().values())
    assert sum(t.numel() for t in saved.values()) < 0.05 * full
    other = build(module, seed=0).eval()  # the same base weights, fresh adapters
    x = torch.randn(2, 3, 160, 160)
    assert not torch.allclose(other(x), model(x))
    other.load_adapter_state_dict(saved)
    with torch.no_grad():
        assert torch.equal(other(x), model(x))
    with pytest.raises(KeyError, match="missing"):
        other.load_adapter_state_dict({k: v for k, v in saved.items() if "fc1" not in k})


def test_a_training_step_moves_only_adapters_and_trainable_parts(tmp_path):
    pytest.importorskip("timm")
    _, module = compile_and_load(vit(VIT_ADAPTERS + "    trainable: [norm]\n"), tmp_path)
    torch.manual_seed(0)
    lit = module.NetModule()
    before = {n: p.detach().clone() for n, p in lit.named_parameters()}
    optimizer = lit.configure_optimizers()
    optimizer = optimizer["optimizer"] if isinstance(optimizer, dict) else optimizer
    loss = nn.functional.cross_entropy(lit(torch.randn(2, 3, 160, 160)), torch.tensor([0, 3]))
    loss.backward()
    optimizer.step()
    moved = {n for n, p in lit.named_parameters() if not torch.equal(p, before[n])}
    expected = {n for n in before if ".lora_" in n or n.startswith(("model.fc.", "model.net.norm."))}
    assert moved == expected  # (lora_A too: its gradient is 0, lora_B being 0, but AdamW decays it)
    assert {n for n, p in lit.named_parameters() if p.requires_grad} == expected


# --- resolution and its errors ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("blocks.*.attn.qkv", "blocks.3.attn.qkv", True),
        ("blocks.*.qkv", "blocks.3.attn.qkv", False),
        ("**.qkv", "blocks.3.attn.qkv", True),
        ("blocks.**", "blocks.3.attn.qkv", True),
        ("layer*.*.conv2", "layer4.1.conv2", True),
        ("layer*.*.conv2", "layer4.1.conv2.x", False),
    ],
)
def test_patterns(pattern, path, expected):
    assert matches(pattern, path) is expected


@pytest.mark.parametrize(
    "paths, expected",
    [
        (("blocks.0.qkv", "blocks.1.qkv", "blocks.2.qkv"), "blocks.{0..2}.qkv"),
        (("layer4.0.conv1", "layer4.1.conv1"), "layer4.0.conv1, layer4.1.conv1"),
        (("0.conv", "1.conv"), "0.conv, 1.conv"),  # a block's copies: the index leads
        (("0.conv", "1.conv", "2.conv"), "{0..2}.conv"),
        (("",), "the node"),
    ],
)
def test_compact_paths(paths, expected):
    assert compact(paths) == expected


def error_of(text: str, tmp_path):
    with pytest.raises(NncompileError) as info:
        compile_text(text, tmp_path)
    return info.value.diagnostics[0]


def test_a_pattern_matching_nothing_names_the_nearest_paths(tmp_path):
    pytest.importorskip("timm")
    found = error_of(vit('    adapters: [{kind: lora, target: "blocks.*.atn.qkv"}]\n'), tmp_path)
    assert "adapter target 'blocks.*.atn.qkv' matches no submodule" in found.message
    assert "blocks.*.attn.qkv" in found.hint
    assert (found.loc.line, found.loc.col) == (9, 37)


def test_an_unsupported_type_is_named(tmp_path):
    pytest.importorskip("timm")
    found = error_of(vit('    adapters: [{kind: lora, target: "blocks.*.attn.*"}]\n'), tmp_path)
    assert (
        "blocks.0.attn.q_norm, a Identity; LoRA adapts Linear, Conv2d (groups 1), Embedding" in found.message
    )
    assert "target: [blocks.*.attn.qkv, blocks.*.attn.proj]" in found.hint
    assert found.loc.line == 9


def test_a_rank_larger_than_the_layer_is_an_error(tmp_path):
    text = spec("  fc1: {op: Linear, out_features: 3, adapters: [{kind: lora, r: 4}]}\n", "  x: [16]\n")
    found = error_of(text, tmp_path)
    assert "rank r=4 is larger than the node allows (Linear 16 x 3: at most 3)" in found.message
    assert (found.loc.line, found.loc.col) == (6, 65)


def test_adapters_on_a_node_without_weights(tmp_path):
    text = spec("  act: {op: ReLU, adapters: [{kind: lora, target: x}]}\n", "  x: [16]\n")
    found = error_of(text, tmp_path)
    assert "node 'act' has no layers with weights for `adapters`" in found.message
    assert found.loc.line == 6


def test_an_unknown_adapter_key(tmp_path):
    text = spec("  fc1: {op: Linear, out_features: 8, adapters: [{kind: lora, rank: 4}]}\n", "  x: [16]\n")
    found = error_of(text, tmp_path)
    assert found.message == "unknown key 'rank' in adapter 1 of node 'fc1'"
    assert (found.loc.line, found.loc.col) == (6, 62)


def test_a_node_that_is_no_layer_needs_a_target(tmp_path):
    pytest.importorskip("timm")
    found = error_of(vit("    adapters: [{kind: lora}]\n"), tmp_path)
    assert "is a VisionTransformer, not one layer: adapter 1 needs a `target`" in found.message


def test_two_adapters_on_one_layer(tmp_path):
    pytest.importorskip("timm")
    found = error_of(
        vit('    adapters: [{kind: lora, target: "blocks.0.attn.qkv"}, {kind: lora, target: "**.qkv"}]\n'),
        tmp_path,
    )
    assert "adapters 1 and 2 both adapt blocks.0.attn.qkv" in found.message


def test_two_adapters_on_a_layer_node(tmp_path):
    text = spec(
        "  fc1: {op: Linear, out_features: 8, adapters: [{kind: lora}, {kind: lora}]}\n", "  x: [16]\n"
    )
    assert "adapters 1 and 2 both adapt the node" in error_of(text, tmp_path).message


def test_adapters_with_freeze_is_an_error(tmp_path):
    text = spec(
        "  fc1: {op: Linear, out_features: 8, freeze: true, adapters: [{kind: lora}]}\n", "  x: [16]\n"
    )
    assert "`adapters` and `freeze` cannot be combined" in error_of(text, tmp_path).message


# --- composition and the reference implementation ----------------------------------------------------


def test_layer_wise_decay_gives_an_adapter_its_layer_depth(tmp_path):
    pytest.importorskip("timm")
    result, module = compile_and_load(vit(VIT_ADAPTERS + "    lr_decay: 0.5\n"), tmp_path)
    model = build(module)
    rates = {id(p): g["lr"] for g in model.param_groups(lr=1.0) for p in g["params"]}
    qkv = [model.net.blocks[i].attn.qkv.lora_A for i in (0, 5)]
    assert rates[id(qkv[0])] < rates[id(qkv[1])] < rates[id(model.fc.weight)]
    shallow = [
        g["lr"]
        for g in model.param_groups(lr=1.0)
        if any(p is model.net.blocks[0].mlp.fc1.lora_B for p in g["params"])
    ]
    assert shallow == [rates[id(qkv[0])]]  # one depth for the whole block


def test_lora_equals_peft_on_the_same_weights():
    peft = pytest.importorskip("peft")
    from nncompile.runtime.adapters import _add_lora

    torch.manual_seed(0)
    base = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.Flatten(), nn.Linear(6 * 8 * 8, 4))
    ours = _add_lora(nn.Sequential(*[m for m in base]), ("0", "2"), 2, 6.0, 0.0)
    config = peft.LoraConfig(r=2, lora_alpha=6, target_modules=["0", "2"])
    theirs = peft.inject_adapter_in_model(config, nn.Sequential(*[m for m in base]))
    randomize_adapters(ours)
    for path in ("0", "2"):
        layer = theirs.get_submodule(path)
        layer.lora_A["default"].weight.data.copy_(
            ours.get_submodule(path).lora_A.reshape_as(layer.lora_A["default"].weight)
        )
        layer.lora_B["default"].weight.data.copy_(
            ours.get_submodule(path).lora_B.reshape_as(layer.lora_B["default"].weight)
        )
    x = torch.randn(2, 3, 8, 8)
    assert torch.allclose(ours(x), theirs(x), atol=1e-5)


def test_a_shared_node_shares_its_adapters(tmp_path):
    text = (
        "nncompile: 1\nname: Net\ninputs:\n  left: [16]\n  right: [16]\n"
        "nodes:\n  enc:\n    op: Linear\n    in: left\n    out_features: 8\n    adapters: [{kind: lora, r: 2}]\n"
        "  enc_right: {shares: enc, in: right}\n  both: {op: concat, in: [enc, enc_right]}\n"
        "  fc: {op: Linear, out_features: 5}\ntask: {kind: classification}\n"
    )
    _, module = compile_and_load(text, tmp_path)
    model = build(module)
    assert type(model.enc).__name__ == "LoRALinear"
    assert trained(model) == 2 * (16 + 8) + 16 * 5 + 5  # one adapter, applied twice
    randomize_adapters(model)
    x, y = torch.randn(2, 16), torch.randn(2, 16)  # apart: a swapped or repeated branch shows
    with torch.no_grad():
        expected = model.fc(torch.cat([model.enc(x), model.enc(y)], dim=1))
        assert torch.allclose(model(x, y), expected)
        assert not torch.allclose(model(y, x), expected)


def test_summary_shows_uneven_coverage(tmp_path):
    from nncompile.tools.summary import summarize

    body = '    adapters: [{kind: lora, target: ["layer1.*.conv1", "layer4.1.conv2"], r: 2}]\n'
    node = "  net:\n    op: torchvision.resnet18\n    head: remove\n"
    compiled = compile_text(spec(node + body, "  image: [3, 32, 32]\n"), tmp_path)
    header = compiled.source.split("LoRA adapters (")[1].split("\n\n")[0]
    assert max(len(line) for line in header.splitlines()) <= 110  # ruff's limit: the entry wraps
    found = summarize(compiled)
    (row,) = found.adapters
    assert (row.node, row.target, row.layers, row.types) == (
        "net",
        "layer1.*.conv1, layer4.1.conv2",
        3,
        "Conv2d",
    )
    assert row.coverage == "layer1 2/2, layer4 1/2"
    assert row.params == 2 * 2 * (64 * 9 + 64) + 2 * (512 * 9 + 512)
    assert "net         1  layer1.*.conv1, layer4.1.conv2       3  layer1 2/2, layer4 1/2" in found.text()
