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
