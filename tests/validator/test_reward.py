"""The reward tracker against hand-computed sequences; the prior-shift arithmetic."""

from __future__ import annotations

import numpy as np
import pytest

from streetvision.errors import ConfigError
from streetvision.metrics.thresholds import sweep
from streetvision.validator.prior import prior_weights, shift_log_odds
from streetvision.validator.reward import RewardTracker, reward_from_metrics, window_metrics


def test_first_answers_single_class_has_zero_mcc_and_cubed_accuracy():
    t = RewardTracker()
    assert t.update(0.9, 1) == pytest.approx((0.5 * 0 + 0.5 * 1.0) ** 3)  # one class in the window: MCC 0
    assert t.update(0.2, 1) == pytest.approx((0.5 * 0 + 0.5 * 0.5) ** 3)


def test_two_classes_mcc_and_accuracy_hand_computed():
    t = RewardTracker()
    for answer, label in [(0.9, 1), (0.1, 0), (0.8, 0)]:
        r = t.update(answer, label)
    # predictions 1, 0, 1 vs labels 1, 0, 0: tp=1 tn=1 fp=1 fn=0 -> MCC = (1 - 0) / sqrt(2*1*2*1) = 0.5, acc 2/3
    assert r == pytest.approx((0.5 * 0.5 + 0.5 * 2 / 3) ** 3)


def test_rounding_at_half_goes_down_and_negative_mcc_is_clipped():
    assert window_metrics([0.5, 0.5000001], [0, 1], 10)["accuracy"] == 1.0  # np.round(0.5) == 0
    m = window_metrics([0.9, 0.1], [0, 1], 10)
    assert m["accuracy"] == 0.0 and m["mcc"] == 0.0  # MCC -1 clipped at 0


def test_accuracy_uses_the_last_10_and_mcc_the_last_100():
    t = RewardTracker()
    for _ in range(90):  # 45 right pairs of each class
        t.update(0.9, 1)
        t.update(0.1, 0)
    for _ in range(10):
        r = t.update(0.9, 0)  # ten wrong
    # last 100: 90 right (45 tp, 45 tn) then 10 fp -> MCC from counts; last 10: accuracy 0
    tp, tn, fp, fn = 45, 45, 10, 0
    mcc = (tp * tn - fp * fn) / np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    assert r == pytest.approx((0.5 * mcc + 0.5 * 0.0) ** 3)
    assert len(t.answers) == 100


def test_out_of_range_answer_pays_zero_and_no_answer_is_skipped():
    t = RewardTracker()
    t.update(0.9, 1)
    t.update(0.1, 0)
    assert t.update(1.2, 1) == 0.0  # penalty
    assert t.update(-1, 1) == 0.0  # no answer
    assert window_metrics([0.9, -1.0], [1, 0], 10) == {"accuracy": 1.0, "mcc": 0.0, "n": 1}


def test_reward_from_metrics_cubes_and_clips():
    assert reward_from_metrics(0.6, 0.8) == pytest.approx(0.7 ** 3)
    assert reward_from_metrics(-0.4, 0.5) == pytest.approx(0.25 ** 3)


def test_prior_weights_rebalance_to_the_deployment_prior():
    y = np.array([1, 0, 0, 0])
    w = prior_weights(y, 0.5)
    assert np.allclose(w, [2.0, 2 / 3, 2 / 3, 2 / 3]) and w[y == 1].sum() == pytest.approx(w[y == 0].sum())
    assert prior_weights(np.ones(3), 0.5) is None and prior_weights(y, None) is None
    with pytest.raises(ConfigError, match="strictly between 0 and 1"):
        prior_weights(y, 1.0)


def test_weighted_sweep_equals_a_replicated_balanced_set():
    rng = np.random.default_rng(0)
    y = np.array([1] * 5 + [0] * 15)
    p = rng.random(20)
    weighted = sweep(y, p, 101, prior_weights(y, 0.5))
    rep = np.concatenate([np.repeat(np.flatnonzero(y == 1), 3), np.flatnonzero(y == 0)])
    replicated = sweep(y[rep], p[rep], 101)
    assert np.allclose(weighted.mcc, replicated.mcc) and np.allclose(weighted.accuracy, replicated.accuracy)


def test_log_odds_shift_is_bayes_rule():
    p = np.array([0.2, 0.5, 0.9])
    shifted = shift_log_odds(p, 0.25, 0.5)
    odds = p / (1 - p) * (0.5 / 0.5) / (0.25 / 0.75)
    assert np.allclose(shifted, odds / (1 + odds))
    assert np.allclose(shift_log_odds(shifted, 0.5, 0.25), p)


@pytest.mark.parametrize(("answer", "paid"), [(0.0, 1.0), (1.0, 1.0), (0.5, 1.0), (-1e-9, 0.0), (1 + 1e-9, 0.0)])
def test_answers_on_the_ends_of_zero_one_are_in_range(answer, paid):
    from streetvision.validator.reward import penalty

    assert penalty(answer) == paid


def test_a_window_without_answers_scores_zero_and_the_history_keeps_the_last_100_pairs():
    assert window_metrics([-1.0, -1.0], [1, 0], 10) == {"accuracy": 0.0, "mcc": 0.0, "n": 0}
    assert window_metrics([], [], 10) == {"accuracy": 0.0, "mcc": 0.0, "n": 0}
    t = RewardTracker()
    for i in range(150):
        t.update(0.9 if i % 2 else 0.1, i % 2)
    assert len(t.answers) == len(t.labels) == 100 and list(t.labels)[:2] == [0, 1]
    assert RewardTracker(history=7).update(0.2, 0) == pytest.approx(0.5 ** 3)


@pytest.mark.parametrize("prior", [0.0, 1.0, -0.2, 1.5])
def test_a_prior_outside_the_open_unit_interval_is_refused_with_the_fix(prior):
    with pytest.raises(ConfigError, match=f"strictly between 0 and 1, got {prior}") as exc:
        prior_weights(np.array([0, 1]), prior)
    assert exc.value.fix == "use 0.5, the validator's 50/50 draw."


def test_no_weights_for_an_empty_or_single_class_label_set():
    assert prior_weights(np.array([], dtype=int), 0.5) is None
    assert prior_weights(np.zeros(3, dtype=int), 0.5) is None and prior_weights(np.ones(3, dtype=int), 0.3) is None


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_shifted_probabilities_stay_strictly_inside_zero_one_even_from_certain_ones(dtype):
    shifted = shift_log_odds(np.array([0.0, 1.0], dtype=dtype), 0.25, 0.5)
    assert 0.0 < shifted[0] < 1e-10 and 1 - 1e-10 < shifted[1] < 1.0
