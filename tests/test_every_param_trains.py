"""Rules that hold for every spec in specs/ (issue 21), each checked on one training step of the
generated LightningModule (random weights, 2 samples at the spec's input sizes):

- every trainable parameter gets a gradient: none has requires_grad=True and grad None after the
  backward pass, which is what DDP needs with find_unused_parameters=False. A part gradual
  unfreezing holds back is no exception: it is counted as trainable, gets its gradient (DDP
  reduces it) and is held still by its optimizer group, so the step leaves it bit-identical;
- the header, the summary and the optimizer agree on what trains: the same count, every
  trainable parameter in the optimizer exactly once and no other, and the summary's parameter
  groups are the ones param_groups() hands the optimizer."""

import functools
import inspect
import re
import warnings

import pytest
import pytorch_lightning as pl
import torch
from conftest import ROOT, compiled_spec, spec_params
from load_generated import load_source
from run_generated import detection_sample, dummy_inputs, dummy_target, small_detectors, with_training_step
from task_helpers import trainer as quiet_trainer

BATCH = 2


class OneStep(pl.Callback):
    """What one training step shows, kept as names and numbers (not the module, so the cache of
    every spec's step stays small): after the backward pass, the trainable parameters without a
    gradient, the optimizer's parameters, those its groups hold back for gradual unfreezing and
    those the unfreezing schedule says must be held; after the step, which held ones moved."""

    def on_after_backward(self, trainer, pl_module):
        named = list(pl_module.named_parameters())
        self.numel = {n: p.numel() for n, p in named}
        self.trainable = {n for n, p in named if p.requires_grad}
        self.without_grad = sorted(n for n, p in named if p.requires_grad and p.grad is None)
        name_of = {id(p): n for n, p in named}
        groups = trainer.optimizers[0].param_groups
        self.optimized = [name_of.get(id(p), "?") for g in groups for p in g["params"]]
        unfreezing = [c for c in trainer.callbacks if type(c).__name__ == "GradualUnfreezing"]
        unfrozen = unfreezing[0].fractions if unfreezing else {}  # part -> how far it is unfrozen
        held = [p for g in groups if unfrozen.get(g.get("unfreeze"), 1.0) == 0.0 for p in g["params"]]
        self._held = {name_of[id(p)]: (p, p.detach().clone()) for p in held}
        schedule = unfreezing[0].schedule if unfreezing else {}
        self.to_hold = {  # the parts whose epoch or step is still ahead at step 0
            name_of[id(p)]
            for part, (_, start, _) in schedule.items()
            if start > 0
            for p in pl_module.model.get_submodule(part).parameters()
            if p.requires_grad
        }

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.held = sorted(self._held)
        self.held_moved = sorted(n for n, (p, before) in self._held.items() if not torch.equal(p, before))
        del self._held
        if hasattr(pl_module.model, "param_groups"):  # what it hands the optimizer
            built = pl_module.model.param_groups(**param_group_args(pl_module))
            self.groups = [  # (size, lr, whether weight decay applies)
                (sum(p.numel() for p in g["params"]), g["lr"], g.get("weight_decay") != 0.0) for g in built
            ]


def param_group_args(lightning) -> dict:
    """The arguments configure_optimizers passes param_groups(): lr and each rate's hyperparameter."""
    names = inspect.signature(lightning.model.param_groups).parameters
    return {name: lightning.hparams[name] for name in names}


def few_regions(model) -> None:
    """A detector trains its heads on 512 sampled regions an image, from 2000 proposals: a few
    reach every parameter as well (the ground-truth boxes are always among them), much faster."""
    from torchvision.models.detection.roi_heads import RoIHeads
    from torchvision.models.detection.rpn import RegionProposalNetwork

    for module in model.modules():
        if isinstance(module, RoIHeads):
            module.fg_bg_sampler.batch_size_per_image = 16
        elif isinstance(module, RegionProposalNetwork):
            module._pre_nms_top_n = module._post_nms_top_n = {"training": 64, "testing": 64}


@functools.cache
def stepped(spec_path, folder):
    """The compiled spec and what OneStep saw in one training step of its LightningModule."""
    result = compiled_spec(spec_path)
    module = load_source(result.source, folder)
    lightning_cls = getattr(module, f"{result.spec.name}Module")
    if result.spec.task.kind == "custom":
        lightning_cls = with_training_step(lightning_cls)
    kwargs = {"pretrained": False} if result.ir.model.pretrained else {}
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lightning = lightning_cls(**kwargs)
        small_detectors(lightning)
        few_regions(lightning)
        if result.spec.task.kind == "detection":
            batch = detection_sample(list(result.spec.inputs[0].shape))
        else:
            inputs = dummy_inputs({i.name: (list(i.shape), i.dtype) for i in result.spec.inputs}, BATCH)
            # the target is shaped from the predicted outputs (each with its batch dim first)
            preds = {
                name: torch.empty(BATCH, *info.shape[1:]) for name, info in result.shaped.outputs.items()
            }
            heads = {h.output or next(iter(preds)): h.kind for h in result.spec.task.heads}
            target = dummy_target(preds, heads, result.spec.task.kind, BATCH)
            batch = (next(iter(inputs.values())) if len(inputs) == 1 else inputs, target)
        # max_steps stops the epoch before its end: no validation, no per-epoch scheduler step
        loader = torch.utils.data.DataLoader([batch, batch], batch_size=None)
        step = OneStep()
        trainer = quiet_trainer(max_steps=1, callbacks=[step])
        trainer.fit(lightning, loader)
    assert trainer.global_step == 1
    return result, step


@pytest.fixture(scope="module")
def folder(tmp_path_factory, monkeypatch_module):
    return tmp_path_factory.mktemp("every_spec")


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(ROOT)  # spec paths (a Hugging Face folder) are read from the repository root
        patch.syspath_prepend(str(ROOT / "specs"))  # user layers live next to the specs
        yield patch


@pytest.mark.parametrize("spec", spec_params("every_param"))
def test_every_trainable_parameter_gets_a_gradient(spec, folder):
    result, step = stepped(spec, folder)
    assert step.trainable, "nothing trains"
    assert step.without_grad == [], f"trainable but never used in the loss: {step.without_grad}"
    # what gradual unfreezing holds back: trainable, with a gradient, and left where it was
    assert step.held == sorted(step.to_hold)
    assert step.held_moved == []
    assert bool(step.held) == ("Gradual unfreezing:" in result.source)


def header_counts(source: str) -> tuple[int, int]:
    """(all parameters, trainable ones) as the generated file's docstring states them."""
    found = re.search(r"^Parameters: ([\d,]+) \(.*; ([\d,]+) frozen, ([\d,]+) trainable\)\.$", source, re.M)
    total, frozen, trainable = (int(g.replace(",", "")) for g in found.groups())
    assert frozen + trainable == total
    return total, trainable


@pytest.mark.parametrize("spec", spec_params("every_param"))
def test_header_summary_and_optimizer_agree_on_what_trains(spec, folder):
    result, step = stepped(spec, folder)
    total = sum(step.numel.values())
    trainable = sum(step.numel[n] for n in step.trainable)
    summary = result.summary()
    assert header_counts(result.source) == (total, trainable)
    assert (summary.total_params, summary.trainable_params) == (total, trainable)
    assert sorted(step.optimized) == sorted(step.trainable)  # each trainable one once, no other
    if summary.groups:  # the summary's groups, in the order param_groups() builds them
        listed = [(g.trainable, pytest.approx(g.lr), g.decays) for g in summary.groups if g.trainable]
        assert step.groups == listed


@pytest.mark.parametrize("output", ["pooler_output", "cls", None, "hidden_states.1", "hidden_states.-1"])
def test_every_hugging_face_output_form_gives_every_trainable_parameter_a_gradient(output, folder):
    """specs/bert_text_classifier.yaml with each `output:` form a Hugging Face backbone takes (a
    sequence averaged over its tokens): what the model builds but the output does not use (the
    pooler, the layers above hidden state N) would never get a gradient."""
    text = (ROOT / "specs" / "bert_text_classifier.yaml").read_text()
    assert "    output: pooler_output\n" in text
    text = text.replace("    output: pooler_output\n", f"    output: {output}\n" if output else "")
    if output not in ("pooler_output", "cls"):  # (B, seq, hidden): one vector per sample
        text = text.replace("  dropout:", "  pool: {op: mean, dim: 1}\n  dropout:")
    path = folder / f"bert_{output}.yaml"
    path.write_text(text)
    _, step = stepped(path, folder)
    assert step.without_grad == [], f"trainable but never used in the loss: {step.without_grad}"
