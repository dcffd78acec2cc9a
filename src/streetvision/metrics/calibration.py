"""Calibration metrics and temperature-scaled probabilities (the fit itself, by LBFGS in torch, is
:func:`streetvision.models.temperature.fit_temperature`).

ECE and MCE use equal-width bins of the top-label confidence (the probability of the predicted class, class 0 on
an exact tie) and the top-label accuracy, binned as torchmetrics bins them (a confidence on a bin edge goes to the
upper bin). Brier score and NLL are for P(roadwork).
"""

from __future__ import annotations

import numpy as np

from streetvision.metrics.classification import nll, softmax_probs

N_BINS = 15


def top_label(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(confidence of the predicted class, predicted class) from P(positive); ties predict class 0."""
    p = np.asarray(probs, dtype=np.float64)
    pred = (p > 0.5).astype(np.int64)
    return np.where(pred == 1, p, 1 - p), pred


def bin_index(confidence: np.ndarray, n_bins: int = N_BINS) -> np.ndarray:
    """The equal-width bin of each confidence (an edge goes to the upper bin; 1.0 to the last bin)."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return np.clip(np.searchsorted(edges, confidence, side="right") - 1, 0, n_bins - 1)


def reliability(labels: np.ndarray, probs: np.ndarray, n_bins: int = N_BINS) -> list[dict[str, float]]:
    """Per-bin count, mean confidence and accuracy of the top label (for ECE/MCE and reliability plots)."""
    conf, pred = top_label(probs)
    correct = (pred == np.asarray(labels)).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = bin_index(conf, n_bins)
    bins = []
    for b in range(n_bins):
        sel = idx == b
        count = int(sel.sum())
        bins.append({"lower": float(edges[b]), "upper": float(edges[b + 1]), "count": count,
                     "confidence": float(conf[sel].mean()) if count else None,
                     "accuracy": float(correct[sel].mean()) if count else None})
    return bins


def ece_along_last_axis(labels: np.ndarray, probs: np.ndarray, n_bins: int = N_BINS) -> np.ndarray:
    """ECE over the last axis (rows are, say, bootstrap resamples); per bin, count * |accuracy - confidence| is
    |sum of correct - sum of confidences|, so no per-bin division is needed."""
    conf, pred = top_label(probs)
    correct = (pred == np.asarray(labels)).astype(np.float64)
    onehot = bin_index(conf, n_bins)[..., None] == np.arange(n_bins)  # [..., n, bins]
    gap = np.abs(np.einsum("...nb,...n->...b", onehot, correct - conf))
    n = conf.shape[-1]
    return gap.sum(-1) / n if n else np.zeros(conf.shape[:-1])


def calibration_metrics(labels: np.ndarray, probs: np.ndarray, n_bins: int = N_BINS) -> dict:
    """ECE, MCE, Brier, NLL and accuracy of P(positive), plus the reliability bins."""
    y = np.asarray(labels)
    p = np.asarray(probs, dtype=np.float64)
    bins = reliability(y, p, n_bins)
    gaps = [(b["count"], abs(b["accuracy"] - b["confidence"])) for b in bins if b["count"]]
    n = len(y)
    _, pred = top_label(p)
    return {
        "ece": float(sum(c * g for c, g in gaps) / n) if n else 0.0,
        "mce": float(max((g for _, g in gaps), default=0.0)),
        "brier": float(np.mean((p - y) ** 2)) if n else 0.0,
        "nll": nll(y, p),
        "accuracy": float(np.mean(pred == y)) if n else 0.0,
        "n": n,
        "bins": bins,
    }


def calibrated_probs(logits: np.ndarray, temperature: float) -> np.ndarray:
    """P(positive) after temperature scaling."""
    return softmax_probs(logits, temperature)


def recalibrated_threshold(threshold: float, temperature: float) -> float:
    """The threshold on calibrated probabilities that gives the same decisions as ``threshold`` at T = 1
    (P = sigmoid(z) and P_T = sigmoid(z / T) are both increasing in the logit gap z)."""
    t = min(max(threshold, 1e-15), 1 - 1e-15)
    z = np.log(t) - np.log1p(-t)
    return float(1.0 / (1.0 + np.exp(-z / temperature))) if 0 < threshold < 1 else float(threshold)
