"""Freezing and per-node learning rates: after 3 real training steps the frozen weights and the
frozen BatchNorm statistics are bit-identical, the trainable weights moved, and the optimizer's
parameter groups carry the spec's learning rates; plus the errors for wrong `freeze`/`lr` use."""

import warnings

import pytest
import torch
import torch.nn.functional as F
from backbone_helpers import random_batchnorm
from conftest import ROOT
from load_generated import compile_text, load_source
from nncompile import compile_spec
from nncompile.errors import NncompileError
from task_helpers import trainer as quiet_trainer

SPEC = ROOT / "specs" / "frozen_resnet_param_groups.yaml"


def train_steps(module_cls, steps: int, image_shape=(3, 64, 64), classes: int = 5):
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lightning = module_cls(pretrained=False)
        before = {k: v.clone() for k, v in lightning.model.state_dict().items()}
        data = torch.utils.data.TensorDataset(
            torch.randn(steps * 4, *image_shape), torch.randint(0, classes, (steps * 4,))
        )
        trainer = quiet_trainer(max_steps=steps)
        trainer.fit(lightning, torch.utils.data.DataLoader(data, batch_size=4))
    return lightning, before, trainer


def test_frozen_resnet_three_steps(tmp_path):
    module = load_source(compile_spec(SPEC).source, tmp_path)
    lightning, before, trainer = train_steps(module.FrozenResNetModule, 3)
    after = lightning.model.state_dict()
    assert trainer.global_step == 3
    frozen_prefixes = ("resnet.conv1.", "resnet.bn1.", "resnet.layer1.", "resnet.layer2.", "resnet.layer3.")
    frozen = [k for k in before if k.startswith(frozen_prefixes)]
    assert any("running_mean" in k for k in frozen) and any("num_batches_tracked" in k for k in frozen)
    for key in frozen:  # weights and BatchNorm running statistics
        assert torch.equal(before[key], after[key]), key
    for key in (
        "resnet.layer4.0.conv1.weight",
        "fc1.weight",
        "fc2.weight",
        "resnet.layer4.0.bn1.running_mean",
    ):
        assert not torch.equal(before[key], after[key]), key
    named = dict(lightning.model.named_parameters())
    assert all(not named[k].requires_grad for k in frozen if k in named)
    groups = trainer.optimizers[0].param_groups
    # each rate's group, then its twin of norm weights and biases without AdamW's weight decay
    assert [g["lr"] for g in groups] == pytest.approx([1e-4, 1e-4, 1e-2, 1e-2, 1e-3, 1e-3])
    assert [g["weight_decay"] for g in groups] == [0.01, 0.0] * 3
    in_groups = {id(p) for g in groups for p in g["params"]}
    assert in_groups == {id(p) for p in lightning.model.parameters() if p.requires_grad}
    layer4 = [p for p in lightning.model.resnet.layer4.parameters()]
    assert [len(g["params"]) for g in groups] == [5, len(layer4) - 5, 1, 1, 1, 1]  # 5 conv weights


FROZEN_NORMS = ("resnet.bn1", "resnet.layer1.0.bn1", "resnet.layer3.1.bn2")


def stats(lightning) -> dict[str, torch.Tensor]:
    state = lightning.model.state_dict()
    return {k: state[k].clone() for k in state if k.startswith(FROZEN_NORMS) and "running" in k}


def test_frozen_batchnorm_stays_fixed_when_a_submodule_is_put_in_training_mode(tmp_path):
    """The statistics are fixed in the layers themselves, not by a train() override of the top
    module: calling train() on a part (as fine-tuning code does) cannot unfreeze them."""
    module = load_source(compile_spec(SPEC).source, tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lightning = module.FrozenResNetModule(pretrained=False)
    before = stats(lightning)
    lightning.model.resnet.layer1.train()
    lightning.model.resnet.bn1.train()
    lightning.model.resnet.train()
    assert lightning.model.resnet.layer1[0].bn1.training  # the mode is set, the statistics ignore it
    lightning.model.resnet.layer4[0].bn1.momentum = 0.5
    lightning.model(torch.randn(4, 3, 64, 64) * 3 + 1)
    assert len(before) == 6 and all(torch.equal(v, stats(lightning)[k]) for k, v in before.items())
    assert lightning.model.resnet.layer4[0].bn1.num_batches_tracked == 1  # trainable: it moves


def test_a_frozen_batchnorm_normalises_with_its_stored_statistics_in_training_mode(tmp_path):
    """What the layer computes, not only what it stores: in training mode, with statistics far
    from a fresh layer's (0, 1) and an input far from the batch's own, eval-mode batch norm."""
    module = load_source(compile_spec(SPEC).source, tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lightning = module.FrozenResNetModule(pretrained=False)
    lightning.train()
    bn = lightning.model.resnet.bn1
    random_batchnorm(bn)
    with torch.no_grad():
        x = torch.randn(4, 64, 8, 8) * 3 + 1
        stored = F.batch_norm(
            x, bn.running_mean, bn.running_var, bn.weight, bn.bias, training=False, eps=bn.eps
        )
        batch = F.batch_norm(x, None, None, bn.weight, bn.bias, training=True, eps=bn.eps)
        assert not torch.allclose(stored, batch, atol=0.1)  # the two ways apart on this input
        torch.testing.assert_close(bn(x), stored)


def test_frozen_batchnorm_with_a_base_finetuning_callback(tmp_path):
    """Lightning's BaseFinetuning unfreezes layer3 after the first epoch and puts it in training
    mode, as its examples do: layer3's weights then train, its BatchNorm statistics stay put.
    Nothing is in eval mode, so Lightning does not warn about modules in eval mode."""
    from pytorch_lightning.callbacks import BaseFinetuning

    class UnfreezeLayer3(BaseFinetuning):
        def freeze_before_training(self, pl_module):
            self.freeze(pl_module.model.resnet.layer3)

        def finetune_function(self, pl_module, epoch, optimizer):
            if epoch == 1:
                layer3 = pl_module.model.resnet.layer3
                self.unfreeze_and_add_param_group(layer3, optimizer, lr=1e-3)
                layer3.train()

    module = load_source(compile_spec(SPEC).source, tmp_path)
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lightning = module.FrozenResNetModule(pretrained=False)
    before = stats(lightning)
    conv = lightning.model.resnet.layer3[0].conv1.weight.clone()
    data = torch.utils.data.TensorDataset(torch.randn(8, 3, 64, 64), torch.randint(0, 5, (8,)))
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        trainer = quiet_trainer(max_epochs=2, callbacks=[UnfreezeLayer3()])
        trainer.fit(lightning, torch.utils.data.DataLoader(data, batch_size=4))
    assert trainer.global_step == 4
    assert not torch.equal(conv, lightning.model.resnet.layer3[0].conv1.weight)  # unfrozen: trained
    assert all(torch.equal(v, stats(lightning)[k]) for k, v in before.items())
    assert not [w for w in seen if "eval mode" in str(w.message)]


def test_header_counts_frozen_and_trainable():
    header = compile_spec(SPEC).source.split('"""')[1]
    assert "11,176,512 pretrained, 66,309 new; 2,782,784 frozen, 8,460,037 trainable" in header


def spec_text(node: str, image=(3, 32, 32)) -> str:
    return (
        f"nncompile: 1\nname: Net\ninputs:\n  image: {list(image)}\nnodes:\n{node}"
        "  flat: {op: Flatten}\n  fc: {op: Linear, out_features: 3}\ntask: {kind: classification}\n"
    )


CONV = "  conv:\n    op: Conv2d\n    out_channels: 4\n    kernel_size: 3\n"


def test_freeze_plain_layer_and_optimizer_skips_it(tmp_path):
    result = compile_text(spec_text(CONV + "    freeze: true\n"), tmp_path)
    assert "self.conv.requires_grad_(False)" in result.source
    assert "FrozenBatchNorm" not in result.source  # no BatchNorm statistics to keep
    model = load_source(result.source, tmp_path).Net()
    groups = model.param_groups(0.1)  # fc's weight, then its bias without weight decay
    assert [g["params"] for g in groups] == [[model.fc.weight], [model.fc.bias]]


def test_replaced_head_stays_trainable_under_freeze_true(tmp_path):
    node = "  net:\n    op: torchvision.resnet18\n    head: replace\n    num_classes: 4\n    freeze: true\n"
    text = spec_text(node).replace("  flat: {op: Flatten}\n  fc: {op: Linear, out_features: 3}\n", "")
    result = compile_text(text, tmp_path)
    model = load_source(result.source, tmp_path).Net()
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable == ["net.fc.weight", "net.fc.bias"]
    assert '_freeze_batchnorm_stats(self.net, ("",))' not in result.source  # the head is not frozen


def test_vit_direct_parameters_are_frozen(tmp_path):
    """class_token and pos_embedding live on modules that also hold trainable parts."""
    node = "  net:\n    op: torchvision.vit_b_16\n    head: replace\n    num_classes: 4\n    freeze: true\n"
    text = spec_text(node, (3, 224, 224)).replace(
        "  flat: {op: Flatten}\n  fc: {op: Linear, out_features: 3}\n", ""
    )
    result = compile_text(text, tmp_path)
    assert "self.net.class_token.requires_grad_(False)" in result.source
    frozen = result.shaped.nodes["net"].built.module
    assert sum(p.numel() for p in frozen.parameters()) - 4 * 768 - 4 == int(
        result.source.split(" frozen,")[0].rpartition(" ")[2].replace(",", "")
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("    freeze: [layer9]\n", "has no submodule 'layer9'"),
        ("    freeze: true\n    trainable: [layer4]\n", "cannot be combined"),
        ("    lr: 0.1\n    lr_mult: 2\n", "`lr` and `lr_mult` cannot be combined"),
        ("    freeze: true\n    lr: 0.1\n", "no trainable parameters to give a learning rate"),
        ("    lr_mult: -1\n", "must be a positive number"),
        ("    freeze: layer1\n", "'freeze' must be boolean or array"),
    ],
)
def test_errors(extra, message, tmp_path):
    node = "  net:\n    op: torchvision.resnet18\n    head: remove\n" + extra
    with pytest.raises(NncompileError, match=message):
        compile_text(spec_text(node), tmp_path)


def test_unknown_prefix_suggests_the_nearest(tmp_path):
    node = "  net:\n    op: torchvision.resnet18\n    head: remove\n    trainable: [layer_4]\n"
    with pytest.raises(NncompileError, match="did you mean 'layer4'"):
        compile_text(spec_text(node), tmp_path)


def test_freezing_a_node_without_parameters(tmp_path):
    node = CONV + "  act:\n    op: ReLU\n    freeze: true\n"
    with pytest.raises(NncompileError, match="node 'act' has no parameters to freeze"):
        compile_text(spec_text(node), tmp_path)


def test_timm_norm_act_layers_stay_fixed(tmp_path):
    """timm's BatchNormAct2d (a BatchNorm with its activation) becomes timm's frozen twin."""
    node = "  net:\n    op: timm.efficientnet_b0\n    weights: null\n    head: remove\n    trainable: [blocks.6]\n"
    text = spec_text(node).replace("  flat: {op: Flatten}\n", "")
    model = load_source(compile_text(text, tmp_path).source, tmp_path).Net()
    model.net.train()
    before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    model(torch.randn(2, 3, 32, 32))
    moved = {k for k, v in model.state_dict().items() if k in before and not torch.equal(v, before[k])}
    assert moved and all(k.startswith("net.blocks.6.") for k in moved)
