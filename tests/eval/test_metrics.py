import numpy as np
import pytest
from sklearn import metrics as skm

from streetvision.eval.metrics import auroc, binary_metrics, softmax_probs


@pytest.mark.parametrize("seed", range(5))
def test_metrics_agree_with_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 400))
    labels = rng.integers(0, 2, n)
    probs = np.round(rng.random(n), 2)  # rounding creates ties
    t = float(rng.uniform(0.2, 0.8))
    m = binary_metrics(labels, probs, t)
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
