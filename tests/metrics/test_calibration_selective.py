import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torchmetrics.classification import MulticlassCalibrationError

from streetvision.models.temperature import fit_temperature
from streetvision.metrics.calibration import (
    calibrated_probs,
    calibration_metrics,
    recalibrated_threshold,
)
from streetvision.metrics.score import validator_score
from streetvision.metrics.selective import learn_then_test
from streetvision.metrics.thresholds import best_index, select_threshold


@pytest.mark.parametrize("seed", range(4))
def test_ece_and_mce_agree_with_torchmetrics(seed):
    rng = np.random.default_rng(seed)
    n = 500
    probs = rng.random(n)
    labels = rng.integers(0, 2, n)
    ours = calibration_metrics(labels, probs, n_bins=15)
    two = torch.tensor(np.stack([1 - probs, probs], 1), dtype=torch.float64)
    target = torch.tensor(labels)
    for norm, key in (("l1", "ece"), ("max", "mce")):
        ref = MulticlassCalibrationError(num_classes=2, n_bins=15, norm=norm)(two, target)
        assert ours[key] == pytest.approx(float(ref), abs=1e-6)


def overconfident(seed=0, n=4000):
    rng = np.random.default_rng(seed)
    gap = rng.normal(0, 2.0, n)  # calibrated logit gap
    labels = (rng.random(n) < 1 / (1 + np.exp(-gap))).astype(int)
    logits = np.stack([np.zeros(n), gap], 1) * 4  # correct logits scaled by 4: over-confident
    return logits, labels


def test_temperature_scaling_fixes_overconfidence_without_changing_accuracy():
    logits, labels = overconfident()
    t = fit_temperature(logits, labels)
    before = calibration_metrics(labels, calibrated_probs(logits, 1.0))
    after = calibration_metrics(labels, calibrated_probs(logits, t))
    assert t == pytest.approx(4.0, rel=0.15)
    assert after["ece"] <= 0.5 * before["ece"]
    assert after["accuracy"] == before["accuracy"]


def test_recalibrated_threshold_keeps_decisions():
    logits, _ = overconfident(1, 500)
    for threshold in (0.2, 0.5, 0.83):
        t_cal = recalibrated_threshold(threshold, 3.0)
        assert np.array_equal(calibrated_probs(logits, 1.0) >= threshold, calibrated_probs(logits, 3.0) >= t_cal)


def test_threshold_sweep_finds_known_optimum_and_plateau_middle():
    # positives all above 0.62, negatives all below 0.38: any threshold in (0.38, 0.62] is perfect
    labels = np.array([0] * 50 + [1] * 50)
    probs = np.concatenate([np.linspace(0.0, 0.38, 50), np.linspace(0.62, 1.0, 50)])
    best, sweep = select_threshold(labels, probs, "mcc", 1001)
    assert best == pytest.approx(0.5, abs=1e-3)
    assert sweep.mcc.max() == 1.0
    assert best_index(np.array([0, 1, 1, 0, 1, 1, 1, 0])) == 5


def test_fnr_constrained_picks_lowest_fpr_meeting_the_fnr_cap():
    labels = np.array([1] * 10 + [0] * 10)
    probs = np.array([0.9] * 8 + [0.3, 0.35] + [0.1] * 8 + [0.32, 0.6])
    best, sweep = select_threshold(labels, probs, "fnr_constrained", 1001, max_fnr=0.1)
    i = int(round(best * 1000))
    assert sweep.fnr[i] <= 0.1 and sweep.fpr[i] == pytest.approx(0.1)


def test_learn_then_test_guarantee_holds_on_simulated_calibration_sets():
    target, delta, n, sims = 0.05, 0.1, 1000, 1000
    rng = np.random.default_rng(0)
    grid = np.linspace(0, 1, 2001)

    def true_risk(lam):  # conf ~ U(0.5, 1), P(error | conf) = 2 * (1 - conf) * 0.3
        c = np.linspace(max(lam, 0.5), 1, 2001)
        return float(np.mean(0.6 * (1 - c))) if lam < 1 else 0.0

    violations = 0
    for _ in range(sims):
        conf = rng.uniform(0.5, 1, n)
        errors = rng.random(n) < 0.6 * (1 - conf)
        policy = learn_then_test(conf, errors, target, delta)
        if policy.threshold is not None and true_risk(policy.threshold) > target:
            violations += 1
    assert grid.size and violations / sims <= delta + 3 * np.sqrt(delta * (1 - delta) / sims)


def test_learn_then_test_accepts_nothing_when_target_is_unreachable():
    rng = np.random.default_rng(1)
    conf = rng.uniform(0.5, 1, 300)
    policy = learn_then_test(conf, rng.random(300) < 0.4, target_risk=0.01, delta=0.1)
    assert policy.threshold is None and policy.coverage == 0.0


@settings(max_examples=300, deadline=None)
@given(st.floats(0.001, 0.999), st.lists(st.floats(0, 1), min_size=2, max_size=50))
def test_validator_score_is_monotone_bounded_and_crosses_half_at_threshold(threshold, probs):
    p = np.sort(np.array(probs))
    s = validator_score(p, threshold)
    assert np.all((s >= 0) & (s <= 1))
    assert np.all(np.diff(s) >= 0)
    assert np.array_equal(s > 0.5, p >= threshold)
    assert validator_score(threshold, threshold) > 0.5
    assert validator_score(np.nextafter(threshold, 0), threshold) <= 0.5  # 0.5 reads "no roadwork"


@pytest.mark.parametrize("threshold", [0.03, 0.3, 0.5, 0.92])
def test_validator_score_is_the_softmax_of_logits_with_temperature_and_threshold_folded_in(threshold):
    """What the Hugging Face export computes: softmax of (z / T) shifted by -+logit(t) / 2, "Roadwork" column."""
    rng = np.random.default_rng(3)
    logits, temperature = rng.normal(0, 3, (200, 2)), 1.7
    shift = np.log(threshold / (1 - threshold)) / 2
    folded = logits / temperature + np.array([shift, -shift])
    exported = np.exp(folded[:, 1]) / np.exp(folded).sum(axis=1)
    probs = np.exp(logits[:, 1] / temperature) / np.exp(logits / temperature).sum(axis=1)
    assert np.allclose(validator_score(probs, threshold), exported, atol=1e-12)


# -- selective prediction, piece by piece -----------------------------------------------------------------------

def test_decided_confidence_is_the_probability_of_the_decided_class_with_ties_to_roadwork():
    from streetvision.metrics.policy import decided_confidence

    decisions, confidence = decided_confidence(np.array([0.2, 0.5, 0.7, 0.49]), 0.5)
    assert decisions.tolist() == [0, 1, 1, 0] and decisions.dtype == np.int64
    assert confidence == pytest.approx([0.8, 0.5, 0.7, 0.51])


def test_clopper_pearson_bound_and_the_smallest_certifiable_sample():
    from scipy.stats import beta

    from streetvision.metrics.selective import clopper_pearson_upper, min_accepted

    assert clopper_pearson_upper(0, 10, 0.1) == pytest.approx(1 - 0.1 ** (1 / 10))
    assert clopper_pearson_upper(3, 50, 0.05) == pytest.approx(beta.ppf(0.95, 4, 47))
    assert clopper_pearson_upper(5, 5, 0.1) == 1.0 and clopper_pearson_upper(6, 5, 0.1) == 1.0
    assert min_accepted(0.05, 0.1) == 45  # 0.95 ** 45 <= 0.1 < 0.95 ** 44
    assert 0.95 ** 45 <= 0.1 < 0.95 ** 44


def test_apply_policy_reports_coverage_and_selective_risk():
    from streetvision.metrics.selective import apply_policy

    conf, errors = np.array([0.9, 0.8, 0.6, 0.95]), np.array([0, 1, 0, 1])
    assert apply_policy(conf, errors, 0.8) == {"coverage": 0.75, "risk": pytest.approx(2 / 3), "n_accepted": 3, "n": 4}
    assert apply_policy(conf, errors, None) == {"coverage": 0.0, "risk": 0.0, "n_accepted": 0, "n": 4}
    assert apply_policy(conf, errors, 0.99) == {"coverage": 0.0, "risk": 0.0, "n_accepted": 0, "n": 4}
    assert apply_policy(np.array([]), np.array([]), 0.5) == {"coverage": 0.0, "risk": 0.0, "n_accepted": 0, "n": 0}


def test_risk_coverage_curve_accepts_the_most_confident_first():
    from streetvision.metrics.selective import risk_coverage_curve

    coverage, risk, aurc = risk_coverage_curve(np.array([0.9, 0.6, 0.8, 0.8]), np.array([1, 0, 0, 1]))
    assert coverage.tolist() == [0.25, 0.5, 0.75, 1.0]
    assert risk.tolist() == pytest.approx([1.0, 0.5, 2 / 3, 0.5])  # ties keep their input order
    assert aurc == pytest.approx(np.mean([1.0, 0.5, 2 / 3, 0.5]))
    assert risk_coverage_curve(np.array([]), np.array([]))[2] == 0.0


def fixed_sequence(conf, errors, target, delta):
    """Learn-then-Test written out as a loop over the grid: the reference for the vectorised version."""
    from scipy.stats import binom

    from streetvision.metrics.selective import GRID, min_accepted

    chosen, tested = None, 0
    for lam in GRID:
        accepted = conf >= lam
        k, e = int(accepted.sum()), int(errors[accepted].sum())
        if k < min_accepted(target, delta):
            continue
        tested += 1
        if binom.cdf(e, k, target) > delta:
            break
        chosen = (float(lam), k, e)
    return chosen, tested


@pytest.mark.parametrize("seed", range(4))
def test_learn_then_test_is_the_fixed_sequence_procedure(seed):
    from streetvision.metrics.selective import clopper_pearson_upper

    rng = np.random.default_rng(seed)
    n = int(rng.integers(150, 400))
    conf = np.round(rng.uniform(0.5, 1.0, n), 3)
    errors = rng.random(n) < 0.5 * (1 - conf) * (seed + 1)
    policy = learn_then_test(conf, errors, 0.05, 0.1)
    chosen, tested = fixed_sequence(conf, errors, 0.05, 0.1)
    assert policy.n_tested == tested and policy.n == n
    if chosen is None:
        assert (policy.threshold, policy.coverage, policy.n_accepted) == (None, 0.0, 0)
    else:
        lam, k, e = chosen
        assert (policy.threshold, policy.n_accepted) == (lam, k)
        assert policy.coverage == k / n and policy.risk == e / k
        assert policy.risk_upper_bound == clopper_pearson_upper(e, k, 0.1) <= 1.0


def test_learn_then_test_without_errors_accepts_everything_and_says_how_many_it_tested():
    from streetvision.metrics.selective import GRID, clopper_pearson_upper

    conf = np.linspace(0.5, 1.0, 100)
    policy = learn_then_test(conf, np.zeros(100, dtype=bool), 0.05, 0.1)
    assert (policy.threshold, policy.coverage, policy.risk, policy.n_accepted) == (0.0, 1.0, 0.0, 100)
    assert policy.risk_upper_bound == clopper_pearson_upper(0, 100, 0.1)
    assert policy.n_tested == int(sum((conf >= lam).sum() >= 45 for lam in GRID))
    assert (policy.target_risk, policy.delta) == (0.05, 0.1)
    few = learn_then_test(conf[:10], np.zeros(10, dtype=bool), 0.05, 0.1)  # under 45 images: nothing testable
    assert few.threshold is None and few.n_tested == 0


@pytest.mark.parametrize("temperature", [0.5, 3.0])
def test_thresholds_of_zero_and_one_stay_put_at_any_temperature(temperature):
    assert recalibrated_threshold(0.0, temperature) == 0.0  # everything is roadwork, calibrated or not
    assert recalibrated_threshold(1.0, temperature) == 1.0
    assert 0.0 < recalibrated_threshold(1e-3, temperature) < 0.5 < recalibrated_threshold(1 - 1e-3, temperature) < 1


def test_the_risk_coverage_curve_keeps_tied_confidences_in_input_order():
    from streetvision.metrics.selective import risk_coverage_curve

    rng = np.random.default_rng(0)
    conf, errors = rng.choice([0.6, 0.7, 0.8], 200), rng.random(200) < 0.3
    order = sorted(range(200), key=lambda i: -conf[i])  # Python's sort is stable
    expected = np.cumsum(errors[order]) / np.arange(1, 201)
    assert np.array_equal(risk_coverage_curve(conf, errors)[1], expected)


def test_learn_then_test_reports_the_observed_risk_at_the_chosen_threshold():
    conf, errors = np.full(300, 0.9), np.zeros(300, dtype=bool)
    errors[:3] = True  # one block of 300 images with 3 errors: certified at 5 % (p = P(Binom(300, .05) <= 3))
    policy = learn_then_test(conf, errors, 0.05, 0.1)
    assert (policy.threshold, policy.n_accepted, policy.risk, policy.coverage) == (0.0, 300, 0.01, 1.0)


def test_learn_then_test_stops_at_the_first_failure_even_when_one_image_is_testable():
    conf = np.linspace(0.99, 0.5, 50)
    errors = np.zeros(50, dtype=bool)
    errors[0] = True  # the most confident image is wrong; at target 0.9 a single image is testable
    policy = learn_then_test(conf, errors, 0.9, 0.2)
    assert policy.threshold is None and policy.n_tested == 1
    assert (policy.risk_upper_bound, policy.coverage, policy.risk, policy.n_accepted, policy.n) == (None, 0.0, 0.0,
                                                                                                   0, 50)
    assert (policy.target_risk, policy.delta) == (0.9, 0.2)


def test_a_p_value_equal_to_delta_rejects():
    conf = np.array([0.9, 0.8, 0.7, 0.6])
    policy = learn_then_test(conf, np.zeros(4, dtype=bool), 0.5, 0.25)  # two correct images: p = 0.25 exactly
    assert policy.n_tested > 1 and policy.threshold == 0.0 and policy.n_accepted == 4


# ------------------------------------------------------------------------- calibration metrics piece by piece
def test_calibration_metrics_are_their_definitions():
    from sklearn.metrics import log_loss

    from streetvision.metrics.calibration import reliability

    rng = np.random.default_rng(3)
    labels, probs = rng.integers(0, 2, 300), np.round(rng.random(300), 3)
    m = calibration_metrics(labels, probs, n_bins=10)
    assert set(m) == {"ece", "mce", "brier", "nll", "accuracy", "n", "bins"} and m["n"] == 300
    assert m["brier"] == pytest.approx(np.mean((probs - labels) ** 2), abs=1e-12)
    assert m["nll"] == pytest.approx(log_loss(labels, probs), abs=1e-9)
    assert m["accuracy"] == pytest.approx(np.mean((probs > 0.5) == labels), abs=1e-12)
    assert m["bins"] == reliability(labels, probs, 10) and len(m["bins"]) == 10
    filled = [b for b in m["bins"] if b["count"]]
    assert m["ece"] == pytest.approx(sum(b["count"] * abs(b["accuracy"] - b["confidence"]) for b in filled) / 300)
    assert m["mce"] == pytest.approx(max(abs(b["accuracy"] - b["confidence"]) for b in filled))
    with np.errstate(invalid="ignore"), pytest.warns(RuntimeWarning, match="Mean of empty slice"):  # the NLL
        empty = calibration_metrics(np.array([], int), np.array([]), n_bins=5)
    assert {k: empty[k] for k in ("ece", "mce", "brier", "accuracy", "n")} == {"ece": 0.0, "mce": 0.0, "brier": 0.0,
                                                                                "accuracy": 0.0, "n": 0}


def test_reliability_bins_are_equal_width_and_empty_bins_say_none():
    from streetvision.metrics.calibration import reliability

    bins = reliability(np.array([1, 0, 1]), np.array([0.95, 0.3, 0.62]), n_bins=5)  # confidences 0.95, 0.7, 0.62
    assert [b["lower"] for b in bins] == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8])
    assert [b["upper"] for b in bins] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert [b["count"] for b in bins] == [0, 0, 0, 2, 1]
    assert bins[3]["confidence"] == pytest.approx(0.66) and bins[3]["accuracy"] == 1.0
    assert bins[4]["confidence"] == pytest.approx(0.95) and bins[4]["accuracy"] == 1.0
    assert all(b["confidence"] is None and b["accuracy"] is None for b in bins[:3])


def test_bins_put_an_edge_in_the_upper_bin_and_one_in_the_last():
    from streetvision.metrics.calibration import bin_index

    edges = np.linspace(0, 1, 11)
    assert bin_index(edges, 10).tolist() == list(range(10)) + [9]
    assert bin_index(np.array([0.0, 0.05, 0.999]), 10).tolist() == [0, 0, 9]
    assert bin_index(np.array([1.0])).tolist() == [14]  # 15 bins by default


def test_top_label_ties_predict_class_zero_in_float64():
    from streetvision.metrics.calibration import top_label

    conf, pred = top_label(np.array([0.5, 0.8, 0.1], dtype=np.float32))
    assert pred.tolist() == [0, 1, 0] and pred.dtype == np.int64 and conf.dtype == np.float64
    assert conf == pytest.approx([0.5, 0.8, 0.9])


def test_vectorised_ece_agrees_with_the_scalar_path_row_by_row():
    from streetvision.metrics.calibration import ece_along_last_axis

    rng = np.random.default_rng(5)
    labels, probs = rng.integers(0, 2, (8, 60)), np.round(rng.random((8, 60)), 2)
    out = ece_along_last_axis(labels, probs)
    assert out.shape == (8,)
    for i in range(8):
        assert out[i] == pytest.approx(calibration_metrics(labels[i], probs[i])["ece"], abs=1e-12)
    assert ece_along_last_axis(labels, probs, 5)[0] == pytest.approx(calibration_metrics(labels[0], probs[0], 5)["ece"])
    assert np.array_equal(ece_along_last_axis(np.zeros((3, 0), int), np.zeros((3, 0))), np.zeros(3))


def test_temperature_is_clipped_and_takes_any_integer_labels():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    separable = np.stack([np.zeros(200), np.where(labels == 1, 0.01, -0.01)], 1)  # wants T -> 0
    noise = np.stack([np.zeros(200), rng.normal(0, 1, 200)], 1)  # uninformative: wants T -> infinity
    assert fit_temperature(separable, labels) == 0.05 and fit_temperature(noise, labels) == 100.0
    logits, y = overconfident(2, 500)
    assert fit_temperature(logits, y.astype(np.int32)) == fit_temperature(logits, y)


def test_thresholds_within_1e_15_of_the_ends_are_clamped_there():
    t = 3.0
    assert recalibrated_threshold(float(np.nextafter(1.0, 0.0)), t) == recalibrated_threshold(1 - 1e-15, t) < 1.0
    assert recalibrated_threshold(1e-16, t) == recalibrated_threshold(1e-15, t) > 0.0


def test_calibration_works_in_float64_and_along_the_last_of_any_number_of_axes():
    from streetvision.metrics.calibration import ece_along_last_axis

    rng = np.random.default_rng(6)
    labels, probs = rng.integers(0, 2, (2, 3, 50)), rng.random((2, 3, 50))
    assert np.array_equal(ece_along_last_axis(labels, probs).ravel(),
                          ece_along_last_axis(labels.reshape(6, 50), probs.reshape(6, 50)))
    assert np.array_equal(ece_along_last_axis(np.zeros((2, 3, 0), int), np.zeros((2, 3, 0))), np.zeros((2, 3)))
    single = probs[0, 0].astype(np.float32)
    as_double = calibration_metrics(labels[0, 0], single.astype(np.float64))
    assert calibration_metrics(labels[0, 0], single) == as_double
