"""Phase 1 on a micro backbone and a few dozen synthetic images: each finetune mode, hub-id loading, the frozen
cache, and 2-process DDP."""

import json

import numpy as np
import pytest
from rich.console import Console
from transformers import AutoModel

from streetvision.eval.logits import read_logits
from streetvision.metrics.classification import binary_metrics, softmax_probs
from streetvision.io import StepManifest
from streetvision.models.backbones import build_builtin
from streetvision.pipeline.artifacts import ArtifactSchema
from streetvision.pipeline.runner import run_pipeline

QUIET = Console(quiet=True)
MICRO = ("model=dinov2_micro", "data.synthetic.n=48", "training.batch_size=8", "training.progress_bar=false",
         "pipeline.phases=[phase1]")


def run(make_cfg, *overrides, run_id="t"):
    cfg = make_cfg(*MICRO, *overrides, run_id=run_id)
    outcomes = run_pipeline(cfg, QUIET)
    return cfg, ArtifactSchema.from_config(cfg), outcomes


@pytest.mark.parametrize("mode", ["frozen", "lora", "full"])
def test_each_finetune_mode_writes_verified_outputs(make_cfg, mode):
    cfg, art, _ = run(make_cfg, f"model.finetune={mode}", "phase1.frozen_epochs=3")
    manifest = StepManifest.load(art.manifest("phase1"))
    assert manifest.verify(art.run_dir) == []
    paths = manifest.output_paths()
    assert "phase1/backbone/model.safetensors" in paths and "phase1/head.safetensors" in paths
    assert not any(p.endswith((".bin", ".pt", ".ckpt", ".pkl")) for p in paths)
    assert any(r.path == "splits.json" for r in manifest.inputs)
    metrics = json.loads(art.metrics_json("phase1").read_text())
    assert set(metrics["splits"]) == {"val_select", "val_calib", "test"}
    if mode != "frozen":  # what the fit's loaders did: workers (auto: this machine's cores less one), cache budget
        from streetvision.data.workers import loader_workers

        loading = metrics["data_loading"]
        assert loading["loader_workers"] == loader_workers(cfg.hardware) and loading["decode_cache_mb"] == 1024
        assert loading["decode_cache_mb_per_dataset_process"] == 1024 / 2 / max(1, loading["loader_workers"])
    for split in ("val_select", "val_calib", "test"):
        table = read_logits(art.logits_csv(split))
        assert table.logits.shape == (len(table.sample_ids), 2)
        recomputed = binary_metrics(table.labels, softmax_probs(table.logits))  # metrics.json is the CSV's
        assert metrics["splits"][split] == pytest.approx(recomputed)
    if mode == "lora":
        assert 0 < metrics["trainable_percentage"] < 50
        assert not any("lora" in k for k in AutoModel.from_pretrained(art.phase1_model_dir / "backbone")
                       .state_dict())  # adapters merged into plain weights


def test_logits_csv_rows_are_the_split_and_the_saved_models_outputs(micro_run):
    """Each logits CSV lists exactly its split of splits.json (ids and labels, in order; each label is also the
    class folder of the image), and its logits are what the saved model gives on those images."""
    import torch
    from PIL import Image

    from streetvision.data.splits import load_splits
    from streetvision.models.classifier import load_classifier, spec_preprocess

    art = ArtifactSchema(micro_run)
    splits = load_splits(art.splits_json)
    model = load_classifier(art.phase1_model_dir)
    pre = spec_preprocess(model.spec)
    for split in ("val_select", "val_calib", "test"):
        table, rows = read_logits(art.logits_csv(split)), splits.rows(split)
        assert table.sample_ids == [r["path"] for r in rows] and len(rows) > 0
        assert table.labels.tolist() == [r["label"] for r in rows]
        assert [splits.class_names[y] for y in table.labels] == [r["path"].split("/")[0] for r in rows]
        assert table.class_names == splits.class_names
        batch = torch.stack([pre.to_tensor(Image.open(splits.data_root / r["path"]).convert("RGB")) for r in rows])
        with torch.inference_mode():
            expected = model(batch).double().numpy()
        assert np.abs(table.logits - expected).max() < 1e-4


def test_local_save_pretrained_backbone_loads_through_hub_id_path(make_cfg, tmp_path):
    local = tmp_path / "my-backbone"
    build_builtin("dinov2-micro", seed=5).save_pretrained(local)
    _, art, _ = run(make_cfg, f"model.backbone={local}")
    spec = json.loads((art.phase1_model_dir / "model.json").read_text())
    assert spec["backbone_source"] == str(local)
    assert spec["preprocess"]["size"] == 56  # from the saved config, not hard-coded


def test_new_weights_in_a_local_backbone_directory_rerun_phase1(make_cfg, tmp_path):
    """The directory's files are recorded inputs: the same path with other weights is not 'up to date'."""
    local = tmp_path / "my-backbone"
    build_builtin("dinov2-micro", seed=5).save_pretrained(local)
    cfg, art, _ = run(make_cfg, f"model.backbone={local}")
    assert any(r.path.endswith("my-backbone/model.safetensors") for r in
               StepManifest.load(art.manifest("phase1")).inputs)
    assert [(o.name, o.status) for o in run_pipeline(cfg, QUIET)] == [("phase1", "up to date")]
    build_builtin("dinov2-micro", seed=6).save_pretrained(local)  # continued pre-training wrote new weights
    assert [(o.name, o.status) for o in run_pipeline(cfg, QUIET)] == [("phase1", "ran")]


def test_frozen_embedding_cache_is_reused_and_invalidated_by_a_new_backbone(make_cfg):
    args = ("model.finetune=frozen", "phase1.frozen_epochs=2")
    _, art, _ = run(make_cfg, *args, run_id="a")
    first = json.loads(art.metrics_json("phase1").read_text())["embedding_cache_hits"]
    _, art, _ = run(make_cfg, *args, run_id="b")
    second = json.loads(art.metrics_json("phase1").read_text())["embedding_cache_hits"]
    _, art, _ = run(make_cfg, *args, "seed=1", run_id="c")  # other random backbone weights
    third = json.loads(art.metrics_json("phase1").read_text())["embedding_cache_hits"]
    _, art, _ = run(make_cfg, *args, "model.pooling=cls_max", run_id="d")  # same weights, other embedding
    fourth = json.loads(art.metrics_json("phase1").read_text())["embedding_cache_hits"]
    assert first == {"train": False, "val_select": False}
    assert second == {"train": True, "val_select": True}
    assert third == {"train": False, "val_select": False}
    assert fourth == {"train": False, "val_select": False}
    assert StepManifest.load(art.manifest("phase1")).verify(art.run_dir) == []


def test_missing_phase4_backbone_is_a_clear_error(make_cfg):
    from streetvision.errors import MissingArtifactError

    with pytest.raises(MissingArtifactError, match="init_from_explora=true"):
        run(make_cfg, "model.init_from_explora=true")


@pytest.mark.parametrize("mode", ["lora"])
def test_two_process_cpu_ddp(make_cfg, mode):  # ~10 s: process spawn + gloo
    _, art, _ = run(make_cfg, f"model.finetune={mode}", "hardware.devices=2", "hardware.accelerator=cpu")
    metrics = json.loads(art.metrics_json("phase1").read_text())
    assert metrics["world_size"] == 2 and metrics["strategy"] == "DDPStrategy"
    assert StepManifest.load(art.manifest("phase1")).verify(art.run_dir) == []


# Full-batch training (28 train images: one batch of 28, or one batch of 14 per process), no augmentation, no
# dropout, unweighted loss: one process and two DDP processes then take the same optimizer steps on the same
# mean gradient, and may differ only by float summation order.
EQUIVALENT = ("model.finetune=full", "training.epochs=3", "training.early_stopping_patience=0",
              "training.class_weighted=false", "training.augment=none", "model.head_dropout=0")
DDP_LOGIT_TOLERANCE = 1e-3  # max |logit difference| on every scored image; float noise is ~1e-6


def test_two_process_cpu_ddp_reaches_the_metrics_of_one_process_with_the_same_global_batch(make_cfg):
    _, one, _ = run(make_cfg, *EQUIVALENT, "training.batch_size=28", run_id="one")
    _, two, _ = run(make_cfg, *EQUIVALENT, "training.batch_size=14", "hardware.devices=2",
                    "hardware.accelerator=cpu", run_id="two")
    m1, m2 = (json.loads(a.metrics_json("phase1").read_text()) for a in (one, two))
    assert (m1["world_size"], m2["world_size"], m2["strategy"]) == (1, 2, "DDPStrategy")
    assert m1["train_images"] == m2["train_images"] == 28
    for split in ("val_select", "val_calib", "test"):
        a, b = read_logits(one.logits_csv(split)), read_logits(two.logits_csv(split))
        assert a.sample_ids == b.sample_ids  # rank 0 scored the whole split, not its shard
        assert np.abs(a.logits - b.logits).max() < DDP_LOGIT_TOLERANCE, split
        for key in ("mcc", "accuracy", "tp", "fp", "tn", "fn"):
            assert m1["splits"][split][key] == pytest.approx(m2["splits"][split][key], abs=1e-9), (split, key)
    assert m1["best_epoch"] == m2["best_epoch"]


@pytest.mark.slow
def test_inductor_compiled_full_finetuning(make_cfg):  # ~60-90 s: inductor generates C++ for the micro model
    _, art, _ = run(make_cfg, "hardware.compile=true", "training.epochs=1")
    metrics = json.loads(art.metrics_json("phase1").read_text())
    assert metrics["compiled"] is True and metrics["compile_backend"] == "inductor"
    assert StepManifest.load(art.manifest("phase1")).verify(art.run_dir) == []


class Interrupt(Exception):
    """Stands in for a kill after an epoch's checkpoint was written."""


def interrupt_after_epoch(monkeypatch, epoch):
    from streetvision.models import checkpoints

    real = checkpoints.EpochCheckpoint.on_train_epoch_end

    def save_then_die(self, trainer, pl_module):
        real(self, trainer, pl_module)
        if trainer.current_epoch == epoch:
            raise Interrupt(f"killed after epoch {epoch}")

    monkeypatch.setattr(checkpoints.EpochCheckpoint, "on_train_epoch_end", save_then_die)


def outputs_of(art):
    metrics = json.loads(art.metrics_json("phase1").read_text())
    return (metrics["splits"], metrics["best_epoch"], art.training_curve_csv.read_text(),
            art.logits_csv("test").read_text())


RESUME = ("training.epochs=4", "training.early_stopping_patience=0", "training.augment=flip",
          "model.head_dropout=0.2")


def test_interrupted_phase1_resumes_from_the_last_epoch_and_ends_like_an_uninterrupted_run(make_cfg, monkeypatch):
    _, reference, _ = run(make_cfg, *RESUME, run_id="whole")
    interrupt_after_epoch(monkeypatch, 1)
    with pytest.raises(Interrupt):
        run(make_cfg, *RESUME, run_id="cut")
    monkeypatch.undo()
    _, art, _ = run(make_cfg, *RESUME, run_id="cut")
    metrics = json.loads(art.metrics_json("phase1").read_text())
    assert metrics["resumed_from"] == "epoch-0001"
    assert outputs_of(art) == outputs_of(reference)
    assert not art.checkpoint_dir("phase1").exists()  # only an unfinished phase keeps checkpoints


def test_a_corrupt_checkpoint_is_discarded_and_the_one_before_is_used(make_cfg, monkeypatch):
    _, reference, _ = run(make_cfg, *RESUME, run_id="whole")
    interrupt_after_epoch(monkeypatch, 2)
    with pytest.raises(Interrupt):
        run(make_cfg, *RESUME, run_id="cut")
    monkeypatch.undo()
    art = ArtifactSchema.from_config(make_cfg(*MICRO, run_id="cut"))
    assert sorted(p.name for p in art.checkpoint_dir("phase1").iterdir()) == ["epoch-0001", "epoch-0002"]
    weights = art.checkpoint_dir("phase1") / "epoch-0002" / "state_dict.safetensors"
    weights.write_bytes(weights.read_bytes()[:-64] + b"\0" * 64)
    _, art, _ = run(make_cfg, *RESUME, run_id="cut")
    assert json.loads(art.metrics_json("phase1").read_text())["resumed_from"] == "epoch-0001"
    assert outputs_of(art) == outputs_of(reference)


def test_a_checkpoint_from_another_config_is_refused_until_forced(make_cfg, monkeypatch):
    from streetvision.errors import ConfigError

    interrupt_after_epoch(monkeypatch, 0)
    with pytest.raises(Interrupt):
        run(make_cfg, *RESUME, run_id="cut")
    monkeypatch.undo()
    with pytest.raises(ConfigError, match=r"phase1 was interrupted after epoch 0 .* \(changed: config.training.lr\)"
                                          r"; refusing to resume") as exc:
        run(make_cfg, *RESUME, "training.lr=0.01", run_id="cut")
    assert "pipeline.force=true" in exc.value.fix
    _, art, _ = run(make_cfg, *RESUME, "training.lr=0.01", "pipeline.force=true", run_id="cut")
    assert json.loads(art.metrics_json("phase1").read_text())["resumed_from"] is None


def test_the_lr_schedule_counts_the_optimizer_steps_each_process_takes():
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from streetvision.models.training import optimizer_steps_per_epoch

    data = TensorDataset(torch.zeros(29, 1))
    loader, dropping = DataLoader(data, batch_size=7), DataLoader(data, batch_size=7, drop_last=True)
    assert optimizer_steps_per_epoch(loader, 1) == len(loader) == 5
    assert optimizer_steps_per_epoch(dropping, 1) == len(dropping) == 4
    assert optimizer_steps_per_epoch(loader, 2) == 3 and optimizer_steps_per_epoch(dropping, 2) == 2  # 15 each
    assert optimizer_steps_per_epoch(loader, 2, grad_accum=2) == 1
    assert optimizer_steps_per_epoch(loader, 64) == 1
