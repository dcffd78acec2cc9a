"""models/ trains from small frozen settings dataclasses alone (no config object), and the phases build those
dataclasses from their config: the same values reach the same code (phase4's own grad_accum, phase1's frozen
epochs)."""

from __future__ import annotations

import csv
import inspect
from dataclasses import FrozenInstanceError, fields

import numpy as np
import pytest
import torch
from rich.console import Console
from torch.utils.data import DataLoader, TensorDataset

from streetvision.data.hf_source import HFSource, list_hf
from streetvision.models.backbones import build_builtin
from streetvision.models.classifier import ClassifierSpec, RoadworkClassifier, apply_finetune_mode
from streetvision.models.devices import DevicePlan
from streetvision.models.selfsup import SelfSupervisedModule, SelfSupervisedSettings
from streetvision.models.training import (
    ClassifierModule,
    TrainerSettings,
    TrainSettings,
    fit_classifier,
    make_trainer,
    optimizer_steps_per_epoch,
    predict_logits,
)

CPU = DevicePlan(accelerator="cpu", devices=1, num_nodes=1, strategy="auto", precision="32", compile=False,
                 compile_backend="inductor", requested_by="test")
TRAINER = TrainerSettings(grad_accum=1, gradient_clip=1.0, progress_bar=False)
TRAIN = TrainSettings(lr=1e-2, backbone_lr=1e-3, weight_decay=0.01, warmup_fraction=0.1, loss="ce", focal_gamma=2.0,
                      epochs=4, early_stopping_patience=0, trainer=TRAINER)
EXPLORA = SelfSupervisedSettings(lr=1e-3, weight_decay=0.04, warmup_fraction=0.0, ema_momentum=0.996, dino_out_dim=32,
                          n_global_crops=2, teacher_temp=0.04, student_temp=0.1, center_momentum=0.9, mask_ratio=0.5)


def separable(n: int, seed: int) -> TensorDataset:
    """56 px images whose class shifts their brightness: a signal the micro backbone picks up in a few epochs."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    return TensorDataset(torch.randn(n, 3, 56, 56, generator=g) * 0.5 + (y.float() * 2 - 1)[:, None, None, None], y)


def micro_classifier() -> RoadworkClassifier:
    spec = ClassifierSpec(class_names=["no_roadwork", "roadwork"])
    return apply_finetune_mode(RoadworkClassifier(build_builtin("dinov2-micro", seed=0), spec), "full")


def test_the_settings_are_frozen_and_no_models_or_data_entry_point_takes_a_config():
    with pytest.raises(FrozenInstanceError):
        TRAIN.lr = 1.0  # type: ignore[misc]
    for fn in (ClassifierModule.__init__, make_trainer, fit_classifier, SelfSupervisedModule.__init__, list_hf):
        hints = " ".join(str(p.annotation) for p in inspect.signature(fn).parameters.values())
        assert "Config" not in hints, (fn.__qualname__, hints)


def test_the_micro_classifier_trains_through_models_with_the_dataclasses_only(tmp_path):
    torch.manual_seed(0)
    model = micro_classifier()
    train = DataLoader(separable(32, 0), batch_size=8, shuffle=True)
    val = DataLoader(separable(16, 1), batch_size=16)
    before, _ = predict_logits(model, val)
    module = ClassifierModule(model.train(), TRAIN, total_steps=TRAIN.epochs * optimizer_steps_per_epoch(train, 1))
    optimizer = module.configure_optimizers()["optimizer"]  # the settings reach the optimizer: head, then backbone
    assert [g["initial_lr"] for g in optimizer.param_groups] == [TRAIN.lr, TRAIN.backbone_lr]
    assert {g["weight_decay"] for g in optimizer.param_groups} == {TRAIN.weight_decay}
    info = fit_classifier(module, train, val, CPU, TRAIN, tmp_path / "curve.csv", tmp_path)
    with open(tmp_path / "curve.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == TRAIN.epochs and 0 <= info["best_epoch"] < TRAIN.epochs  # no early stopping (patience 0)
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"]), rows
    after, _ = predict_logits(model, val)
    assert not np.allclose(before, after)


def test_make_trainer_hands_the_trainer_settings_to_lightning(tmp_path):
    trainer = make_trainer(CPU, TrainerSettings(grad_accum=3, gradient_clip=0.5, progress_bar=False), [], 2, tmp_path)
    assert (trainer.accumulate_grad_batches, trainer.gradient_clip_val, trainer.max_epochs) == (3, 0.5, 2)
    assert trainer.progress_bar_callback is None


def test_explora_module_trains_with_self_supervised_settings_only(tmp_path):
    torch.manual_seed(0)
    dino = SelfSupervisedModule(build_builtin("dinov2-micro", seed=0), "dino", EXPLORA, total_steps=4)
    assert dino.head.prototypes.shape[0] == dino.center.shape[1] == EXPLORA.dino_out_dim
    module = SelfSupervisedModule(build_builtin("dinov2-micro", seed=0).train(), "masked", EXPLORA, total_steps=4)
    start = {k: v.clone() for k, v in module.student.state_dict().items()}
    images = torch.randn(16, 3, 56, 56, generator=torch.Generator().manual_seed(0))
    trainer = make_trainer(CPU, TRAINER, [], 1, tmp_path, validate=False, max_steps=3)
    trainer.fit(module, train_dataloaders=DataLoader(images, batch_size=4))
    assert len(module.losses) == 3 and all(np.isfinite(module.losses))
    assert any(not torch.equal(start[k], v) for k, v in module.student.state_dict().items())


def test_hf_source_is_plain_arguments(tmp_path):
    datasets = pytest.importorskip("datasets")
    from PIL import Image

    path = tmp_path / "png.png"
    Image.new("RGB", (8, 8), (200, 10, 10)).save(path)
    datasets.Dataset.from_dict({"img": [str(path)] * 2, "y": [0, 1]}).cast_column("img", datasets.Image()) \
        .save_to_disk(str(tmp_path / "hf"))
    listing = list_hf(HFSource(path=str(tmp_path / "hf"), split=None, image_column="img", label_column="y"),
                      tmp_path / "cache", ["no_roadwork", "roadwork"])
    assert [s.label for s in listing.samples] == [0, 1] and all(s.path.is_file() for s in listing.samples)


def test_the_phases_build_the_settings_from_their_config(make_cfg):
    from streetvision.pipeline.phases.phase1 import train_settings
    from streetvision.pipeline.phases.pretrain import self_supervised_settings

    cfg = make_cfg("training.lr=0.123", "training.grad_accum=3", "training.loss=focal", "phase4.teacher_temp=0.07",
                   "pretrain.lr=0.0321")
    settings = train_settings(cfg.training)
    assert (settings.lr, settings.loss, settings.trainer.grad_accum) == (0.123, "focal", 3)
    for f in fields(TrainSettings):
        if f.name != "trainer":
            assert getattr(settings, f.name) == cfg.training[f.name], f.name
    for f in fields(TrainerSettings):
        assert getattr(settings.trainer, f.name) == cfg.training[f.name], f.name
    for node in (cfg.phase4, cfg.pretrain):  # both self-supervised phases, each from its own keys
        ssl = self_supervised_settings(node)
        for f in fields(SelfSupervisedSettings):
            assert getattr(ssl, f.name) == node[f.name], f.name
    assert self_supervised_settings(cfg.phase4).teacher_temp == 0.07
    assert self_supervised_settings(cfg.pretrain).lr == 0.0321


def test_phase4_trains_with_its_own_grad_accum_and_phase1_frozen_with_its_epochs(make_cfg, monkeypatch):
    from streetvision.pipeline.phases import phase1 as phase1_mod
    from streetvision.pipeline.phases import pretrain as pretrain_mod
    from streetvision.pipeline.runner import run_pipeline

    seen = {}

    def record(name, real):
        def wrapper(*args, **kwargs):
            seen[name] = args
            return real(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(pretrain_mod, "make_trainer", record("phase4", pretrain_mod.make_trainer))
    monkeypatch.setattr(phase1_mod, "fit_classifier", record("phase1", phase1_mod.fit_classifier))
    cfg = make_cfg("model=dinov2_micro", "data.synthetic.n=48", "data.unlabeled.n=16", "phase4.batch_size=8",
                   "training.batch_size=8", "training.progress_bar=false", "pipeline.phases=[phase4,phase1]",
                   "phase4.max_steps=1", "phase4.grad_accum=2", "training.grad_accum=3", "model.finetune=frozen",
                   "phase1.frozen_epochs=2", "phase1.score_splits=[test]")
    run_pipeline(cfg, Console(quiet=True))
    assert seen["phase4"][1] == TrainerSettings(grad_accum=2, gradient_clip=cfg.training.gradient_clip,
                                                progress_bar=False)
    frozen = seen["phase1"][4]
    assert frozen.epochs == 2 and frozen.trainer.grad_accum == 3 and frozen.lr == cfg.training.lr


def test_training_optimizer_steps_sets_whole_epochs_whatever_the_data_size(make_cfg):
    from streetvision.models.training import epochs_for_steps
    from streetvision.pipeline.phases.phase1 import epoch_budget

    assert [epochs_for_steps(300, n) for n in (60, 5, 7, 1000)] == [5, 60, 43, 1]  # at least 300 steps
    assert epoch_budget(make_cfg("training.epochs=7").training, 5) == 7  # 0 (default): the epochs decide
    assert epoch_budget(make_cfg("training.epochs=7", "training.optimizer_steps=300").training, 4) == 75
    assert epoch_budget(make_cfg("training=small_data").training, 60) == 5
