"""Fine-tuning recipes in the optimizer's parameter groups, run through the generated modules:
layer-wise learning-rate decay (`lr_decay`) against a hand computation by parameter name, for a
torchvision ResNet-18 and a timm ViT, with LightningCLI overriding the decay; norm layers, biases
and tokens without weight decay; `train_bn` training frozen BatchNorm's weight and bias while its
statistics stay fixed."""

import re
import warnings

import pytest
import torch
from load_generated import compile_and_load
from nncompile.errors import NncompileError
from nncompile.tools.summary import summarize
from task_helpers import trainer as quiet_trainer

RESNET = """nncompile: 1
name: DecayResNet
inputs:
  image: [3, 64, 64]
nodes:
  resnet:
    op: torchvision.resnet18
    head: remove
{tuning}  fc: {{op: Linear, out_features: 5}}
outputs: {{logits: fc}}
task:
  kind: classification
  optimizer: {optimizer}
"""
DECAY = "    lr_mult: 0.1\n    lr_decay: 0.75\n"
WD = "{name: AdamW, lr: 1.0e-3, weight_decay: 0.05}"

VIT = """nncompile: 1
name: DecayViT
inputs:
  image: [3, 224, 224]
nodes:
  vit:
    op: timm.vit_tiny_patch16_224
    weights: null
    head: replace
    num_classes: 5
    lr_decay: 0.75
outputs: {logits: vit}
task:
  kind: classification
  optimizer: {name: AdamW, lr: 1.0e-3, weight_decay: 0.05}
"""


def build(module_cls, **hparams):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return module_cls(**hparams)


def lr_and_decay_by_name(lightning) -> dict[str, tuple[float, float]]:
    """Each parameter name -> (lr, weight_decay) of its group in what configure_optimizers builds."""
    optimizer = lightning.configure_optimizers()
    by_id = {id(p): (g["lr"], g["weight_decay"]) for g in optimizer.param_groups for p in g["params"]}
    names = dict(lightning.named_parameters())
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(names)  # each exactly once
    return {name: by_id[id(p)] for name, p in names.items()}


def resnet_depth(name: str) -> int:
    """Hand count for ResNet-18 without its fc: layer4 one level below the head, the stem five."""
    if name.startswith(("model.resnet.conv1.", "model.resnet.bn1.")):
        return 5
    return 5 - int(re.match(r"model\.resnet\.layer(\d)\.", name).group(1))


def test_resnet18_layer_decay_matches_a_hand_computation(tmp_path):
    result, module = compile_and_load(RESNET.format(tuning=DECAY, optimizer=WD), tmp_path)
    assert "5: [*self.resnet.conv1.parameters(), *self.resnet.bn1.parameters()]," in result.source
    assert '"lr": lr * lr_mult_resnet * lr_decay_resnet**depth' in result.source
    rates = lr_and_decay_by_name(build(module.DecayResNetModule))
    assert len(rates) == 60 + 2  # ResNet-18 without fc, and the new fc
    for name, (lr, _) in rates.items():
        expected = 1e-3 if name.startswith("model.fc.") else 1e-3 * 0.1 * 0.75 ** resnet_depth(name)
        assert lr == pytest.approx(expected, rel=1e-12), name
    # the summary's table lists the same rates, in the optimizer's order
    groups = summarize(result).groups
    assert [g.lr for g in groups] == pytest.approx(
        [1e-4 * 0.75**d for d in (5, 5, 4, 4, 3, 3, 2, 2, 1, 1)] + [1e-3, 1e-3]
    )
    assert "resnet depth 3: layer2" in result.summary().text()
    assert (
        summarize(result).to_dict()["param_groups"][0]["rate"] == "lr * lr_mult_resnet * lr_decay_resnet**5"
    )


def test_layer_decay_is_a_hyperparameter_lightning_cli_sets(tmp_path):
    from pytorch_lightning.cli import LightningCLI

    _, module = compile_and_load(RESNET.format(tuning=DECAY, optimizer=WD), tmp_path)
    args = ["--model.lr_decay_resnet", "0.5", "--model.lr_mult_resnet", "0.2", "--trainer.logger", "false"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cli = LightningCLI(module.DecayResNetModule, args=args, run=False, save_config_callback=None)
    assert cli.model.hparams.lr_decay_resnet == 0.5
    for name, (lr, _) in lr_and_decay_by_name(cli.model).items():
        expected = 1e-3 if name.startswith("model.fc.") else 1e-3 * 0.2 * 0.5 ** resnet_depth(name)
        assert lr == pytest.approx(expected, rel=1e-12), name


def vit_depth(name: str) -> int:
    """Hand count for timm's ViT-Tiny (12 blocks): the head at the rate, block 11 and the final
    norm one level below, block i at 12 - i, the patch embedding and tokens at 13."""
    name = name.removeprefix("model.vit.")
    if name.startswith("head."):
        return 0
    if name.startswith("norm."):
        return 1
    if name.startswith(("cls_token", "pos_embed", "patch_embed.")):
        return 13
    return 12 - int(re.match(r"blocks\.(\d+)\.", name).group(1))


def test_timm_vit_layer_decay_matches_hand_and_timm(tmp_path):
    import timm
    from timm.optim import param_groups_layer_decay

    _, module = compile_and_load(VIT, tmp_path)
    rates = lr_and_decay_by_name(build(module.DecayViTModule))
    for name, (lr, _) in rates.items():
        assert lr == pytest.approx(1e-3 * 0.75 ** vit_depth(name), rel=1e-12), name
    # timm's own function on the same model gives the same scale to every parameter
    reference = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=5)
    scale = {}
    for group in param_groups_layer_decay(reference, layer_decay=0.75):
        scale |= {id(p): group["lr_scale"] for p in group["params"]}
    for name, p in reference.named_parameters():
        assert rates[f"model.vit.{name}"][0] == pytest.approx(1e-3 * scale[id(p)], rel=1e-12), name


def test_norms_biases_and_tokens_get_no_weight_decay(tmp_path):
    _, module = compile_and_load(VIT, tmp_path)
    vit = lr_and_decay_by_name(build(module.DecayViTModule))
    modules = dict(build(module.DecayViTModule).named_modules())
    for name, (_, decay) in vit.items():
        owner = modules[name.rsplit(".", 1)[0]] if "." in name.removeprefix("model.vit.") else None
        spared = name.endswith((".bias", "cls_token", "pos_embed")) or isinstance(owner, torch.nn.LayerNorm)
        assert decay == (0.0 if spared else 0.05), name
    assert vit["model.vit.cls_token"][1] == 0.0 and vit["model.vit.blocks.3.norm1.weight"][1] == 0.0
    assert vit["model.vit.blocks.3.attn.qkv.weight"][1] == 0.05

    _, module = compile_and_load(RESNET.format(tuning="", optimizer=WD), tmp_path)
    resnet = lr_and_decay_by_name(build(module.DecayResNetModule))
    for name, (_, decay) in resnet.items():
        spared = name.endswith(".bias") or re.search(r"\.(bn\d|downsample\.1)\.", name)
        assert decay == (0.0 if spared else 0.05), name


def test_decay_norm_and_bias_true_keeps_one_group(tmp_path):
    optimizer = "{name: AdamW, lr: 1.0e-3, weight_decay: 0.05, decay_norm_and_bias: true}"
    result, module = compile_and_load(RESNET.format(tuning="", optimizer=optimizer), tmp_path)
    assert "_split_weight_decay" not in result.source
    groups = build(module.DecayResNetModule).configure_optimizers().param_groups
    assert [g["weight_decay"] for g in groups] == [0.05]


def test_adamw_default_weight_decay_is_split_too(tmp_path):
    """AdamW decays by default (0.01): its norms and biases are spared without `weight_decay:`."""
    _, module = compile_and_load(RESNET.format(tuning="", optimizer="{name: AdamW}"), tmp_path)
    groups = build(module.DecayResNetModule).configure_optimizers().param_groups
    assert [g["weight_decay"] for g in groups] == [0.01, 0.0]
    _, module = compile_and_load(RESNET.format(tuning="", optimizer="{name: SGD, lr: 0.1}"), tmp_path)
    assert len(build(module.DecayResNetModule).configure_optimizers().param_groups) == 1


FROZEN_PARTS = ("conv1.", "bn1.", "layer1.", "layer2.", "layer3.")


def test_train_bn_trains_frozen_affine_and_keeps_statistics(tmp_path):
    tuning = "    trainable: [layer4]\n    train_bn: true\n"
    result, module = compile_and_load(RESNET.format(tuning=tuning, optimizer=WD), tmp_path)
    assert "_train_norm_affine(self.resnet" in result.source
    torch.manual_seed(0)
    lightning = build(module.DecayResNetModule)
    before = {k: v.clone() for k, v in lightning.model.state_dict().items()}
    data = torch.utils.data.TensorDataset(torch.randn(8, 3, 64, 64), torch.randint(0, 5, (8,)))
    grads = {}
    hook = lightning.model.resnet.layer1[0].bn1.weight.register_hook(lambda g: grads.setdefault("bn", g))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = quiet_trainer(max_steps=2)
        trainer.fit(lightning, torch.utils.data.DataLoader(data, batch_size=4))
    hook.remove()
    assert trainer.global_step == 2 and grads["bn"].abs().sum() > 0
    after = lightning.model.state_dict()
    assert list(after) == list(before)  # state-dict keys unchanged by FrozenBatchNorm
    frozen_norms = [
        k for k in before if re.match(r"resnet\.(bn1|layer[123]\.\d+\.(bn\d|downsample\.1))\.", k)
    ]
    assert len(frozen_norms) == 5 * (1 + 2 * 2 * 3 + 2)
    for key in frozen_norms:
        if key.endswith(("running_mean", "running_var", "num_batches_tracked")):
            assert torch.equal(before[key], after[key]), key
        else:  # weight and bias train
            assert not torch.equal(before[key], after[key]), key
    for key in ("resnet.conv1.weight", "resnet.layer1.0.conv1.weight", "resnet.layer3.1.conv2.weight"):
        assert torch.equal(before[key], after[key]), key
    assert not torch.equal(before["resnet.layer4.0.conv1.weight"], after["resnet.layer4.0.conv1.weight"])
    # exactly the non-norm parameters of the frozen parts are frozen, and the summary agrees
    resnet = lightning.model.resnet
    norm_names = {
        f"{path}.{name}"
        for path, sub in resnet.named_modules()
        if type(sub).__name__ in ("BatchNorm2d", "FrozenBatchNorm")
        for name, _ in sub.named_parameters(recurse=False)
    }
    fixed = {n for n, _ in resnet.named_parameters() if n.startswith(FROZEN_PARTS) and n not in norm_names}
    assert {n for n, p in resnet.named_parameters() if not p.requires_grad} == fixed
    row = summarize(result).rows[0]
    assert row.params - row.trainable == sum(p.numel() for n, p in resnet.named_parameters() if n in fixed)


@pytest.mark.parametrize(
    ("tuning", "message"),
    [
        ("    lr_decay: 1.5\n", "`lr_decay` must be a number in (0, 1]"),
        ("    train_bn: true\n", "has no frozen layers for `train_bn`"),
    ],
)
def test_recipe_mistakes_are_located_errors(tmp_path, tuning, message):
    with pytest.raises(NncompileError) as caught:
        compile_and_load(RESNET.format(tuning=tuning, optimizer=WD), tmp_path)
    assert message in str(caught.value)


def test_torchvision_features_stages_and_hugging_face_layers(tmp_path):
    """`features.N` of a torchvision MobileNet (13 children with parameters) and the
    `encoder.layer.N` of a Hugging Face BERT, each level one step of decay."""
    from test_backbones_hf import bert_spec, tiny_bert

    text = RESNET.replace("op: torchvision.resnet18\n    head: remove", "op: torchvision.mobilenet_v3_small")
    _, module = compile_and_load(text.format(tuning="    lr_decay: 0.5\n", optimizer=WD), tmp_path)
    for name, (lr, _) in lr_and_decay_by_name(build(module.DecayResNetModule)).items():
        stage = re.match(r"model\.resnet\.features\.(\d+)\.", name)
        expected = 1e-3 * 0.5 ** (13 - int(stage.group(1))) if stage else 1e-3  # classifier, fc: the rate
        assert lr == pytest.approx(expected, rel=1e-12), name

    folder = tmp_path / "tiny_bert"
    tiny_bert(folder)
    body = "    output: pooler_output\n    lr_decay: 0.5\n"  # the pooler, read: the head, depth 0
    _, module = compile_and_load(bert_spec(folder.as_posix(), body), tmp_path)
    rates = lr_and_decay_by_name(build(module.NetModule))
    for name, (lr, _) in rates.items():
        layer = re.match(r"model\.bert\.encoder\.layer\.(\d)\.", name)
        depth = 2 - int(layer.group(1)) if layer else 3 if name.startswith("model.bert.embeddings.") else 0
        assert lr == pytest.approx(1e-3 * 0.5**depth, rel=1e-12), name
    assert any(name.startswith("model.bert.pooler.") for name in rates)


def test_torchvision_vit_encoder_layers(tmp_path):
    """torchvision's ViT-B/16: the patch projection and tokens deepest, each encoder layer one
    level, the final norm and the replaced head at the rate."""
    text = RESNET.replace("[3, 64, 64]", "[3, 224, 224]").replace(
        "op: torchvision.resnet18\n    head: remove",
        "op: torchvision.vit_b_16\n    head: replace\n    num_classes: 5",
    )
    result, module = compile_and_load(text.format(tuning="    lr_decay: 0.8\n", optimizer=WD), tmp_path)
    stem = (
        "self.resnet.class_token",
        "*self.resnet.conv_proj.parameters()",
        "self.resnet.encoder.pos_embedding",
    )
    assert "13: [\n" + "".join(f"{' ' * 16}{p},\n" for p in stem) in result.source  # the deepest level
    rates = lr_and_decay_by_name(build(module.DecayResNetModule))
    for name, (lr, _) in rates.items():
        layer = re.match(r"model\.resnet\.encoder\.layers\.encoder_layer_(\d+)\.", name)
        stem = name.startswith(
            ("model.resnet.conv_proj.", "model.resnet.class_token", "model.resnet.encoder.pos")
        )
        depth = 12 - int(layer.group(1)) if layer else 13 if stem else 0
        assert lr == pytest.approx(1e-3 * 0.8**depth, rel=1e-12), name
    assert rates["model.resnet.class_token"][1] == rates["model.resnet.encoder.pos_embedding"][1] == 0.0


@pytest.mark.parametrize("rest_nodes", [2, 4])
def test_the_rest_group_holds_every_other_trainable_parameter_once(rest_nodes, tmp_path):
    """param_groups() lists the parameters no group holds as the nodes that hold them where that
    takes at most three paths (REST_ITEMS), and gathers them at run time beyond: either way every
    trainable parameter is in exactly one group, and frozen ones in none."""
    nodes = "".join(f"  fc{i}: {{op: Linear, out_features: 4}}\n" for i in range(rest_nodes))
    text = (
        "nncompile: 1\nname: Rest\ninputs:\n  x: [4]\nnodes:\n"
        "  first: {op: Linear, out_features: 4, lr_mult: 0.1}\n"
        f"  frozen: {{op: Linear, out_features: 4, freeze: true}}\n{nodes}"
        "task: {kind: classification, optimizer: {name: AdamW, lr: 1.0e-3, weight_decay: 0.05}}\n"
    )
    result, module = compile_and_load(text, tmp_path)
    listed = '{"params": [*self.fc0.parameters(), *self.fc1.parameters()], "lr": lr}'  # frozen: none
    assert ("grouped = {id(p)" in result.source) is (rest_nodes > 2)
    assert (listed in " ".join(result.source.split())) is (rest_nodes == 2)
    net = module.Rest()
    grouped = [id(p) for group in net.param_groups(1e-3) for p in group["params"]]
    trainable = [id(p) for p in net.parameters() if p.requires_grad]
    assert sorted(grouped) == sorted(trainable) and len(set(grouped)) == len(grouped)
    assert not {id(p) for p in net.frozen.parameters()} & set(grouped)
