"""Phase 1 on a micro backbone and a few dozen synthetic images: each finetune mode, hub-id loading, the frozen
cache, and 2-process DDP."""

import json

import pytest
from rich.console import Console
from transformers import AutoModel

from streetvision.eval.logits import read_logits
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
    for split in ("val_select", "val_calib", "test"):
        table = read_logits(art.logits_csv(split))
        assert table.logits.shape == (len(table.sample_ids), 2)
    metrics = json.loads(art.metrics_json("phase1").read_text())
    assert set(metrics["splits"]) == {"val_select", "val_calib", "test"}
    assert metrics["splits"]["test"]["mcc"] is not None
    if mode == "lora":
        assert 0 < metrics["trainable_percentage"] < 50
        assert not any("lora" in k for k in AutoModel.from_pretrained(art.phase1_model_dir / "backbone")
                       .state_dict())  # adapters merged into plain weights


def test_local_save_pretrained_backbone_loads_through_hub_id_path(make_cfg, tmp_path):
    local = tmp_path / "my-backbone"
    build_builtin("dinov2-micro", seed=5).save_pretrained(local)
    _, art, _ = run(make_cfg, f"model.backbone={local}")
    spec = json.loads((art.phase1_model_dir / "model.json").read_text())
    assert spec["backbone_source"] == str(local)
    assert spec["preprocess"]["size"] == 56  # from the saved config, not hard-coded


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


@pytest.mark.parametrize("mode", ["full", "lora"])
def test_two_process_cpu_ddp(make_cfg, mode):  # ~10 s each: process spawn + gloo
    _, art, _ = run(make_cfg, f"model.finetune={mode}", "hardware.devices=2", "hardware.accelerator=cpu")
    metrics = json.loads(art.metrics_json("phase1").read_text())
    assert metrics["world_size"] == 2 and metrics["strategy"] == "DDPStrategy"
    assert StepManifest.load(art.manifest("phase1")).verify(art.run_dir) == []


@pytest.mark.slow
def test_inductor_compiled_full_finetuning(make_cfg):  # ~60-90 s: inductor generates C++ for the micro model
    _, art, _ = run(make_cfg, "hardware.compile=true", "training.epochs=1")
    metrics = json.loads(art.metrics_json("phase1").read_text())
    assert metrics["compiled"] is True and metrics["compile_backend"] == "inductor"
    assert StepManifest.load(art.manifest("phase1")).verify(art.run_dir) == []
