import numpy as np
import pytest
from sklearn import metrics as skm

from streetvision.metrics.classification import (
    auroc,
    binary_metrics,
    confusion,
    metrics_from_decisions,
    nll,
    softmax_probs,
    validator_decisions,
)


@pytest.mark.parametrize("seed", range(5))
def test_metrics_agree_with_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 400))
    labels = rng.integers(0, 2, n)
    probs = np.round(rng.random(n), 2)  # rounding creates ties
    t = float(rng.choice(probs))  # a threshold that some probabilities equal exactly: the tie rule matters
    m = binary_metrics(labels, probs, t)
    assert np.any(probs == t)
    pred = probs >= t
    assert m["mcc"] == pytest.approx(skm.matthews_corrcoef(labels, pred), abs=1e-9)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(labels, pred), abs=1e-9)
    assert m["precision"] == pytest.approx(skm.precision_score(labels, pred, zero_division=0), abs=1e-9)
    assert m["recall"] == pytest.approx(skm.recall_score(labels, pred, zero_division=0), abs=1e-9)
    assert m["f1"] == pytest.approx(skm.f1_score(labels, pred, zero_division=0), abs=1e-9)
    assert m["auroc"] == pytest.approx(skm.roc_auc_score(labels, probs), abs=1e-9)
    tn, fp, fn, tp = skm.confusion_matrix(labels, pred, labels=[0, 1]).ravel()
    assert m["fnr"] == pytest.approx(fn / (fn + tp), abs=1e-9)
    assert m["fpr"] == pytest.approx(fp / (fp + tn), abs=1e-9)


def test_degenerate_cases_follow_scikit_learn_conventions():
    labels = np.array([1, 1, 1])
    m = binary_metrics(labels, np.array([0.9, 0.8, 0.1]))
    assert m["mcc"] == skm.matthews_corrcoef(labels, [1, 1, 0]) == 0.0
    assert m["auroc"] is None and auroc(labels, [0.1, 0.2, 0.3]) is None


def test_softmax_probs_matches_torch():
    import torch

    logits = np.random.default_rng(0).normal(size=(50, 2)) * 5
    expected = torch.softmax(torch.tensor(logits) / 1.7, dim=1)[:, 1].numpy()
    assert np.allclose(softmax_probs(logits, 1.7), expected, atol=1e-12)


def test_a_probability_exactly_at_the_threshold_is_roadwork():
    labels = np.array([1, 0, 1, 0, 1])
    probs = np.array([0.7, 0.7, 0.2, 0.9, 0.69999999])
    m = binary_metrics(labels, probs, 0.7)
    assert (m["tp"], m["tn"], m["fp"], m["fn"]) == (1, 0, 2, 2)
    assert m["precision"] == pytest.approx(1 / 3) and m["recall"] == pytest.approx(1 / 3)
    assert m["threshold"] == 0.7


def test_validator_rounding_puts_exactly_half_on_no_roadwork():
    assert validator_decisions(np.array([0.5, np.nextafter(0.5, 1), 0.4999, 1.0, 0.0])).tolist() == [
        False, True, False, True, False]


def test_weighted_confusion_sums_the_weights_of_each_cell():
    labels, preds = np.array([1, 1, 0, 0, 1]), np.array([1, 0, 1, 0, 1])
    weights = np.array([1.0, 2.0, 4.0, 8.0, 16.0])
    assert confusion(labels, preds, weights) == (17.0, 8.0, 4.0, 2.0)
    assert confusion(labels, preds) == (2, 1, 1, 1)
    m = metrics_from_decisions(labels, preds, weights)
    assert m["n"] == 31.0 and m["accuracy"] == pytest.approx(25 / 31)
    assert m["fnr"] == pytest.approx(2 / 19) and m["fpr"] == pytest.approx(4 / 12)
    assert m["mcc"] == pytest.approx(skm.matthews_corrcoef(labels, preds, sample_weight=weights))
    assert m["reward"] == pytest.approx((0.5 * m["mcc"] + 0.5 * m["accuracy"]) ** 3)


def test_undefined_ratios_are_zero_not_nan():
    m = metrics_from_decisions(np.array([0, 0]), np.array([0, 0]))
    assert (m["precision"], m["recall"], m["f1"], m["fnr"], m["fpr"], m["mcc"]) == (0.0,) * 6
    assert m["accuracy"] == 1.0
    empty = metrics_from_decisions(np.array([], dtype=int), np.array([], dtype=bool))
    assert empty["accuracy"] == 0.0 and empty["n"] == 0


def test_auroc_with_tied_scores_uses_average_ranks():
    labels = np.array([0, 1, 0, 1, 1, 0])
    scores = np.array([0.3, 0.3, 0.3, 0.8, 0.1, 0.8])
    assert auroc(labels, scores) == pytest.approx(skm.roc_auc_score(labels, scores))
    assert auroc(np.array([0, 1]), np.array([0.2, 0.9])) == 1.0
    assert auroc(np.array([1, 0]), np.array([0.2, 0.9])) == 0.0


def test_nll_is_the_mean_log_loss_and_finite_at_certain_mistakes():
    labels, probs = np.array([1, 0, 1]), np.array([0.8, 0.3, 0.6])
    assert nll(labels, probs) == pytest.approx(skm.log_loss(labels, probs))
    assert np.isfinite(nll(np.array([1, 0]), np.array([0.0, 1.0])))


def test_binary_metrics_defaults_to_half_and_passes_the_weights_on():
    labels, probs = np.array([1, 0, 1, 0]), np.array([0.5, 0.49, 0.2, 0.7])
    assert binary_metrics(labels, probs) == binary_metrics(labels, probs, 0.5)
    assert binary_metrics(labels, probs)["threshold"] == 0.5 and binary_metrics(labels, probs)["tp"] == 1
    weights = np.array([3.0, 1.0, 1.0, 1.0])
    weighted = binary_metrics(labels, probs, 0.5, weights)
    assert (weighted["tp"], weighted["fn"], weighted["fp"], weighted["tn"]) == (3.0, 1.0, 1.0, 1.0)
    assert weighted["auroc"] == auroc(labels, probs)  # ranking metrics ignore the weights


@pytest.mark.parametrize(("labels", "preds", "expected"), [
    # tp == fp, tp == fn, fp == tn: ratios whose denominators a sign slip would zero
    ([1, 1, 0, 0], [1, 0, 1, 0], {"precision": 0.5, "recall": 0.5, "f1": 0.5, "fnr": 0.5, "fpr": 0.5}),
    ([1, 1, 1, 0], [1, 1, 1, 1], {"precision": 0.75, "recall": 1.0, "f1": 6 / 7, "fnr": 0.0, "fpr": 1.0}),
    ([1, 1], [1, 0], {"precision": 1.0, "recall": 0.5, "fnr": 0.5, "fpr": 0.0}),  # no negatives: fpr 0
    ([0, 0], [1, 0], {"precision": 0.0, "recall": 0.0, "fnr": 0.0, "fpr": 0.5}),  # no positives: fnr 0
])
def test_rates_on_small_confusions(labels, preds, expected):
    m = metrics_from_decisions(np.array(labels), np.array(preds, dtype=bool))
    for key, value in expected.items():
        assert m[key] == pytest.approx(value), key


# ------------------------------------------------------- the vectorised path (bootstrap resamples) row by row
def _rows(seed: int = 0, r: int = 12, n: int = 40):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, (r, n))
    labels[0] = 1  # one class only: AUROC undefined, MCC 0
    labels[1, :] = 0
    probs = np.round(rng.random((r, n)), 1)  # ties
    preds = probs >= 0.5
    preds[2] = False  # no positive predicted: precision undefined
    return labels, probs, preds


def test_vectorised_confusion_and_rates_agree_with_the_scalar_path_row_by_row():
    from streetvision.metrics.classification import confusion_along_last_axis, rates_from_counts

    labels, probs, preds = _rows()
    weights = np.random.default_rng(1).random(labels.shape) + 0.5
    for w in (None, weights):
        counts = confusion_along_last_axis(labels, preds, w)
        rates = rates_from_counts(*counts)
        assert all(c.shape == (len(labels),) and c.dtype == np.float64 for c in counts)
        for i in range(len(labels)):
            scalar = metrics_from_decisions(labels[i], preds[i], None if w is None else w[i])
            assert [c[i] for c in counts] == pytest.approx([scalar[k] for k in ("tp", "tn", "fp", "fn")], abs=1e-12)
            for key in ("mcc", "accuracy", "precision", "recall", "f1", "fnr", "fpr", "reward"):
                assert rates[key].shape == (len(labels),)
                assert rates[key][i] == pytest.approx(scalar[key], abs=1e-12), (key, i)


def test_rates_of_scalar_counts_and_undefined_ratios():
    from streetvision.metrics.classification import rates_from_counts

    rates = rates_from_counts(3, 4, 1, 2)
    assert float(rates["mcc"]) == pytest.approx((3 * 4 - 1 * 2) / np.sqrt(4 * 5 * 5 * 6))
    assert (float(rates["precision"]), float(rates["recall"]), float(rates["fpr"])) == pytest.approx((0.75, 0.6, 0.2))
    none = rates_from_counts(np.zeros(3), np.full(3, 5.0), np.zeros(3), np.zeros(3))  # no positives at all
    for key in ("mcc", "precision", "recall", "f1", "fnr"):
        assert np.array_equal(none[key], np.zeros(3)), key
    assert np.array_equal(none["accuracy"], np.ones(3)) and np.array_equal(none["fpr"], np.zeros(3))


def test_vectorised_auroc_agrees_row_by_row_and_is_nan_for_one_class():
    from streetvision.metrics.classification import auroc_along_last_axis

    labels, probs, _ = _rows(2)
    out = auroc_along_last_axis(labels, probs)
    assert out.shape == (len(labels),)
    for i in range(len(labels)):
        expected = auroc(labels[i], probs[i])
        assert (np.isnan(out[i]) and expected is None) or out[i] == pytest.approx(expected, abs=1e-12), i
    assert np.isnan(out[0]) and np.isnan(out[1]) and not np.isnan(out[2:]).any()


def test_scalar_metrics_hold_exactly_their_keys():
    out = metrics_from_decisions(np.array([1, 0, 1, 1]), np.array([1, 0, 0, 1]))
    assert set(out) == {"mcc", "accuracy", "precision", "recall", "f1", "fnr", "fpr", "reward", "tp", "tn", "fp",
                        "fn", "n"}
    assert out["mcc"] == pytest.approx(skm.matthews_corrcoef([1, 0, 1, 1], [1, 0, 0, 1]))


def test_softmax_is_float64_stable_and_at_temperature_one_by_default():
    logits = np.array([[0.0, 1.0], [1000.0, 1001.0], [-5.0, 3.0]], dtype=np.float32)
    out = softmax_probs(logits)
    assert out.dtype == np.float64 and np.array_equal(out, softmax_probs(logits, 1.0))
    expected = 1 / (1 + np.exp(-np.array([1.0, 1.0, 8.0])))  # P(class 1) is the sigmoid of the logit gap
    assert out == pytest.approx(expected, abs=1e-12)  # row 2 would overflow exp without the row max
    assert softmax_probs(logits, 2.0) == pytest.approx(1 / (1 + np.exp(-np.array([0.5, 0.5, 4.0]))), abs=1e-12)


def test_nll_clips_in_float64_whatever_the_input():
    sure_and_wrong = np.array([0.0, 1.0], dtype=np.float32)
    assert np.isfinite(nll(np.array([1, 0]), sure_and_wrong))  # 1 - 1e-12 is 1.0 in float32: log(0) there
    assert nll(np.array([1, 0]), sure_and_wrong) == nll(np.array([1, 0]), sure_and_wrong.astype(np.float64))


def test_vectorised_metrics_work_along_the_last_of_any_number_of_axes():
    import warnings

    from streetvision.metrics.classification import auroc_along_last_axis, confusion_along_last_axis, rates_from_counts

    labels, probs, preds = _rows(3, r=12, n=30)
    labels[3] = 0
    labels[3, 7] = 1  # exactly one positive
    labels[4] = 1
    labels[4, 2] = 0  # exactly one negative
    weights = np.arange(labels.size).reshape(labels.shape) % 3 + 1  # integer weights: sums come back as floats
    flat = [confusion_along_last_axis(labels, preds, weights), rates_from_counts(
        *confusion_along_last_axis(labels, preds)), auroc_along_last_axis(labels, probs)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a one-class row is NaN quietly
        cube = [confusion_along_last_axis(labels.reshape(3, 4, 30), preds.reshape(3, 4, 30),
                                          weights.reshape(3, 4, 30)),
                rates_from_counts(*confusion_along_last_axis(labels.reshape(3, 4, 30), preds.reshape(3, 4, 30))),
                auroc_along_last_axis(labels.reshape(3, 4, 30), probs.reshape(3, 4, 30))]
    for a, b in zip(flat[0], cube[0]):
        assert b.shape == (3, 4) and b.dtype == np.float64 and np.array_equal(a, b.ravel())
    for key in flat[1]:
        assert np.array_equal(flat[1][key], cube[1][key].ravel()), key
    assert np.array_equal(flat[2], cube[2].ravel(), equal_nan=True)
    assert flat[2][3] == auroc(labels[3], probs[3]) and flat[2][4] == auroc(labels[4], probs[4])


def test_rates_take_scalars_mixed_with_arrays_and_large_counts():
    from streetvision.metrics.classification import rates_from_counts

    mixed = rates_from_counts(np.array([3, 5]), 4, 1, 2)
    full = rates_from_counts(np.array([3, 5]), np.array([4, 4]), np.array([1, 1]), np.array([2, 2]))
    for key in full:  # fnr = fn / (tp + fn): a scalar over an array
        assert np.array_equal(np.broadcast_to(mixed[key], (2,)), full[key]), key
    big = rates_from_counts(90_000, 80_000, 70_000, 60_000)  # the MCC denominator's product exceeds int64
    expected = (9e4 * 8e4 - 7e4 * 6e4) / np.sqrt(16e4 * 15e4 * 15e4 * 14e4)
    assert float(big["mcc"]) == pytest.approx(expected, rel=1e-12)
