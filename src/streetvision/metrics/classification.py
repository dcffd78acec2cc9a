"""The one metrics module: every metric the project reports is computed here (and agrees with scikit-learn).

Conventions: label 1 is the positive class (roadwork); ``probs`` are P(roadwork); a prediction is positive when
``prob >= threshold``... except at the validator's rounding, where a score is positive when ``score > 0.5``
(see :func:`validator_decisions`). Undefined ratios (no positives, say) are 0.0, as scikit-learn reports them,
and AUROC is None when only one class is present.
"""

from __future__ import annotations

import numpy as np

from streetvision.metrics.reward import reward_from_metrics

VALIDATOR_ROUNDING = 0.5


def softmax_probs(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """P(positive) from [N, 2] logits (softmax at ``temperature``), float64."""
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e[:, 1] / e.sum(axis=1)


def confusion(labels: np.ndarray, preds: np.ndarray, weights: np.ndarray | None = None) -> tuple[float, ...]:
    """(tp, tn, fp, fn) for binary labels and predictions: counts, or sums of per-sample ``weights``."""
    y, p = np.asarray(labels).astype(bool), np.asarray(preds).astype(bool)
    if weights is None:
        return int((y & p).sum()), int((~y & ~p).sum()), int((~y & p).sum()), int((y & ~p).sum())
    w = np.asarray(weights, dtype=np.float64)
    return float(w[y & p].sum()), float(w[~y & ~p].sum()), float(w[~y & p].sum()), float(w[y & ~p].sum())


def confusion_along_last_axis(labels: np.ndarray, preds: np.ndarray,
                              weights: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
    """(tp, tn, fp, fn) as float arrays over the last axis (a batch of bootstrap resamples, say)."""
    y, p = np.asarray(labels).astype(bool), np.asarray(preds).astype(bool)
    w = np.ones(y.shape) if weights is None else np.asarray(weights, dtype=np.float64)
    return ((w * (y & p)).sum(-1), (w * (~y & ~p)).sum(-1), (w * (~y & p)).sum(-1), (w * (y & ~p)).sum(-1))


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, 0.0 where den is 0 (scikit-learn's convention for undefined ratios)."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den != 0)


def rates_from_counts(tp, tn, fp, fn) -> dict[str, np.ndarray]:
    """MCC, accuracy, precision, recall, F1, FNR, FPR and the validator reward from confusion counts (scalars or
    arrays of any shape); undefined ratios are 0.0."""
    tp, tn, fp, fn = (np.asarray(v, dtype=np.float64) for v in (tp, tn, fp, fn))
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    accuracy = _ratio(tp + tn, tp + tn + fp + fn)
    mcc = _ratio(tp * tn - fp * fn, np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)))
    return {"mcc": mcc, "accuracy": accuracy, "precision": precision, "recall": recall,
            "f1": _ratio(2 * precision * recall, precision + recall), "fnr": _ratio(fn, tp + fn),
            "fpr": _ratio(fp, fp + tn), "reward": np.asarray(reward_from_metrics(mcc, accuracy))}


def mcc_from_counts(tp: int, tn: int, fp: int, fn: int) -> float:
    """Matthews correlation coefficient; 0.0 when undefined."""
    denom = float(tp + fp) * float(tp + fn) * float(tn + fp) * float(tn + fn)
    return 0.0 if denom == 0 else (float(tp) * tn - float(fp) * fn) / np.sqrt(denom)


def auroc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """Area under the ROC curve (Mann-Whitney with average ranks for ties); None with a single class."""
    y = np.asarray(labels).astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    s = np.asarray(scores, dtype=np.float64)
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=np.float64)
    sorted_s = s[order]
    boundaries = np.flatnonzero(np.diff(sorted_s)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [len(s)]])
    for a, b in zip(starts, ends):
        ranks[order[a:b]] = (a + b + 1) / 2.0
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def auroc_along_last_axis(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """AUROC over the last axis (average ranks for ties), NaN where a row holds one class only."""
    from scipy.stats import rankdata

    y = np.asarray(labels).astype(bool)
    ranks = rankdata(np.asarray(scores, dtype=np.float64), axis=-1)
    n_pos, n_neg = y.sum(-1).astype(np.float64), (~y).sum(-1).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        value = ((ranks * y).sum(-1) - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)
    return np.where((n_pos > 0) & (n_neg > 0), value, np.nan)


def metrics_from_decisions(labels: np.ndarray, preds: np.ndarray,
                           weights: np.ndarray | None = None) -> dict[str, float | int]:
    """Threshold metrics from hard decisions (``weights``: per sample, e.g. to a deployment prior)."""
    tp, tn, fp, fn = confusion(labels, preds, weights)
    out: dict[str, float | int] = {k: float(v) for k, v in rates_from_counts(tp, tn, fp, fn).items()}
    out["mcc"] = mcc_from_counts(tp, tn, fp, fn)  # scalar arithmetic, as before the vectorised path existed
    out["reward"] = float(reward_from_metrics(out["mcc"], out["accuracy"]))
    out.update(tp=tp, tn=tn, fp=fp, fn=fn, n=tp + tn + fp + fn)
    return out


def binary_metrics(labels: np.ndarray, probs: np.ndarray, threshold: float = 0.5,
                   weights: np.ndarray | None = None) -> dict[str, float | int | None]:
    """MCC, accuracy, precision, recall, F1, FNR, FPR, validator reward and AUROC at ``prob >= threshold``."""
    probs = np.asarray(probs, dtype=np.float64)
    out: dict[str, float | int | None] = dict(metrics_from_decisions(labels, probs >= threshold, weights))
    out["auroc"] = auroc(labels, probs)
    out["threshold"] = float(threshold)
    return out


def validator_decisions(scores: np.ndarray) -> np.ndarray:
    """How the validator reads a miner's float: roadwork when the score rounds to 1 (score > 0.5)."""
    return np.asarray(scores, dtype=np.float64) > VALIDATOR_ROUNDING


def nll(labels: np.ndarray, probs: np.ndarray) -> float:
    """Mean negative log-likelihood of binary labels under P(positive)."""
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1 - 1e-12)
    y = np.asarray(labels).astype(bool)
    return float(-np.mean(np.where(y, np.log(p), np.log1p(-p))))

