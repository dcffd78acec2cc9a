"""Class-wise conformal risk control (metrics/crc.py, phase5.policy=crc_classwise): the guarantee holds
empirically, infeasible alphas are refused with a clear paragraph, and a micro run carries the policy through
phase5, the bundle, the Predictor and the evaluation report."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from rich.console import Console

from streetvision.errors import ConfigError
from streetvision.metrics.crc import classwise_report, classwise_thresholds, crc_accepted, prediction_sets
from streetvision.metrics.policy import SCRC, Policy

NAMES = ["no_roadwork", "roadwork"]


def synthetic(rng, n):
    """Overlapping classes (logit gap ~ N(+-1, 1.5)), 30 % roadwork: misses are common without the policy."""
    y = (rng.random(n) < 0.3).astype(int)
    logit = rng.normal(np.where(y == 1, 1.0, -1.0), 1.5)
    return 1 / (1 + np.exp(-logit)), y


@pytest.mark.parametrize("alpha", [0.05, 0.1, 0.2])
def test_mean_test_miss_rate_per_class_is_at_most_alpha_over_random_splits(alpha):
    rng = np.random.default_rng(0)
    misses = {0: [], 1: []}
    for _ in range(400):
        p_cal, y_cal = synthetic(rng, 200)
        p_test, y_test = synthetic(rng, 2000)
        t = classwise_thresholds(p_cal, y_cal, alpha, NAMES)
        sets = prediction_sets(p_test, t)
        for k in (0, 1):
            misses[k].append(float((~sets[y_test == k, k]).mean()))
    for k in (0, 1):
        mean = float(np.mean(misses[k]))
        # the guarantee: E[miss] <= alpha; the standard error of the mean over 400 splits is < 0.004
        assert mean <= alpha + 0.004, (k, mean)
        assert mean >= alpha - 0.05, (k, mean)  # and not vacuously conservative


def test_accepted_means_the_set_is_exactly_the_decided_class():
    t = np.array([0.6, 0.3])  # P(no) >= 0.6 and / or P(roadwork) >= 0.3
    probs = np.array([0.1, 0.35, 0.5, 0.9])
    decisions = (probs >= 0.5).astype(int)
    # sets: {no} | {no, roadwork} | {roadwork} | {roadwork}; the 2nd is ambiguous
    assert prediction_sets(probs, t).tolist() == [[True, False], [True, True], [False, True], [False, True]]
    assert crc_accepted(probs, decisions, t).tolist() == [True, False, True, True]
    policy = Policy(SCRC, 1.0, 0.5, has_selective=True, class_thresholds=(0.6, 0.3))
    assert policy.accepted(probs).tolist() == [True, False, True, True]
    report = classwise_report(probs, np.array([0, 1, 1, 0]), decisions, t, NAMES)
    assert report["no_roadwork"]["miss_rate"] == 0.5 and report["roadwork"]["miss_rate"] == 0.0


@pytest.mark.parametrize("alpha, match", [(0.0, r"must lie in \(0, 1\)"), (1.0, r"must lie in \(0, 1\)"),
                                          (0.01, "infeasible.*roadwork has 20.*at least 99")])
def test_alpha_outside_0_1_or_too_small_for_the_calibration_set_is_refused(alpha, match):
    p = np.linspace(0.01, 0.99, 120)
    y = np.r_[np.zeros(100, int), np.ones(20, int)]
    with pytest.raises(ConfigError, match=match):
        classwise_thresholds(p, y, alpha, NAMES)


def test_config_refuses_alpha_outside_0_1(make_cfg):
    with pytest.raises(ConfigError, match="phase5.alpha"):
        make_cfg("phase5.policy=crc_classwise", "phase5.alpha=1.5")


def test_micro_run_carries_classwise_crc_into_bundle_predictor_and_report(make_cfg):
    from streetvision import Predictor
    from streetvision.pipeline.artifacts import ArtifactSchema
    from streetvision.pipeline.runner import run_pipeline

    cfg = make_cfg("model=dinov2_micro", "data.synthetic.n=160", "training.epochs=1", "training.progress_bar=false",
                   "phase5.policy=crc_classwise", "phase5.alpha=0.2",
                   "pipeline.phases=[phase1,phase2,phase5,phase6,evaluation]")
    run_pipeline(cfg, Console(quiet=True))
    art = ArtifactSchema.from_config(cfg)
    selective = json.loads(art.scrcparams_json.read_text())["scrc_params"]["selective"]
    assert selective["method"] == "crc_classwise" and len(selective["class_thresholds"]) == 2
    assert set(selective["val_calib_per_class"]) == set(NAMES)
    for entry in selective["val_calib_per_class"].values():  # on calibration itself the bound is <= alpha
        assert entry["miss_rate"] <= 0.2
    predictor = Predictor.from_bundle(art.bundle_dir)
    assert predictor.policy.class_thresholds == tuple(selective["class_thresholds"])
    rows = sorted(art.evaluation_dir.rglob("predictions.csv"))
    assert rows, "the evaluation wrote its predictions"
    with open(rows[0], newline="") as handle:
        table = list(csv.DictReader(handle))
    t = np.asarray(selective["class_thresholds"])
    probs = np.array([float(r["probability"]) for r in table])
    decisions = np.array([int(r["decision"]) for r in table])
    expected = crc_accepted(probs, decisions, t)
    assert [r["accepted"] for r in table] == [str(int(a)) for a in expected]
