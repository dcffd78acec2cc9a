"""Phases 2 and 5 on top of a micro phase1 run."""

import json

import numpy as np
import pytest
from rich.console import Console

from streetvision.eval.logits import read_logits, write_logits
from streetvision.io import StepManifest
from streetvision.pipeline.artifacts import ArtifactSchema
from streetvision.pipeline.phases.phase5 import run_phase5
from streetvision.pipeline.registry import PhaseContext
from streetvision.pipeline.runner import run_pipeline

QUIET = Console(quiet=True)
MICRO = ("model=dinov2_micro", "data.synthetic.n=120", "training.batch_size=16", "training.progress_bar=false",
         "training.epochs=1")


@pytest.fixture
def trained(make_cfg):
    cfg = make_cfg(*MICRO, "pipeline.phases=[phase1,phase2,phase5]")
    outcomes = run_pipeline(cfg, QUIET)
    return make_cfg, ArtifactSchema.from_config(cfg), outcomes


def test_phase2_and_phase5_write_all_files(trained):
    _, art, outcomes = trained
    thresholds = json.loads(art.thresholds_json.read_text())
    assert thresholds["policy_type"] == "threshold" and thresholds["thresholds"]["n_thresholds"] == 5000
    assert {"metrics_at_best", "metrics_at_0.5", "sweep_csv", "class_names"} <= set(thresholds)
    assert art.threshold_sweep_csv.read_text().splitlines()[0] == "threshold,mcc,accuracy,fnr,fpr,reward"
    params = json.loads(art.scrcparams_json.read_text())
    assert params["policy_type"] == "scrc" and params["scrc_params"]["method"] == "temperature_scaling"
    assert params["scrc_params"]["temperature"] > 0
    calib = json.loads(art.calibration_metrics_json.read_text())
    assert {"pre_calibration", "post_calibration", "improvement", "test"} <= set(calib)
    assert len(calib["pre_calibration"]["bins"]) == 15
    for phase in ("phase2", "phase5"):
        assert StepManifest.load(art.manifest(phase)).verify(art.run_dir) == []
    summary = {o.name: o.summary for o in outcomes}
    assert {"T", "ECE val_calib", "threshold"} <= set(summary["phase5"])


def test_phase5_fit_reads_neither_val_select_nor_test(trained):
    make_cfg, art, _ = trained
    before = json.loads(art.scrcparams_json.read_text())["scrc_params"]["temperature"]
    rng = np.random.default_rng(0)
    for split in ("val_select", "test"):
        table = read_logits(art.logits_csv(split))
        write_logits(art.logits_csv(split), table.sample_ids, table.labels,
                     rng.normal(0, 50, table.logits.shape), ["no_roadwork", "roadwork"])
    # the runner would refuse (phase1's manifest no longer verifies), so call the phase function directly
    cfg = make_cfg(*MICRO, "pipeline.phases=[phase5]")
    run_phase5(PhaseContext(cfg=cfg, artifacts=art, console=QUIET))
    after = json.loads(art.scrcparams_json.read_text())["scrc_params"]
    assert after["temperature"] == before


def test_phase5_without_phase2_picks_threshold_on_val_calib_and_says_so(make_cfg):
    cfg = make_cfg(*MICRO, "pipeline.phases=[phase1,phase5]")
    run_pipeline(cfg, QUIET)
    params = json.loads(ArtifactSchema.from_config(cfg).scrcparams_json.read_text())["scrc_params"]
    assert params["threshold_source"].startswith("val_calib (phase2 did not run")
    assert params["decision_threshold_uncalibrated"] is None


def test_phase2_without_phase1_is_a_clear_error(make_cfg):
    from streetvision.errors import MissingArtifactError

    with pytest.raises(MissingArtifactError, match="'phase2' needs the outputs of 'phase1'"):
        run_pipeline(make_cfg(*MICRO, "pipeline.phases=[phase2]", run_id="fresh"), QUIET)
