"""Whole torchvision detection models with new heads (`op: torchvision.detection.<builder>` with
`head: replace`): each class-dependent predictor rebuilt as the fine-tuning tutorial writes it,
the same model with and without weights, torchvision's freezing for the weights as the default,
the weight manifest, and `task: {kind: detection}` trained on synthetic boxes and masks,
validated with mAP, predicting, and restored from a checkpoint."""

import warnings
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import torchvision
from backbone_helpers import cache_weights
from load_generated import compile_and_load, compile_text
from nncompile import compile_spec
from nncompile.errors import NncompileError
from nncompile.ops.backbones import surgery
from nncompile.ops.backbones.torchvision_weights import build_as_with_weights
from nncompile.training.kinds.detection import LOSS_KEYS
from pytorch_lightning.callbacks import ModelCheckpoint
from task_helpers import trainer
from torchmetrics.detection import MeanAveragePrecision
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
from torchvision.models.detection.mask_rcnn import MaskRCNNPredictor

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "specs" / "maskrcnn_2class.yaml"
DETECTION = torchvision.models.list_models(module=torchvision.models.detection)


def det_spec(builder: str, body: str, task: str = "{kind: detection}", size: int = 64) -> str:
    return (
        "nncompile: 1\nname: Net\n"
        f"inputs:\n  images: {{shape: [3, {size}, {size}], list: true}}\n"
        f"nodes:\n  net:\n    op: torchvision.detection.{builder}\n    {body}\n"
        f"task: {task}\n"
    )


def tutorial_maskrcnn(num_classes: int):
    """The torchvision detection tutorial's model, run as written (on the meta device, the
    weights' download and loading skipped)."""

    def build():
        model = torchvision.models.detection.maskrcnn_resnet50_fpn(weights="DEFAULT")
        in_features = model.roi_heads.box_predictor.cls_score.in_features
        model.roi_heads.box_predictor = FastRCNNPredictor(in_features, num_classes)
        in_features_mask = model.roi_heads.mask_predictor.conv5_mask.in_channels
        hidden_layer = 256
        model.roi_heads.mask_predictor = MaskRCNNPredictor(in_features_mask, hidden_layer, num_classes)
        return model

    return build_as_with_weights(build)


def layout(model) -> list:
    return [(n, type(m).__name__, getattr(m, "eps", None)) for n, m in model.named_modules()]


def trainable(model) -> list[str]:
    return [n for n, p in model.named_parameters() if p.requires_grad]


def test_maskrcnn_spec_counts_equal_the_tutorial():
    """specs/maskrcnn_2class.yaml: the header's and `nncompile summary`'s total, trainable,
    pretrained and new parameters are the tutorial model's (torchvision freezes conv1 and
    layer1 for the weights: trainable_backbone_layers=3)."""
    compiled = compile_spec(SPEC)
    reference = tutorial_maskrcnn(2)
    total = sum(p.numel() for p in reference.parameters())
    grad = sum(p.numel() for p in reference.parameters() if p.requires_grad)
    heads = (reference.roi_heads.box_predictor, reference.roi_heads.mask_predictor)
    new = sum(p.numel() for m in heads for p in m.parameters())
    assert grad < total  # the tutorial model has frozen layers
    assert (
        f"Parameters: {total:,} ({total - new:,} pretrained, {new:,} new; {total - grad:,} frozen, {grad:,} trainable)."
        in compiled.source
    )
    summary = compiled.summary()
    assert (summary.total_params, summary.trainable_params, summary.pretrained_params) == (
        total,
        grad,
        total - new,
    )
    assert "self.detector.roi_heads.box_predictor = FastRCNNPredictor(" in compiled.source
    assert "in_channels=1024, num_classes=2" in compiled.source
    assert "in_channels=256, dim_reduced=256, num_classes=2" in compiled.source


def test_maskrcnn_spec_is_the_tutorial_model_with_and_without_weights(tmp_path):
    """`MaskRCNNTwoClass()` (torchvision's pretrained path, loading skipped) and
    `(pretrained=False)` hold the tutorial model's layers (FrozenBatchNorm2d, eps 0.0),
    state-dict keys and shapes, and trainable parameters."""
    _, module = compile_and_load(SPEC.read_text(), tmp_path)
    reference = tutorial_maskrcnn(2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pretrained = build_as_with_weights(lambda: module.MaskRCNNTwoClass()).detector
        plain = surgery.build_meta(lambda: module.MaskRCNNTwoClass(pretrained=False)).detector
    for model in (pretrained, plain):
        assert layout(model) == layout(reference)
        assert surgery.state_shapes(model) == surgery.state_shapes(reference)
        assert trainable(model) == trainable(reference)


def synthetic(g, h: int, w: int):
    """An image with two boxes of class 1 and their masks."""
    image = torch.rand(3, h, w, generator=g)
    boxes = torch.tensor([[4.0, 6.0, 30.0, 40.0], [20.0, 10.0, 60.0, 50.0]])
    masks = torch.zeros(2, h, w, dtype=torch.uint8)
    for mask, (x1, y1, x2, y2) in zip(masks, boxes.int().tolist(), strict=True):
        mask[y1:y2, x1:x2] = 1
    return image, {"boxes": boxes, "labels": torch.tensor([1, 1]), "masks": masks}


def loader(samples):
    return torch.utils.data.DataLoader(
        samples, batch_size=2, collate_fn=lambda b: tuple(zip(*b, strict=True))
    )


def small_images(detector) -> None:
    """The detector's own resizing at 64 pixels, to keep the CPU cost of the test low."""
    detector.transform.min_size, detector.transform.max_size = (64,), 64


class StepLosses(pl.Callback):
    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses.append(float(outputs["loss"]))


def test_maskrcnn_spec_trains_validates_predicts_and_restores(torch_home, tmp_path):
    """The tutorial spec with weights from torchvision's cache: 2 training steps on synthetic
    boxes and masks (the epoch's train_loss is the mean of the steps' losses and the sum of
    the loss dict's entries' epoch means, logged under docs/training.md's names, which a
    ModelCheckpoint monitors), mAP on validation equal to MeanAveragePrecision computed here,
    predictions, and the checkpoint, which restores without the weights."""
    torch.manual_seed(0)
    full = torchvision.models.detection.maskrcnn_resnet50_fpn(weights=None, weights_backbone=None)
    state = cache_weights(
        torch_home, torchvision.models.detection.MaskRCNN_ResNet50_FPN_Weights.DEFAULT, full
    )
    _, module = compile_and_load(SPEC.read_text(), tmp_path)
    # The spec's lr suits COCO weights: on these random ones (FrozenBatchNorm2d layers that do not
    # normalise) its second step leaves no prediction, and mAP and the restored predictions would
    # be compared on nothing.
    lit = module.MaskRCNNTwoClassModule(lr=1e-4)
    loaded = lit.model.detector.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items() if k in loaded and "predictor" not in k)
    small_images(lit.model.detector)
    g = torch.Generator().manual_seed(0)
    samples = [synthetic(g, 64, 72), synthetic(g, 70, 64), synthetic(g, 64, 64), synthetic(g, 66, 68)]
    steps = StepLosses()
    checkpoint = ModelCheckpoint(dirpath=tmp_path, monitor="train_loss_classifier")
    run = trainer(
        max_steps=2,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        callbacks=[steps, checkpoint],
        enable_checkpointing=True,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run.fit(lit, loader(samples), loader(samples[:2]))
    logged = run.callback_metrics
    parts = ["loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg"]
    assert len(steps.losses) == 2  # one epoch of two batches of two
    torch.testing.assert_close(float(logged["train_loss"]), sum(steps.losses) / 2, rtol=1e-5, atol=0)
    total = sum(logged[f"train_{p}"] for p in parts)
    torch.testing.assert_close(logged["train_loss"], total, rtol=1e-4, atol=0)
    assert checkpoint.best_model_score == logged["train_loss_classifier"]
    images, targets = tuple(zip(*samples[:2], strict=True))
    lit.eval()
    with torch.no_grad():
        predictions = lit.model(list(images))
    reference = MeanAveragePrecision(iou_type="bbox")
    reference.update(predictions, list(targets))
    expected = reference.compute()
    assert all(len(p["boxes"]) for p in predictions) and expected["mar_100"] > 0  # not 0 against 0
    for key in ("map", "map_50", "mar_100"):
        torch.testing.assert_close(logged[f"val_{key}"], expected[key])
    assert not any(k.endswith("_per_class") or k == "val_classes" for k in logged)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        predicted = run.predict(lit, loader(samples[:2]))
    assert set(predicted[0][0]) == {"boxes", "labels", "scores", "masks"}
    assert len(predicted[0]) == 2
    (torch_home / "hub" / "checkpoints").rename(torch_home / "gone")  # restoring needs no weights
    restored = module.MaskRCNNTwoClassModule.load_from_checkpoint(checkpoint.best_model_path).eval()
    ours = lit.state_dict()
    assert all(torch.equal(v, ours[k]) for k, v in restored.state_dict().items())
    small_images(restored.model.detector)
    with torch.no_grad():
        again = restored.model(list(images))
    for a, b in zip(again, predictions, strict=True):
        torch.testing.assert_close(a["boxes"], b["boxes"])


def test_detection_mechanism_trains_with_a_mobilenet(tmp_path):
    """fasterrcnn_mobilenet_v3_large_320_fpn, weights: null, 3 classes: 2 steps and mAP."""
    body = "weights: null\n    head: replace\n    num_classes: 3"
    result, module = compile_and_load(det_spec("fasterrcnn_mobilenet_v3_large_320_fpn", body), tmp_path)
    assert "requires_grad_(False)" not in result.source  # nothing frozen without weights
    lit = module.NetModule()
    small_images(lit.model.net)
    g = torch.Generator().manual_seed(1)
    samples = [synthetic(g, 64, 64) for _ in range(4)]
    for _, target in samples:
        del target["masks"]
        target["labels"] = torch.tensor([1, 2])
    run = trainer(max_steps=2, limit_val_batches=1, num_sanity_val_steps=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run.fit(lit, loader(samples), loader(samples[:2]))
    assert torch.isfinite(run.callback_metrics["train_loss"])
    assert "val_map" in run.callback_metrics


def test_every_detection_model_has_its_loss_names():
    """Each builder's model class (built on the meta device) has its loss dict's names."""
    classes = {
        type(surgery.build_meta(lambda b=b: torchvision.models.get_model(b, weights_backbone=None))).__name__
        for b in DETECTION
    }
    assert classes == set(LOSS_KEYS)


# The smallest builder of each model class that the tests above do not train.
ONE_PER_CLASS = [
    "keypointrcnn_resnet50_fpn",
    "retinanet_resnet50_fpn",
    "fcos_resnet50_fpn",
    "ssdlite320_mobilenet_v3_large",
]


@pytest.mark.parametrize("builder", ONE_PER_CLASS)
def test_each_loss_entry_has_its_epoch_mean(builder, tmp_path):
    """A training step of the generated module logs each entry of the model's loss dict as the
    epoch mean `train_<name>`, and the compiler knows each entry (a scheduler may watch it)."""
    body = "weights: null\n    head: replace\n    num_classes: 3"
    _, module = compile_and_load(det_spec(builder, body), tmp_path)
    lit = module.NetModule()
    small_images(lit.model.net)
    if hasattr(lit.model.net, "roi_heads"):  # fewer boxes through the keypoint head: faster
        lit.model.net.roi_heads.fg_bg_sampler.batch_size_per_image = 8
    seen = {}
    forward = lit.model.forward

    def recording(*args):
        losses = forward(*args)
        seen.update(losses)
        return losses

    lit.model.forward = recording
    g = torch.Generator().manual_seed(0)
    samples = [synthetic(g, 64, 64) for _ in range(2)]
    for _, target in samples:
        target["keypoints"] = torch.rand(2, 17, 3, generator=g) * 30
    logged = []  # the names the step hands Lightning's epoch means, once each
    lit.log = lambda name, *a, **kw: logged.append(name)
    lit.training_step(next(iter(loader(samples))), 0)
    means = sorted(name for name in logged if name != "train_loss_step")
    assert means == sorted(f"train_{key}" for key in ("loss", *seen))
    # the names a scheduler may monitor are the ones logged
    assert set(LOSS_KEYS[type(lit.model.net).__name__]) == set(seen)


def test_a_scheduler_may_watch_a_loss_entry(tmp_path):
    body = "weights: null\n    head: replace\n    num_classes: 3"
    task = "{kind: detection, scheduler: {name: ReduceLROnPlateau, monitor: train_loss_objectness}}"
    result = compile_text(det_spec("fasterrcnn_mobilenet_v3_large_320_fpn", body, task), tmp_path)
    assert 'monitor": "train_loss_objectness"' in result.source


@pytest.mark.parametrize("builder", DETECTION)
def test_every_detection_head_is_torchvisions_own_for_n_classes(builder, tmp_path):
    """Every detection builder with `weights: DEFAULT, head: replace, num_classes: 3`: each new
    head equals the builder's own 3-class one, the model is the same with and without weights
    (layers, eps, state-dict keys and shapes), it trains what torchvision trains for the weights,
    and the header counts the new heads as new."""
    body = "weights: DEFAULT\n    head: replace\n    num_classes: 3"
    result, module = compile_and_load(det_spec(builder, body), tmp_path)
    built = result.shaped.nodes["net"].built
    own = surgery.build_meta(
        lambda: torchvision.models.get_model(builder, weights=None, weights_backbone=None, num_classes=3)
    )
    trained = build_as_with_weights(lambda: torchvision.models.get_model(builder, weights="DEFAULT"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pretrained = build_as_with_weights(lambda: module.Net()).net
        plain = surgery.build_meta(lambda: module.Net(pretrained=False)).net
    assert built.new_layers
    for path in built.new_layers:
        assert layout(plain.get_submodule(path)) == layout(own.get_submodule(path))
        assert surgery.state_shapes(plain.get_submodule(path)) == surgery.state_shapes(
            own.get_submodule(path)
        )
    assert layout(pretrained) == layout(plain)
    assert surgery.state_shapes(pretrained) == surgery.state_shapes(plain)
    assert trainable(pretrained) == trainable(plain) == trainable(trained)
    total = sum(p.numel() for p in plain.parameters())
    new = sum(p.numel() for path in built.new_layers for p in plain.get_submodule(path).parameters())
    grad = sum(p.numel() for p in plain.parameters() if p.requires_grad)
    assert (
        f"Parameters: {total:,} ({total - new:,} pretrained, {new:,} new; {total - grad:,} frozen, {grad:,} trainable)."
        in result.source
    )


def test_keypoints_and_explicit_freezing(tmp_path):
    """keypointrcnn with `num_keypoints`: its keypoint predictor is rebuilt too; `trainable:`
    replaces torchvision's default freezing."""
    body = "weights: DEFAULT\n    head: replace\n    num_classes: 3\n    num_keypoints: 5\n    trainable: [roi_heads]"
    result, module = compile_and_load(det_spec("keypointrcnn_resnet50_fpn", body), tmp_path)
    assert "keypoint_predictor = KeypointRCNNPredictor(" in result.source
    assert "in_channels=512, num_keypoints=5" in result.source
    plain = surgery.build_meta(lambda: module.Net(pretrained=False)).net
    assert plain.roi_heads.keypoint_predictor.kps_score_lowres.out_channels == 5
    assert all(n.startswith("roi_heads.") for n in trainable(plain))


def test_retinanet_v2_head_keeps_its_group_norm(tmp_path):
    body = "weights: null\n    head: replace\n    num_classes: 4"
    result, _ = compile_and_load(det_spec("retinanet_resnet50_fpn_v2", body), tmp_path)
    assert "norm_layer=functools.partial(nn.GroupNorm, 32)" in result.source
    assert "import functools" in result.source


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            det_spec("fasterrcnn_mobilenet_v3_large_320_fpn", "weights: null").replace(
                "{shape: [3, 64, 64], list: true}", "[3, 64, 64]"
            ),
            "takes a list of images",
        ),
        (
            det_spec("fasterrcnn_mobilenet_v3_large_320_fpn", "weights: null", task="{kind: multiclass}"),
            "a multiclass task trains tensors",
        ),
        (
            det_spec("fasterrcnn_mobilenet_v3_large_320_fpn", "weights: null\n    num_keypoints: 3"),
            "`num_keypoints` applies to keypointrcnn",
        ),
        (
            det_spec(
                "fasterrcnn_mobilenet_v3_large_320_fpn",
                "weights: null",
                task="{kind: detection, loss: MSELoss}",
            ),
            "`loss` does not apply",
        ),
        (
            det_spec("fasterrcnn_mobilenet_v3_large_320_fpn", "weights: null").replace(
                "task:", "  pool: {op: Flatten}\ntask:"
            ),
            "Flatten takes tensors, but 'net' is a list of B dicts",
        ),
        (
            det_spec("fasterrcnn_mobilenet_v3_large_320_fpn", "weights: null").replace(
                "[3, 64, 64]", "[4, 64, 64]"
            ),
            "fails on its input",
        ),
    ],
)
def test_detection_errors(text, message, tmp_path):
    with pytest.raises(NncompileError, match=message):
        compile_text(text, tmp_path)


def test_a_list_input_feeds_only_a_detection_model(tmp_path):
    text = (
        "nncompile: 1\nname: Net\ninputs:\n  images: {shape: [3, 32, 32], list: true}\n"
        "nodes:\n  conv: {op: Conv2d, out_channels: 4, kernel_size: 3}\ntask: {kind: regression}\n"
    )
    with pytest.raises(
        NncompileError, match=r"Conv2d takes tensors, but 'images' is a list of B tensors \(3, 32, 32\)"
    ):
        compile_text(text, tmp_path)
