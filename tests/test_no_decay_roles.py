"""Weight decay spares parameters by their role, not by one library's names: the same tiny ViT
from torchvision, timm and Hugging Face gets the same decision for its class token, position
embedding, patch projection and transformer weights; Hugging Face's distillation and mask
tokens are spared like class tokens; every `nn.Embedding` table (word, position, token type) is
spared; and nothing else with two or more dims is (ops/decay_helper.py, docs/fine-tuning.md)."""

import inspect

import pytest
from load_generated import compile_and_load
from nncompile.runtime.decay import _no_weight_decay, _only_1d_spared
from torch import nn

transformers = pytest.importorskip("transformers")
timm = pytest.importorskip("timm")
torchvision = pytest.importorskip("torchvision")

VIT = {"image": 16, "patch": 8, "dim": 32, "layers": 2, "heads": 2, "mlp": 48}


def torchvision_vit():
    from torchvision.models.vision_transformer import VisionTransformer

    model = VisionTransformer(VIT["image"], VIT["patch"], VIT["layers"], VIT["heads"], VIT["dim"], VIT["mlp"])
    roles = {
        "class token": model.class_token,
        "position embedding": model.encoder.pos_embedding,
        "patch projection": model.conv_proj.weight,
        "attention": model.encoder.layers[0].self_attention.in_proj_weight,
        "mlp": model.encoder.layers[0].mlp[0].weight,
    }
    return model, roles


def timm_vit():
    from timm.models.vision_transformer import VisionTransformer

    model = VisionTransformer(
        img_size=VIT["image"],
        patch_size=VIT["patch"],
        embed_dim=VIT["dim"],
        depth=VIT["layers"],
        num_heads=VIT["heads"],
        mlp_ratio=VIT["mlp"] / VIT["dim"],
    )
    model.no_weight_decay = set  # what timm declares aside: the role alone must decide
    roles = {
        "class token": model.cls_token,
        "position embedding": model.pos_embed,
        "patch projection": model.patch_embed.proj.weight,
        "attention": model.blocks[0].attn.qkv.weight,
        "mlp": model.blocks[0].mlp.fc1.weight,
    }
    return model, roles


def hf_vit():
    config = transformers.ViTConfig(
        hidden_size=VIT["dim"],
        num_hidden_layers=VIT["layers"],
        num_attention_heads=VIT["heads"],
        intermediate_size=VIT["mlp"],
        image_size=VIT["image"],
        patch_size=VIT["patch"],
    )
    model = transformers.ViTModel(config)
    layer = next(m for n, m in model.named_modules() if n in ("layers.0", "encoder.layer.0"))
    linears = [m for m in layer.modules() if isinstance(m, nn.Linear)]
    roles = {
        "class token": model.embeddings.cls_token,
        "position embedding": model.embeddings.position_embeddings,
        "patch projection": model.embeddings.patch_embeddings.projection.weight,
        "attention": linears[0].weight,  # the query projection
        "mlp": next(m for m in linears if m.out_features == VIT["mlp"]).weight,
    }
    return model, roles


SPARED = {
    "class token": True,
    "position embedding": True,
    "patch projection": False,
    "attention": False,
    "mlp": False,
}


def decisions(model, roles) -> dict[str, bool]:
    skip = _no_weight_decay(model)
    return {role: id(param) in skip for role, param in roles.items()}


def test_the_same_vit_gets_the_same_decisions_from_every_library():
    found = {
        name: decisions(*build())
        for name, build in [("torchvision", torchvision_vit), ("timm", timm_vit), ("hf", hf_vit)]
    }
    assert found == {"torchvision": SPARED, "timm": SPARED, "hf": SPARED}


@pytest.mark.parametrize("build", [torchvision_vit, timm_vit, hf_vit])
def test_only_tokens_and_position_embeddings_are_spared_beyond_norms_and_biases(build):
    model, roles = build()
    skip = _no_weight_decay(model)
    spared = {id(p) for p in model.parameters() if id(p) in skip and p.ndim >= 2}
    assert spared == {id(roles["class token"]), id(roles["position embedding"])}
    biases = [p for n, p in model.named_parameters() if n.endswith("bias")]
    assert biases and all(id(p) in skip for p in biases)


def test_hugging_face_distillation_and_mask_tokens_are_spared_like_class_tokens():
    config = transformers.DeiTConfig(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=48,
        image_size=16,
        patch_size=8,
    )
    model = transformers.DeiTModel(config, use_mask_token=True)
    embeddings = model.embeddings
    skip = _no_weight_decay(model)
    for token in (embeddings.cls_token, embeddings.distillation_token, embeddings.mask_token):
        assert id(token) in skip
    assert id(embeddings.position_embeddings) in skip
    assert id(embeddings.patch_embeddings.projection.weight) not in skip


def test_every_embedding_table_is_spared():
    """BERT's word, position and token-type tables (nn.Embedding) and a plain model's, while
    the Linear weights next to them are decayed."""
    config = transformers.BertConfig(
        vocab_size=50, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=48
    )
    bert = transformers.BertModel(config)
    skip = _no_weight_decay(bert)
    tables = [m.weight for m in bert.modules() if isinstance(m, nn.Embedding)]
    assert len(tables) == 3 and all(id(t) in skip for t in tables)
    linears = [m.weight for m in bert.modules() if isinstance(m, nn.Linear)]
    assert linears and not any(id(w) in skip for w in linears)
    plain = nn.Sequential(nn.Embedding(10, 4), nn.EmbeddingBag(10, 4), nn.Linear(4, 1, bias=False))
    assert _no_weight_decay(plain) == {id(plain[0].weight), id(plain[1].weight)}


def test_a_weight_of_shape_one_in_a_torch_layer_is_decayed():
    """A conv with one output channel has a (1, C, k, k) weight: a layer's weight, not a token."""
    model = nn.Sequential(nn.Conv2d(3, 1, 3), nn.Bilinear(2, 3, 1))
    assert _no_weight_decay(model) == {id(model[0].bias), id(model[1].bias)}


def test_the_generated_param_groups_spare_hugging_face_position_embeddings(tmp_path):
    """The rule as the generated file carries it: BERT's embedding tables and ViT's tokens in the
    groups with weight_decay 0."""
    folder = tmp_path / "vit"
    hf_vit()[0].save_pretrained(folder)
    text = (
        "nncompile: 1\nname: Net\ninputs:\n  image: [3, 16, 16]\n"
        f"nodes:\n  vit: {{op: transformers.AutoModel, model: {folder}, output: cls}}\n"
        "  fc: {op: Linear, out_features: 3}\n"
        "task: {kind: classification, optimizer: {name: AdamW, lr: 1.0e-3, weight_decay: 0.05}}\n"
    )
    _, module = compile_and_load(text, tmp_path)
    net = module.Net()
    spared = {id(p) for g in net.param_groups(1e-3) if g.get("weight_decay") == 0.0 for p in g["params"]}
    embeddings = net.vit.embeddings
    assert {id(embeddings.cls_token), id(embeddings.position_embeddings)} <= spared
    assert id(embeddings.patch_embeddings.projection.weight) not in spared
    assert id(net.fc.weight) not in spared and id(net.fc.bias) in spared


def test_the_one_dimensional_split_is_written_out_only_where_it_equals_the_rules(tmp_path):
    """A model whose spared parameters are exactly its 1-D ones (biases, BatchNorm weights) gets
    `p.ndim <= 1` written out in param_groups(); one with a spared table or token carries the
    rules; either way the generated groups spare what `_no_weight_decay` names."""
    assert _only_1d_spared(torchvision.models.resnet18())
    assert not _only_1d_spared(nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 2)))
    assert not _only_1d_spared(nn.LayerNorm([4, 4]))  # a 2-D norm weight, spared as a norm's
    head = "  fc: {op: Linear, out_features: 2}\ntask: {kind: classification, optimizer: {name: AdamW}}\n"
    convs = "inputs: {x: [3, 8, 8]}\nnodes:\n  conv: {op: Conv2d, out_channels: 4, kernel_size: 3}\n"
    convs += "  bn: BatchNorm2d\n  pool: {op: AdaptiveAvgPool2d, output_size: 1}\n  flat: Flatten\n"
    tokens = "inputs:\n  ids: {shape: [5], dtype: int64}\nnodes:\n"
    tokens += "  emb: {op: Embedding, num_embeddings: 10, embedding_dim: 4}\n  flat: Flatten\n"
    for body, written in ((convs, True), (tokens, False)):
        result, module = compile_and_load(f"nncompile: 1\nname: Net\n{body}{head}", tmp_path)
        assert ("p.ndim <= 1" in inspect.getsource(module.Net.param_groups)) is written
        assert ("def _no_weight_decay" in result.source) is not written
        net = module.Net()
        spared = {id(p) for g in net.param_groups(1e-3) if g.get("weight_decay") == 0.0 for p in g["params"]}
        assert spared == _no_weight_decay(net)
