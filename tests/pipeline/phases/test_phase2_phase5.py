"""Phases 2 and 5 on top of a micro phase1 run."""

import json

import numpy as np
import pytest
from rich.console import Console

from streetvision.metrics.calibration import calibration_metrics, recalibrated_threshold
from streetvision.models.temperature import fit_temperature
from streetvision.eval.logits import read_logits, write_logits
from streetvision.metrics.classification import binary_metrics, softmax_probs
from streetvision.metrics.thresholds import select_threshold
from streetvision.io import StepManifest
from streetvision.pipeline.artifacts import ArtifactSchema
from streetvision.pipeline.phases.phase5 import run_phase5
from streetvision.pipeline.registry import PhaseContext
from streetvision.pipeline.runner import run_pipeline
from streetvision.validator.prior import prior_weights

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
    calib = json.loads(art.calibration_metrics_json.read_text())
    assert {"pre_calibration", "post_calibration", "improvement", "test"} <= set(calib)
    assert len(calib["pre_calibration"]["bins"]) == 15
    for phase in ("phase2", "phase5"):
        assert StepManifest.load(art.manifest(phase)).verify(art.run_dir) == []
    summary = {o.name: o.summary for o in outcomes}
    assert {"T", "ECE val_calib", "threshold"} <= set(summary["phase5"])


def test_phase2_and_phase5_numbers_are_what_their_definitions_give_on_phase1s_logits(micro_run):
    """Recompute each headline number from phase1's logits CSVs with the library functions, independently of
    the phases: the sweep's best threshold, the temperature, the recalibrated threshold, the calibration metrics."""
    art = ArtifactSchema(micro_run)
    val, calib, test = (read_logits(art.logits_csv(s)) for s in ("val_select", "val_calib", "test"))
    thresholds = json.loads(art.thresholds_json.read_text())
    best, _ = select_threshold(val.labels, softmax_probs(val.logits), "mcc", 5000, 0.05,
                               prior_weights(val.labels, 0.5))
    assert thresholds["thresholds"]["best"] == best
    assert thresholds["metrics_at_best"]["mcc"] == pytest.approx(
        binary_metrics(val.labels, softmax_probs(val.logits), best, prior_weights(val.labels, 0.5))["mcc"])
    params = json.loads(art.scrcparams_json.read_text())["scrc_params"]
    temperature = fit_temperature(calib.logits, calib.labels)
    assert params["temperature"] == temperature
    assert params["decision_threshold_uncalibrated"] == best
    assert params["decision_threshold"] == recalibrated_threshold(best, temperature)
    report = json.loads(art.calibration_metrics_json.read_text())
    for key in ("ece", "mce", "brier", "nll"):
        assert report["pre_calibration"][key] == pytest.approx(
            calibration_metrics(calib.labels, softmax_probs(calib.logits), 15)[key])
        assert report["post_calibration"][key] == pytest.approx(
            calibration_metrics(calib.labels, softmax_probs(calib.logits, temperature), 15)[key])
        assert report["test"]["post_calibration"][key] == pytest.approx(
            calibration_metrics(test.labels, softmax_probs(test.logits, temperature), 15)[key])


def test_phase5_decisions_at_the_recalibrated_threshold_are_phase2s_at_the_raw_threshold(micro_run):
    art = ArtifactSchema(micro_run)
    params = json.loads(art.scrcparams_json.read_text())["scrc_params"]
    raw, calibrated, temperature = (params["decision_threshold_uncalibrated"], params["decision_threshold"],
                                    params["temperature"])
    for split in ("val_select", "val_calib", "test"):
        logits = read_logits(art.logits_csv(split)).logits
        assert np.array_equal(softmax_probs(logits, temperature) >= calibrated, softmax_probs(logits) >= raw)


def test_phase5_keeps_phase2s_decisions_when_the_temperature_moves_the_threshold(make_cfg, monkeypatch):
    """Over-confident logits (T near 4) and a raw threshold of 0.8: many calibrated probabilities fall between
    the recalibrated threshold (about 0.59) and 0.8, so using the raw threshold on them would flip decisions."""

    cfg = make_cfg(*MICRO, "pipeline.phases=[phase5]", run_id="synthetic_logits")
    art = ArtifactSchema.from_config(cfg)
    rng = np.random.default_rng(0)
    tables = {}
    for split, n in (("val_calib", 2000), ("test", 400)):
        gap = rng.normal(0.5, 2.0, n)
        labels = (rng.random(n) < 1 / (1 + np.exp(-gap))).astype(int)
        logits = np.stack([np.zeros(n), 4 * gap], 1)
        write_logits(art.logits_csv(split), [f"img/{split}_{i}.png" for i in range(n)], labels, logits,
                     ["no_roadwork", "roadwork"])
        tables[split] = (labels, logits)
    raw = 0.8
    from streetvision.io import atomic_write_json

    atomic_write_json(art.thresholds_json, {"thresholds": {"best": raw}})
    result = run_phase5(PhaseContext(cfg=cfg, artifacts=art, console=QUIET, committed=frozenset({"phase2"})))
    params = json.loads(art.scrcparams_json.read_text())
    temperature, threshold = params["scrc_params"]["temperature"], params["scrc_params"]["decision_threshold"]
    assert temperature == pytest.approx(4.0, rel=0.2) and threshold < 0.7
    flipped = 0
    for split, (labels, logits) in tables.items():
        calibrated, uncalibrated = softmax_probs(logits, temperature), softmax_probs(logits)
        assert np.array_equal(calibrated >= threshold, uncalibrated >= raw)
        flipped += int(np.sum((calibrated >= threshold) != (calibrated >= raw)))
    assert flipped > 50  # the test can tell the two thresholds apart
    labels, logits = tables["test"]
    expected = binary_metrics(labels, softmax_probs(logits), raw)
    reported = params["metrics"]["test_at_threshold"]
    assert (reported["tp"], reported["fp"], reported["tn"], reported["fn"]) == (
        expected["tp"], expected["fp"], expected["tn"], expected["fn"])
    assert result.metrics["decision_threshold"] == threshold


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
