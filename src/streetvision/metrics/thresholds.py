"""Decision-threshold sweep on P(roadwork) and selection by MCC, the validator reward, or FNR-constrained FPR.

Tie rule: among thresholds that reach the best value, take the widest contiguous run of grid points (the first
such run if several are equally wide) and return its middle point, the choice least sensitive to small shifts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streetvision.errors import ConfigError
from streetvision.metrics.reward import reward_from_metrics

SELECTION_METRICS = ("mcc", "validator_reward", "fnr_constrained")


@dataclass(frozen=True)
class Sweep:
    """Metrics at each threshold of the grid (prediction positive when prob >= threshold)."""

    thresholds: np.ndarray
    mcc: np.ndarray
    accuracy: np.ndarray
    fnr: np.ndarray
    fpr: np.ndarray
    reward: np.ndarray


def _weighted_above(values: np.ndarray, weights: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Sum of ``weights`` of ``values >= t`` for each threshold."""
    order = np.argsort(values, kind="mergesort")
    tail = np.concatenate([np.cumsum(weights[order][::-1])[::-1], [0.0]])
    return tail[np.searchsorted(values[order], t, side="left")]


def sweep(labels: np.ndarray, probs: np.ndarray, n_thresholds: int, weights: np.ndarray | None = None) -> Sweep:
    """Vectorised sweep over ``n_thresholds`` evenly spaced thresholds in [0, 1]; ``weights`` (per sample, e.g.
    :func:`streetvision.validator.prior_weights`) give the confusion counts at another class prior."""
    y = np.asarray(labels).astype(bool)
    p = np.asarray(probs, dtype=np.float64)
    w = np.ones(len(p)) if weights is None else np.asarray(weights, dtype=np.float64)
    t = np.linspace(0.0, 1.0, int(n_thresholds))
    tp, fp = _weighted_above(p[y], w[y], t), _weighted_above(p[~y], w[~y], t)
    fn, tn = w[y].sum() - tp, w[~y].sum() - fp
    denom = np.sqrt(np.maximum((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn), 0.0))  # weighted sums: -1e-17, not < 0
    mcc = np.divide(tp * tn - fp * fn, denom, out=np.zeros_like(denom), where=denom > 0)
    acc = (tp + tn) / w.sum() if len(p) else np.zeros_like(t)
    fnr = np.divide(fn, tp + fn, out=np.zeros_like(fn), where=(tp + fn) > 0)
    fpr = np.divide(fp, fp + tn, out=np.zeros_like(fp), where=(fp + tn) > 0)
    return Sweep(t, mcc, acc, fnr, fpr, reward_from_metrics(mcc, acc))


def objective(s: Sweep, metric: str, max_fnr: float = 0.05) -> np.ndarray:
    """The value maximised by ``metric`` at each threshold (-inf where a constraint fails)."""
    if metric == "mcc":
        return s.mcc
    if metric == "validator_reward":
        return s.reward
    if metric == "fnr_constrained":
        return np.where(s.fnr <= max_fnr + 1e-12, -s.fpr, -np.inf)
    raise ConfigError(f"Unknown phase2.metric '{metric}'. Valid choices: {', '.join(SELECTION_METRICS)}.",
                      "set phase2.metric=mcc|validator_reward|fnr_constrained.")


def best_index(values: np.ndarray, atol: float = 1e-12) -> int:
    """Middle of the widest run of grid points attaining the maximum (see module docstring)."""
    best = values >= np.max(values) - atol
    runs, start = [], None
    for i, flag in enumerate(np.append(best, False)):
        if flag and start is None:
            start = i
        elif not flag and start is not None:
            runs.append((start, i - 1))
            start = None
    a, b = max(runs, key=lambda r: (r[1] - r[0], -r[0]))
    return (a + b) // 2


def select_threshold(labels: np.ndarray, probs: np.ndarray, metric: str, n_thresholds: int,
                     max_fnr: float = 0.05, weights: np.ndarray | None = None) -> tuple[float, Sweep]:
    """Best threshold by ``metric`` (at the class prior ``weights`` give) and the full sweep."""
    s = sweep(labels, probs, n_thresholds, weights)
    return float(s.thresholds[best_index(objective(s, metric, max_fnr))]), s
