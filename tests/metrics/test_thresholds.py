"""The threshold sweep against the one metrics module, point by point, ties included; the selection rules."""

import numpy as np
import pytest

from streetvision.errors import ConfigError
from streetvision.metrics.classification import binary_metrics
from streetvision.metrics.thresholds import SELECTION_METRICS, Sweep, best_index, objective, select_threshold, sweep
from streetvision.validator.prior import prior_weights


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("seed", range(3))
def test_every_sweep_point_equals_binary_metrics_at_that_threshold_ties_included(seed, weighted):
    rng = np.random.default_rng(seed)
    n = 60
    labels = rng.integers(0, 2, n)
    probs = rng.integers(0, 21, n) / 20  # on the 21-point grid: many probabilities equal a threshold exactly
    weights = prior_weights(labels, 0.3) if weighted else None
    s = sweep(labels, probs, 21, weights)
    assert np.array_equal(s.thresholds, np.linspace(0, 1, 21))
    for i, t in enumerate(s.thresholds):
        m = binary_metrics(labels, probs, t, weights)
        for key in ("mcc", "accuracy", "fnr", "fpr", "reward"):
            # 1e-6: with weights the sweep gets fn and tn as differences of sums, so an empty cell can be 1e-16
            # instead of 0 and MCC at an all-positive threshold ~1e-8 instead of 0
            assert getattr(s, key)[i] == pytest.approx(m[key], abs=1e-6), (t, key)


def test_an_empty_sweep_and_a_single_class_sweep_are_defined():
    s = sweep(np.array([], dtype=int), np.array([]), 5)
    assert np.array_equal(s.accuracy, np.zeros(5)) and np.array_equal(s.mcc, np.zeros(5))
    one = sweep(np.array([1, 1]), np.array([0.2, 0.9]), 3)  # thresholds 0, 0.5, 1
    assert one.mcc.tolist() == [0.0, 0.0, 0.0] and one.fpr.tolist() == [0.0, 0.0, 0.0]
    assert one.fnr.tolist() == [0.0, 0.5, 1.0] and one.accuracy.tolist() == [1.0, 0.5, 0.0]


def test_objective_per_metric_and_the_fnr_cap():
    s = Sweep(np.array([0.0, 0.5, 1.0]), mcc=np.array([0.1, 0.3, 0.2]), accuracy=np.array([0.5, 0.6, 0.7]),
              fnr=np.array([0.0, 0.05, 0.5]), fpr=np.array([0.9, 0.2, 0.0]), reward=np.array([0.2, 0.1, 0.4]))
    assert objective(s, "mcc").tolist() == [0.1, 0.3, 0.2]
    assert objective(s, "validator_reward").tolist() == [0.2, 0.1, 0.4]
    assert objective(s, "fnr_constrained", max_fnr=0.05).tolist() == [-0.9, -0.2, -np.inf]  # 0.05 itself passes
    assert objective(s, "fnr_constrained", max_fnr=0.04).tolist() == [-0.9, -np.inf, -np.inf]
    with pytest.raises(ConfigError, match="Unknown phase2.metric 'f1'.*mcc, validator_reward, fnr_constrained"):
        objective(s, "f1")
    assert SELECTION_METRICS == ("mcc", "validator_reward", "fnr_constrained")


@pytest.mark.parametrize(("values", "expected"), [
    ([0, 1, 1, 0, 1, 1, 1, 0], 5),  # the widest run wins, its middle
    ([1, 1, 0, 1, 1], 0),  # equally wide runs: the first, middle rounded down
    ([0, 0, 3], 2),  # a run at the end
    ([3, 0, 0], 0),
    ([2, 2, 2, 2], 1),
    ([0.5, 0.5 - 1e-13, 0.1], 0),  # within atol counts as the best value
    ([0.5, 0.5 - 1e-9, 0.1], 0),
    ([-np.inf, -1.0, -1.0, -np.inf], 1),
])
def test_best_index_is_the_middle_of_the_widest_best_run(values, expected):
    assert best_index(np.array(values, dtype=float)) == expected


def test_select_threshold_returns_the_grid_value_at_the_best_index_with_its_sweep():
    labels = np.array([0, 0, 1, 1])
    probs = np.array([0.1, 0.4, 0.6, 0.9])
    best, s = select_threshold(labels, probs, "mcc", 11)
    assert s.mcc[best_index(s.mcc)] == 1.0 and best == s.thresholds[best_index(s.mcc)]
    assert 0.4 < best <= 0.6 and best == pytest.approx(0.5)
    weighted, _ = select_threshold(np.array([0, 1, 1, 1]), np.array([0.45, 0.5, 0.9, 0.95]), "validator_reward", 101,
                                   weights=prior_weights(np.array([0, 1, 1, 1]), 0.5))
    assert 0.45 < weighted <= 0.5


def test_arbitrary_per_sample_weights_summing_to_less_than_one_per_class():
    rng = np.random.default_rng(7)
    labels = rng.integers(0, 2, 40)
    probs = rng.integers(0, 11, 40) / 10
    weights = rng.random(40)
    weights /= weights.sum() * 2  # every cell's weight below 1: no "> 0 means >= 1" shortcut holds
    s = sweep(labels, probs, 11, weights)
    for i, t in enumerate(s.thresholds):
        m = binary_metrics(labels, probs, t, weights)
        for key in ("mcc", "accuracy", "fnr", "fpr"):
            assert getattr(s, key)[i] == pytest.approx(m[key], abs=1e-6), (t, key)  # 1e-6: see above


@pytest.mark.parametrize("label", [0, 1])
def test_one_class_only_gives_zero_where_a_rate_is_undefined_whatever_memory_held(label):
    n_thresholds = 3001
    for _ in range(3):
        garbage = np.full(n_thresholds, np.nan)  # freed just before: a fresh output array may reuse its memory
        del garbage
        s = sweep(np.full(5, label), np.linspace(0.1, 0.9, 5), n_thresholds)
        assert np.all(s.mcc == 0.0)
        assert np.all((s.fpr if label else s.fnr) == 0.0)  # no negatives: FPR 0; no positives: FNR 0
        assert np.all(np.isfinite(s.fnr)) and np.all(np.isfinite(s.fpr))


def test_defaults_and_the_fix_named_by_an_unknown_metric():
    s = Sweep(np.array([0.0, 1.0]), mcc=np.zeros(2), accuracy=np.zeros(2), fnr=np.array([0.05, 0.06]),
              fpr=np.array([0.5, 0.0]), reward=np.zeros(2))
    assert objective(s, "fnr_constrained").tolist() == [-0.5, -np.inf]  # max_fnr defaults to 0.05
    edge = Sweep(s.thresholds, s.mcc, s.accuracy, np.array([0.05 + 1e-12, 0.2]), s.fpr, s.reward)
    assert objective(edge, "fnr_constrained").tolist() == [-0.5, -np.inf]  # the 1e-12 slack is inclusive
    with pytest.raises(ConfigError) as exc:
        objective(s, "auc")
    assert exc.value.fix == "set phase2.metric=mcc|validator_reward|fnr_constrained."
    labels = np.array([1] * 20 + [0] * 20)
    probs = np.concatenate([np.linspace(0.3, 1.0, 20), np.linspace(0.0, 0.7, 20)])
    best, _ = select_threshold(labels, probs, "fnr_constrained", 101)
    assert best == select_threshold(labels, probs, "fnr_constrained", 101, max_fnr=0.05)[0]
    assert best != select_threshold(labels, probs, "fnr_constrained", 101, max_fnr=1.05)[0]


def test_best_index_counts_a_value_exactly_atol_below_the_maximum_as_best():
    values = np.array([0.5 - 1e-12, 0.5 - 1e-12, 0.5, 0.1])
    assert best_index(values) == 1  # the run 0..2, not index 2 alone


def test_select_threshold_uses_the_weights():
    labels = np.array([1] * 4 + [0] * 12)  # a quarter roadwork, re-weighted to half
    probs = np.array([0.67, 0.96, 0.93, 0.75, 0.86, 0.25, 0.14, 0.67, 0.71, 0.17, 0.4, 0.91, 0.56, 0.58, 0.19, 0.53])
    plain, _ = select_threshold(labels, probs, "mcc", 101)
    weighted, s = select_threshold(labels, probs, "mcc", 101, weights=prior_weights(labels, 0.5))
    assert (plain, weighted) == (pytest.approx(0.92), pytest.approx(0.63))
    assert np.allclose(s.accuracy, sweep(labels, probs, 101, prior_weights(labels, 0.5)).accuracy)
