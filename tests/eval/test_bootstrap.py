"""The interval method: scipy's BCa on the reported metrics, vectorised, with the percentile interval only where
BCa is undefined."""

from dataclasses import replace

import numpy as np
import pytest
from scipy import stats

from streetvision.eval.bootstrap import BCA, PERCENTILE, bootstrap_intervals
from streetvision.eval.evaluate import condition_intervals, condition_metrics, interval_names
from streetvision.eval.predictions import from_logits
from streetvision.metrics.policy import SCRC, Policy


def fixed_sample(n: int, seed: int = 0, positives: int | None = None):
    """A condition's rows from a calibrated-ish synthetic model with a selective policy."""
    rng = np.random.default_rng(seed)
    gap = rng.normal(0, 2, n)
    labels = (rng.random(n) < 1 / (1 + np.exp(-gap))).astype(int)
    if positives is not None:
        labels = np.zeros(n, dtype=int)
        labels[:positives] = 1
    logits = np.stack([np.zeros(n), gap], 1)
    return from_logits(logits, labels, np.zeros(n, int), [{}] * n, [f"img_{i}.png" for i in range(n)], [""] * n,
                       Policy(SCRC, temperature=1.2, decision_threshold=0.45, selective_threshold=0.8,
                              has_selective=True))


def take(pred, rows):
    """The rows ``rows`` of a condition (what a resample of images is)."""
    pick = [int(r) for r in rows]
    return replace(pred, image_index=pred.image_index[pick], sample_ids=[pred.sample_ids[r] for r in pick],
                   image_sha256=[pred.image_sha256[r] for r in pick], labels=pred.labels[pick],
                   levels=pred.levels[pick], distortions=[pred.distortions[r] for r in pick],
                   probability_uncalibrated=pred.probability_uncalibrated[pick], probability=pred.probability[pick],
                   score=pred.score[pick], decision=pred.decision[pick], accepted=pred.accepted[pick],
                   correct=pred.correct[pick])


def test_every_reported_interval_is_scipy_bca_of_the_scalar_metric():
    pred = fixed_sample(100)
    names = interval_names(pred)
    ours = condition_intervals(pred, n_resamples=200, seed=7)
    reference = stats.bootstrap(
        (np.arange(len(pred)),), lambda rows: np.array([condition_metrics(take(pred, rows))[k] for k in names]),
        n_resamples=200, vectorized=False, method="BCa", rng=np.random.default_rng(7))
    assert set(ours) == set(names) and len(names) == 15
    for i, k in enumerate(names):
        assert ours[k]["method"] == BCA, k
        assert ours[k]["estimate"] == pytest.approx(condition_metrics(pred)[k], abs=1e-12), k
        assert ours[k]["low"] == pytest.approx(reference.confidence_interval.low[i], abs=1e-10), k
        assert ours[k]["high"] == pytest.approx(reference.confidence_interval.high[i], abs=1e-10), k


def test_bca_corrects_the_upward_lean_of_the_percentile_interval_of_ece():
    pred = fixed_sample(150)
    ours = condition_intervals(pred, n_resamples=300, seed=7)["ece"]
    percentile = stats.bootstrap((pred.labels, pred.probability), lambda y, p: condition_metrics(
        replace(pred, labels=y, probability=p))["ece"], paired=True, vectorized=False, n_resamples=300,
        method="percentile", rng=np.random.default_rng(7)).confidence_interval
    assert ours["low"] < percentile.low and ours["high"] < percentile.high  # sampling noise inflates ECE
    assert ours["low"] <= ours["estimate"] <= ours["high"]


def test_a_degenerate_metric_falls_back_to_percentile_and_says_why():
    y = np.tile([0, 1], 50)

    def statistic(labels):
        return np.stack([labels.mean(-1), np.zeros(labels.shape[:-1])])

    out = bootstrap_intervals([y], statistic, ["share", "constant"], n_resamples=200)
    assert out["share"]["method"] == BCA
    assert out["constant"] == {"estimate": 0.0, "low": 0.0, "high": 0.0, "level": 0.95, "n_resamples": 200,
                               "method": PERCENTILE, "reason": "every resample gives the same value"}


def test_a_metric_undefined_on_some_resamples_falls_back_to_percentile():
    pred = fixed_sample(40, positives=1)  # most resamples lose the one positive: AUROC undefined there
    auroc = condition_intervals(pred, n_resamples=200, seed=0)["auroc"]
    assert auroc["method"] == PERCENTILE and auroc["reason"].startswith("undefined on ")
    assert auroc["low"] <= auroc["high"]

