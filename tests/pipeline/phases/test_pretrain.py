"""The pretrain phase on a micro backbone: every weight trains, the saved backbone is what it trained, and the
hand-off to phase4 and phase1 (used when committed, refused when required but absent, stale when it changes)."""

import json

import numpy as np
import pytest
import torch
from rich.console import Console
from safetensors.torch import load_file

from streetvision.errors import ConfigError, MissingArtifactError
from streetvision.io import StepManifest
from streetvision.models.backbones import build_builtin, load_backbone
from streetvision.pipeline.artifacts import ArtifactSchema
from streetvision.pipeline.runner import run_pipeline

QUIET = Console(quiet=True)
MICRO = ("model=dinov2_micro", "data.synthetic.n=48", "data.unlabeled.n=32", "pretrain.images.n=48",
         "pretrain.batch_size=16", "phase4.batch_size=16", "training.batch_size=8", "training.progress_bar=false")


def run(make_cfg, *overrides, run_id="t"):
    cfg = make_cfg(*MICRO, *overrides, run_id=run_id)
    outcomes = run_pipeline(cfg, QUIET)
    return ArtifactSchema.from_config(cfg), [(o.name, o.status) for o in outcomes]


def metrics(art, phase):
    return json.loads(art.metrics_json(phase).read_text())


@pytest.mark.parametrize("objective", ["dino", "masked"])
def test_every_weight_trains_and_the_loss_goes_down(make_cfg, objective):
    art, ran = run(make_cfg, "pipeline.phases=[pretrain]", f"pretrain.objective={objective}", "pretrain.epochs=6",
                   "pretrain.images.n=96")
    assert ran == [("pretrain", "ran")]  # no splits: unlabelled synthetic images need none
    m = metrics(art, "pretrain")
    curve = m["loss_curve"]
    assert m["objective"] == objective and m["steps"] == 6 * 6 and m["num_images"] == 96
    assert np.mean(curve[-4:]) < np.mean(curve[:4]) - 0.05, curve
    start = build_builtin("dinov2-micro", seed=0).state_dict()
    trained = load_backbone(str(art.pretrain_backbone_dir)).state_dict()
    frozen = [k for k, v in start.items() if k != "embeddings.mask_token" and torch.equal(v, trained[k])]
    assert not frozen, frozen  # no adapters: every weight moved (the mask token only trains with `masked`)


def test_max_steps_is_the_budget_whatever_the_epochs(make_cfg):
    art, _ = run(make_cfg, "pipeline.phases=[pretrain,phase4]", "pretrain.epochs=1", "pretrain.max_steps=5",
                 "phase4.epochs=1", "phase4.max_steps=4")  # 48 images / 16 = 3 steps per epoch
    assert (metrics(art, "pretrain")["steps"], metrics(art, "phase4")["steps"]) == (5, 4)


def test_images_come_from_a_folder_and_from_its_own_synthetic_stream(make_cfg, tmp_path):
    from streetvision.data.synthetic import write_dataset

    root = tmp_path / "unlabelled"
    write_dataset(root, n=20, domain="target", labeled=False)
    art, _ = run(make_cfg, "pipeline.phases=[pretrain]", "pretrain.max_steps=1", "pretrain.images.source=folder",
                 f"pretrain.images.root={root}")
    assert metrics(art, "pretrain")["num_images"] == 20
    art, _ = run(make_cfg, "pipeline.phases=[pretrain,phase4]", "pretrain.max_steps=1", "phase4.max_steps=1",
                 run_id="synthetic")
    ours = sorted(p.name for p in art.unlabeled_synthetic_dir("pretrain").glob("*.png"))
    theirs = sorted(p.name for p in art.unlabeled_synthetic_dir("phase4").glob("*.png"))
    assert len(ours) == 48 and len(theirs) == 32 and not set(ours) & set(theirs)  # different seeds and domains


def test_folder_without_root_is_a_config_error(make_cfg):
    with pytest.raises(ConfigError, match="pretrain.images.source=folder needs pretrain.images.root"):
        run(make_cfg, "pipeline.phases=[pretrain]", "pretrain.images.source=folder")


def test_phase4_then_phase1_start_from_the_committed_pretrain_backbone(make_cfg):
    art, ran = run(make_cfg, "pipeline.phases=[pretrain,phase4,phase1]", "pretrain.max_steps=2",
                   "phase4.max_steps=1", "training.epochs=1")
    assert [name for name, _ in ran] == ["splits", "pretrain", "phase4", "phase1"]
    assert metrics(art, "phase4")["init"] == "pretrain/backbone"
    assert metrics(art, "phase1")["backbone_source"] == "phase4_explora/backbone"
    p4 = StepManifest.load(art.manifest("phase4"))
    assert "pretrain/backbone/model.safetensors" in {r.path for r in p4.inputs}

    # without phase4, phase1 starts from the pretrain backbone; a changed pretrain reruns phase1
    art, _ = run(make_cfg, "pipeline.phases=[pretrain,phase1]", "pretrain.max_steps=2", "training.epochs=1",
                 run_id="p1")
    assert metrics(art, "phase1")["backbone_source"] == "pretrain/backbone"
    before = load_file(art.phase1_model_dir / "head.safetensors")
    _, ran = run(make_cfg, "pipeline.phases=[pretrain,phase1]", "pretrain.max_steps=3", "training.epochs=1",
                 run_id="p1")
    assert [(n, s) for n, s in ran if n != "splits"] == [("pretrain", "ran"), ("phase1", "ran")]
    after = load_file(art.phase1_model_dir / "head.safetensors")
    assert not torch.equal(before["weight"] if "weight" in before else next(iter(before.values())),
                           after["weight"] if "weight" in after else next(iter(after.values())))


def test_init_from_pretrain_false_ignores_it_and_true_requires_it(make_cfg):
    art, _ = run(make_cfg, "pipeline.phases=[pretrain,phase4]", "pretrain.max_steps=1", "phase4.max_steps=1",
                 "model.init_from_pretrain=false")
    assert metrics(art, "phase4")["init"] == "dinov2-micro"
    with pytest.raises(MissingArtifactError, match="init_from_pretrain=true"):
        run(make_cfg, "pipeline.phases=[phase4]", "phase4.max_steps=1", "model.init_from_pretrain=true",
            run_id="none")
