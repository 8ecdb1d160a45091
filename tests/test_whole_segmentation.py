"""Whole torchvision segmentation models with new heads (`op: torchvision.segmentation.<builder>`
with `head: replace`): the classifier's last layer (and the aux classifier's) replaced as the
fine-tuning tutorials write it, the same model with and without weights, the weight manifest, and
`task: {kind: segmentation}` with the aux loss weighted, trained on synthetic masks."""

import warnings
from pathlib import Path

import pytest
import torch
import torchvision
from backbone_helpers import cache_weights
from load_generated import compile_and_load, compile_text
from nncompile import compile_spec
from nncompile.errors import NncompileError
from nncompile.ops.backbones import surgery
from nncompile.ops.backbones.torchvision_weights import build_as_with_weights
from task_helpers import Fixed, trainer
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "specs" / "deeplabv3_3class.yaml"
SEGMENTATION = torchvision.models.list_models(module=torchvision.models.segmentation)


def seg_spec(builder: str, body: str, size: int = 64, task: str = "{kind: segmentation}") -> str:
    aux = "aux: true" in body
    outputs = "{out: net.out, aux: net.aux}" if aux else "{out: net.out}"
    return (
        "nncompile: 1\nname: Net\n"
        f"inputs:\n  image: [3, {size}, {size}]\n"
        f"nodes:\n  net:\n    op: torchvision.segmentation.{builder}\n    {body}\n"
        f"outputs: {outputs}\ntask: {task}\n"
    )


def header_counts(source: str) -> str:
    return next(line for line in source.splitlines() if line.startswith("Parameters: "))


def tutorial_deeplabv3(num_classes: int):
    """The public DeepLabV3 fine-tuning code, run as written (on the meta device, the weights'
    download and loading skipped)."""

    def build():
        model = torchvision.models.segmentation.deeplabv3_resnet50(weights="DEFAULT")
        model.classifier[4] = nn.Conv2d(256, num_classes, kernel_size=1)
        model.aux_classifier[4] = nn.Conv2d(256, num_classes, kernel_size=1)
        return model

    return build_as_with_weights(build)


def test_deeplabv3_spec_counts_equal_the_tutorial():
    """specs/deeplabv3_3class.yaml: the header's and `nncompile summary`'s total, trainable,
    pretrained and new parameters are the hand-written model's."""
    compiled = compile_spec(SPEC)
    reference = tutorial_deeplabv3(3)
    total = sum(p.numel() for p in reference.parameters())
    trainable = sum(p.numel() for p in reference.parameters() if p.requires_grad)
    new = sum(
        p.numel() for m in (reference.classifier[4], reference.aux_classifier[4]) for p in m.parameters()
    )
    assert header_counts(compiled.source) == (
        f"Parameters: {total:,} ({total - new:,} pretrained, {new:,} new;"
        f" {total - trainable:,} frozen, {trainable:,} trainable)."
    )
    summary = compiled.summary()
    assert (summary.total_params, summary.trainable_params) == (total, trainable)
    assert summary.pretrained_params == total - new
    assert "self.deeplab.classifier[4] = nn.Conv2d(256, 3, kernel_size=1)" in compiled.source
    assert "self.deeplab.aux_classifier[4] = nn.Conv2d(256, 3, kernel_size=1)" in compiled.source


def test_deeplabv3_spec_is_the_tutorial_model_with_and_without_weights(tmp_path):
    """`DeepLabV3ThreeClass()` (torchvision's pretrained path, loading skipped) and
    `(pretrained=False)` hold the tutorial's modules and state-dict keys and shapes."""
    _, module = compile_and_load(SPEC.read_text(), tmp_path)
    reference = tutorial_deeplabv3(3)
    pretrained = build_as_with_weights(lambda: module.DeepLabV3ThreeClass()).deeplab
    plain = surgery.build_meta(lambda: module.DeepLabV3ThreeClass(pretrained=False)).deeplab
    kinds = [(n, type(m)) for n, m in reference.named_modules()]
    for model in (pretrained, plain):
        assert [(n, type(m)) for n, m in model.named_modules()] == kinds
        assert surgery.state_shapes(model) == surgery.state_shapes(reference)


def test_deeplabv3_spec_trains_predicts_and_restores(torch_home, tmp_path):
    """The spec with weights from torchvision's cache: 2 training steps on synthetic masks with
    VOC's void label 255 on their borders and the loss out + 0.5 * aux (checked against a hand
    computation that ignores 255), validation metrics, a prediction, and a checkpoint that
    restores without weights."""
    torch.manual_seed(0)
    full = torchvision.models.segmentation.deeplabv3_resnet50(
        weights=None, weights_backbone=None, aux_loss=True
    )
    state = cache_weights(
        torch_home, torchvision.models.segmentation.DeepLabV3_ResNet50_Weights.DEFAULT, full
    )
    _, module = compile_and_load(SPEC.read_text(), tmp_path)
    lit = module.DeepLabV3ThreeClassModule()
    loaded = lit.model.deeplab.state_dict()
    assert all(
        torch.equal(loaded[k], v)
        for k, v in state.items()
        if not k.startswith(("classifier.4", "aux_classifier.4"))
    )
    g = torch.Generator().manual_seed(0)
    data = [
        (torch.rand(2, 3, 48, 48, generator=g), torch.randint(0, 3, (2, 48, 48), generator=g))
        for _ in range(2)
    ]
    for _, masks in data:
        masks[:, :4] = masks[:, :, :4] = 255  # void: no class
    loader = torch.utils.data.DataLoader(data, batch_size=None)

    lit.eval()
    images, masks = data[0]
    # The loss and metrics on logits that vary by pixel: the random model predicts one class
    # everywhere, where the per-class IoU of the jaccard index would be 0 for two classes of three.
    out = {name: torch.randn(2, 3, 48, 48, generator=g) for name in ("out", "aux")}
    real, lit.model = lit.model, Fixed(out)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # self.log outside a Trainer
        kept = masks != 255
        expected = sum(
            weight * nn.functional.cross_entropy(out[name].movedim(1, -1)[kept], masks[kept])
            for name, weight in (("out", 1.0), ("aux", 0.5))
        )
        torch.testing.assert_close(lit._shared_step(data[0], "test"), expected)
        computed = lit.test_metrics.compute()
        predicted, truth = out["out"].argmax(1)[kept], masks[kept]
        assert computed["test_accuracy"] == (predicted == truth).float().mean()  # micro
        ious = [
            ((predicted == c) & (truth == c)).sum() / ((predicted == c) | (truth == c)).sum()
            for c in range(3)
        ]
        torch.testing.assert_close(computed["test_jaccard"], sum(ious) / 3)  # macro
    lit.model = real

    run = trainer(max_steps=2, limit_val_batches=1, num_sanity_val_steps=0, default_root_dir=tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run.fit(lit, loader, loader)
    logged = run.callback_metrics
    assert {"train_loss", "val_loss", "val_out_loss", "val_aux_loss", "val_accuracy", "val_jaccard"} <= set(
        logged
    )
    assert torch.allclose(logged["val_loss"], logged["val_out_loss"] + 0.5 * logged["val_aux_loss"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        predicted = run.predict(lit, torch.utils.data.DataLoader([images], batch_size=None))
    assert predicted[0]["out"].shape == (2, 3, 48, 48)
    path = tmp_path / "seg.ckpt"
    run.save_checkpoint(path)
    (torch_home / "hub" / "checkpoints").rename(torch_home / "gone")  # restoring needs no weights
    restored = module.DeepLabV3ThreeClassModule.load_from_checkpoint(path).eval()
    lit.eval()
    with torch.no_grad():
        torch.testing.assert_close(restored(images)["out"], lit(images)["out"])


@pytest.mark.parametrize("builder", SEGMENTATION)
def test_every_segmentation_head_is_torchvisions_own_for_n_classes(builder, tmp_path):
    """Every segmentation builder with `weights: DEFAULT, head: replace, num_classes: 5`: the
    model built with and without weights equals the builder's own 5-class model (modules,
    state-dict keys and shapes), and the header counts the replaced layers as new."""
    aux = "aux_loss" in torchvision.models.get_model_builder(builder).__code__.co_varnames
    body = "weights: DEFAULT\n    head: replace\n    num_classes: 5" + ("\n    aux: true" if aux else "")
    result, module = compile_and_load(seg_spec(builder, body), tmp_path)
    extra = {"aux_loss": True} if aux else {}
    reference = surgery.build_meta(
        lambda: torchvision.models.get_model(
            builder, weights=None, weights_backbone=None, num_classes=5, **extra
        )
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pretrained = build_as_with_weights(lambda: module.Net()).net
        plain = surgery.build_meta(lambda: module.Net(pretrained=False)).net
    for model in (pretrained, plain):
        assert [type(m) for m in model.modules()] == [type(m) for m in reference.modules()]
        assert surgery.state_shapes(model) == surgery.state_shapes(reference)
    shaped = result.shaped.nodes["net"].built
    new = sum(p.numel() for path in shaped.new_layers for p in reference.get_submodule(path).parameters())
    assert len(shaped.new_layers) == (3 if aux else 2 if builder.startswith("lraspp") else 1)
    total = sum(p.numel() for p in reference.parameters())
    assert f"Parameters: {total:,} ({total - new:,} pretrained, {new:,} new;" in result.source


def test_aux_false_drops_the_aux_classifier_with_weights(tmp_path):
    """torchvision always builds the aux classifier for the weights: `aux: false` (the default)
    removes it, with and without weights, so the node has the one port `out`."""
    body = "weights: DEFAULT\n    head: replace\n    num_classes: 2"
    result, module = compile_and_load(seg_spec("deeplabv3_mobilenet_v3_large", body), tmp_path)
    assert "self.net.aux_classifier = None" in result.source
    plain = module.Net(pretrained=False).eval()
    assert plain.net.aux_classifier is None
    with torch.no_grad():
        assert plain(torch.rand(1, 3, 64, 64)).shape == (1, 2, 64, 64)  # the one output, `out`
    assert not any(k.startswith("net.aux_classifier") for k in plain.state_dict())


def test_segmentation_mechanism_trains_without_aux(tmp_path):
    """lraspp (no aux classifier), weights: null: a plain per-pixel multiclass step."""
    body = "weights: null\n    head: replace\n    num_classes: 4"
    _, module = compile_and_load(seg_spec("lraspp_mobilenet_v3_large", body), tmp_path)
    g = torch.Generator().manual_seed(0)
    data = [(torch.rand(2, 3, 64, 64, generator=g), torch.randint(0, 4, (2, 64, 64), generator=g))]
    run = trainer(max_steps=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run.fit(module.NetModule(), torch.utils.data.DataLoader(data * 2, batch_size=None))
    assert torch.isfinite(run.callback_metrics["train_loss"])


def test_an_aux_output_of_layers_of_its_own_is_trained(tmp_path):
    """A model of one's own with its aux output first: the main output is `out`, and the layers
    that feed only `aux` are trained too (they were frozen as feeding no trained output)."""
    text = (
        "nncompile: 1\nname: Net\ninputs:\n  image: [3, 16, 16]\nnodes:\n"
        "  conv: {op: Conv2d, out_channels: 3, kernel_size: 3, padding: 1}\n"
        "  aux_conv: {op: Conv2d, in: image, out_channels: 3, kernel_size: 1}\n"
        "outputs: {aux: aux_conv, out: conv}\ntask: {kind: segmentation}\n"
    )
    result, module = compile_and_load(text, tmp_path)
    assert "requires_grad_(False)" not in result.source
    assert "Parameters: 96 (0 pretrained, 96 new; 0 frozen, 96 trainable)." in result.source
    lit = module.NetModule()
    g = torch.Generator().manual_seed(0)
    batch = (torch.rand(2, 3, 16, 16, generator=g), torch.randint(0, 3, (2, 16, 16), generator=g))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # self.log outside a Trainer
        lit._shared_step(batch, "train").backward()
    assert all(p.grad is not None for p in lit.parameters())
    assert "per-pixel classes of `out`" in result.source


def test_segmentation_errors(tmp_path):
    body = "weights: null\n    head: replace\n    num_classes: 4\n    aux: true"
    with pytest.raises(NncompileError, match="has no auxiliary classifier"):
        compile_text(seg_spec("lraspp_mobilenet_v3_large", body), tmp_path)
    with pytest.raises(NncompileError, match="a whole segmentation model keeps its head or replaces it"):
        compile_text(seg_spec("fcn_resnet50", "head: remove"), tmp_path)
    text = seg_spec(
        "fcn_resnet50", "head: replace\n    num_classes: 2", task="{kind: multiclass, aux_weight: 0.3}"
    )
    with pytest.raises(NncompileError, match="`aux_weight` does not apply"):
        compile_text(text, tmp_path)
    text = (
        "nncompile: 1\nname: Net\ninputs:\n  image: [3, 16, 16]\nnodes:\n"
        "  conv: {op: Conv2d, out_channels: 3, kernel_size: 3, padding: 1}\n"
        "  aux_conv: {op: Conv2d, in: conv, out_channels: 3, kernel_size: 2, stride: 2}\n"
        "outputs: {out: conv, aux: aux_conv}\ntask: {kind: segmentation}\n"
    )
    with pytest.raises(
        NncompileError, match=r"the aux output 'aux' is \(B, 3, 8, 8\) and 'out' \(B, 3, 16, 16\)"
    ):
        compile_text(text, tmp_path)


def test_aux_weight_and_a_whole_model_weights_file(tmp_path, monkeypatch):
    """`aux_weight: 0.25` weights the aux term; `weights:` a local file of the whole model loads
    into every layer but the new heads."""
    monkeypatch.chdir(tmp_path)
    builder = "deeplabv3_mobilenet_v3_large"
    torch.manual_seed(0)
    full = torchvision.models.get_model(builder, weights=None, weights_backbone=None, aux_loss=True)
    torch.save(full.state_dict(), tmp_path / "seg.pth")
    body = "weights: seg.pth\n    head: replace\n    num_classes: 3\n    aux: true"
    task = "{kind: segmentation, aux_weight: 0.25}"
    result, module = compile_and_load(seg_spec(builder, body, task=task), tmp_path)
    assert "loss = loss_out + self.hparams.aux_weight * loss_aux" in result.source
    assert "aux_weight: float = 0.25" in result.source
    model = module.Net()
    state = full.state_dict()
    new = ("classifier.4.", "aux_classifier.4.")
    loaded = model.net.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items() if not k.startswith(new))
    assert loaded["classifier.4.weight"].shape == (3, 256, 1, 1)
    assert list(loaded) == list(module.Net(pretrained=False).net.state_dict())


def test_a_segmentation_model_refuses_an_image_list(tmp_path):
    text = seg_spec("lraspp_mobilenet_v3_large", "weights: null").replace(
        "image: [3, 64, 64]", "image: {shape: [3, 64, 64], list: true}"
    )
    with pytest.raises(NncompileError, match="takes tensors, but 'image' is a list of B tensors"):
        compile_text(text, tmp_path)
