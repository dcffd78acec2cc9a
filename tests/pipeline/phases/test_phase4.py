"""Phase 4 (ExPLoRA) on a micro backbone: objectives learn, no label is read, the merge is proven, and the hand-off
to phase1."""

import json
import sys

import numpy as np
import pytest
import torch
from rich.console import Console
from safetensors.torch import load_file, save_file

from streetvision.errors import ValidationFailure
from streetvision.io import StepManifest
from streetvision.pipeline.artifacts import ArtifactSchema
from streetvision.pipeline.phases import phase4 as phase4_mod
from streetvision.pipeline.runner import run_pipeline

QUIET = Console(quiet=True)
MICRO = ("model=dinov2_micro", "data.synthetic.n=48", "data.unlabeled.n=64", "phase4.batch_size=16",
         "training.batch_size=8", "training.progress_bar=false")


def run(make_cfg, *overrides, run_id="t"):
    cfg = make_cfg(*MICRO, *overrides, run_id=run_id)
    run_pipeline(cfg, QUIET)
    return ArtifactSchema.from_config(cfg)


def loss_curve(art):
    return json.loads(art.metrics_json("phase4").read_text())["loss_curve"]


@pytest.mark.parametrize("objective", ["dino", "masked"])
def test_objective_loss_goes_down(make_cfg, objective):
    art = run(make_cfg, "pipeline.phases=[phase4]", f"model.explora.objective={objective}", "phase4.epochs=6",
              "data.unlabeled.n=96")
    curve = loss_curve(art)
    assert np.mean(curve[-4:]) < np.mean(curve[:4]) - 0.05, curve


def test_labeled_mode_trains_on_train_split_and_loss_goes_down(make_cfg):
    run(make_cfg, "pipeline.phases=[splits]", "data.synthetic.n=64")
    art = run(make_cfg, "pipeline.phases=[phase4]", "data.synthetic.n=64", "model.explora.use_labeled_data=true",
              "phase4.epochs=8", "phase4.lr=3e-3")
    metrics = json.loads(art.metrics_json("phase4").read_text())
    assert metrics["labeled"] and metrics["num_images"] == len(
        [f for f in json.loads(art.splits_json.read_text())["files"] if f["split"] == "train"])
    curve = metrics["loss_curve"]
    assert np.mean(curve[-3:]) < np.mean(curve[:3]), curve


def test_labeled_mode_records_splits_and_a_changed_split_makes_it_stale(make_cfg):
    labeled = ("pipeline.phases=[phase4]", "model.explora.use_labeled_data=true", "phase4.max_steps=2")
    art = run(make_cfg, *labeled)  # the splits phase is added: labelled phase4 needs it
    manifest = StepManifest.load(art.manifest("phase4"))
    assert "splits.json" in {r.path for r in manifest.inputs}
    run(make_cfg, "pipeline.phases=[splits]", "data.split_seed=7")  # a different split of the same images
    assert [p.split(" (")[0] for p in manifest.verify(art.run_dir)] == ["input changed: splits.json"]
    cfg = make_cfg(*MICRO, *labeled, "data.split_seed=7")
    assert [(o.name, o.status) for o in run_pipeline(cfg, QUIET)] == [("phase4", "ran")]


def test_unsupervised_mode_never_reads_labels(make_cfg, tmp_path, monkeypatch):
    from streetvision.data.synthetic import write_dataset

    root = tmp_path / "target_images"
    write_dataset(root, n=32, domain="target")  # class folders + manifest.csv with labels: must stay unread
    opened: list[str] = []
    recording = [True]
    sys.addaudithook(lambda event, args: opened.append(str(args[0])) if recording[0] and event == "open"
                     and isinstance(args[0], str) and args[0].startswith(str(root)) else None)
    try:
        art = run(make_cfg, "pipeline.phases=[phase4]", "data.unlabeled.source=folder",
                  f"data.unlabeled.root={root}", "phase4.epochs=1")
    finally:
        recording[0] = False
    assert opened and all(p.endswith(".png") for p in opened), [p for p in opened if not p.endswith(".png")]
    assert not art.splits_json.exists()


def test_trainable_parameters_and_phase1_hand_off(make_cfg):
    art = run(make_cfg, "pipeline.phases=[phase4,phase1]", "phase4.epochs=1")
    metrics = json.loads(art.metrics_json("phase4").read_text())
    assert metrics["peft_validation_status"] == "PASS" and metrics["max_output_diff"] <= 1e-4
    assert 0 < metrics["trainable_percentage"] < 100
    assert (art.phase_dir("phase4") / "adapter" / "adapter_model.safetensors").is_file()
    inputs = [r.path for r in StepManifest.load(art.manifest("phase1")).inputs]
    assert "phase4_explora/backbone/model.safetensors" in inputs
    spec = json.loads((art.phase1_model_dir / "model.json").read_text())
    assert spec["backbone_source"].endswith("phase4_explora/backbone")


def test_sabotaged_merge_fails_validation_and_commits_nothing(make_cfg, monkeypatch):
    real_save = phase4_mod.save_merged

    def sabotaged(student, out_dir):
        merged = real_save(student, out_dir)
        weights = load_file(out_dir / "model.safetensors")
        key = next(k for k in sorted(weights) if "layer.0." in k and weights[k].ndim == 2)
        weights[key] = weights[key] + 0.05 * torch.randn_like(weights[key])
        save_file(weights, out_dir / "model.safetensors", metadata={"format": "pt"})
        return merged

    monkeypatch.setattr(phase4_mod, "save_merged", sabotaged)
    with pytest.raises(ValidationFailure, match="PEFT merge validation FAILED"):
        run(make_cfg, "pipeline.phases=[phase4]", "phase4.epochs=1")
    art = ArtifactSchema.from_config(make_cfg(*MICRO))
    assert not art.manifest("phase4").exists()
    monkeypatch.undo()
    art = run(make_cfg, "pipeline.phases=[phase1]", "training.epochs=1")  # the bad backbone is not picked up
    spec = json.loads((art.phase1_model_dir / "model.json").read_text())
    assert spec["backbone_source"] == "dinov2-micro"


def test_two_process_cpu_ddp(make_cfg):  # ~10 s: process spawn + gloo
    art = run(make_cfg, "pipeline.phases=[phase4]", "phase4.epochs=1", "hardware.devices=2",
              "hardware.accelerator=cpu", "model.explora.gather_embeddings=true")
    assert StepManifest.load(art.manifest("phase4")).verify(art.run_dir) == []
    assert json.loads(art.metrics_json("phase4").read_text())["peft_validation_status"] == "PASS"


def test_external_launcher_two_ranks_phase4_then_phase1(tmp_path):  # ~20 s: torchrun, 2 gloo ranks
    import subprocess

    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "streetvision.cli", "run", "pipeline.phases=[phase4,phase1]", *MICRO, "phase4.epochs=1",
           "hardware.devices=2", "hardware.accelerator=cpu", f"output_root={tmp_path}", "run_id=tr"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = tmp_path / "stage1_ultimate" / "runs" / "tr"
    metrics = json.loads((run_dir / "phase1" / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["strategy"] == "DDPStrategy"
    for phase_dir in ("phase4_explora", "phase1"):
        manifest = StepManifest.load(run_dir / phase_dir / "manifest.json")
        assert manifest.verify(run_dir) == []


def test_reduced_precision_trains_and_the_merge_is_still_proven_at_float32(make_cfg):
    art = run(make_cfg, "pipeline.phases=[phase4,phase1]", "phase4.epochs=1", "training.epochs=1",
              "hardware.precision=bf16-mixed")
    phase4_metrics = json.loads(art.metrics_json("phase4").read_text())
    assert phase4_metrics["precision"] == "bf16-mixed"
    assert phase4_metrics["merge_tolerance"] == 1e-4  # not loosened for reduced precision
    assert phase4_metrics["peft_validation_status"] == "PASS" and phase4_metrics["max_output_diff"] <= 1e-4
    phase1_metrics = json.loads(art.metrics_json("phase1").read_text())
    assert phase1_metrics["precision"] == "bf16-mixed" and phase1_metrics["compiled"] is False


def test_compiled_backbone_trains_in_phase4_and_phase1(make_cfg):
    from torch._dynamo.utils import counters

    before = counters["stats"]["unique_graphs"]
    art = run(make_cfg, "pipeline.phases=[phase4,phase1]", "phase4.epochs=1", "training.epochs=1",
              "model.finetune=lora", "hardware.compile=true", "hardware.compile_backend=aot_eager")
    assert counters["stats"]["unique_graphs"] > before  # dynamo captured the backbone's graphs
    for name in ("phase4", "phase1"):
        metrics = json.loads(art.metrics_json(name).read_text())
        assert metrics["compiled"] is True and metrics["compile_backend"] == "aot_eager"
    assert json.loads(art.metrics_json("phase4").read_text())["peft_validation_status"] == "PASS"
    assert StepManifest.load(art.manifest("phase1")).verify(art.run_dir) == []


def test_interrupted_phase4_resumes_and_ends_like_an_uninterrupted_run(make_cfg, monkeypatch):
    from safetensors.torch import load_file

    from streetvision.models import checkpoints

    args = ("pipeline.phases=[phase4]", "phase4.epochs=2", "data.unlabeled.n=32")
    whole = run(make_cfg, *args, run_id="whole")
    real = checkpoints.EpochCheckpoint.on_train_epoch_end

    def save_then_die(self, trainer, pl_module):
        real(self, trainer, pl_module)
        if trainer.current_epoch == 0:
            raise KeyboardInterrupt  # what a Ctrl-C or a SLURM preemption signal looks like to Python

    monkeypatch.setattr(checkpoints.EpochCheckpoint, "on_train_epoch_end", save_then_die)
    with pytest.raises((KeyboardInterrupt, SystemExit)):
        run(make_cfg, *args, run_id="cut")
    monkeypatch.undo()
    cut = run(make_cfg, *args, run_id="cut")
    metrics = json.loads(cut.metrics_json("phase4").read_text())
    assert metrics["resumed_from"] == "epoch-0000"
    assert metrics["loss_curve"] == loss_curve(whole)
    merged = [load_file(art.explora_backbone_dir / "model.safetensors") for art in (whole, cut)]
    assert all(torch.equal(merged[0][k], merged[1][k]) for k in merged[0])
