"""Class-wise conformal risk control (Angelopoulos et al., "Conformal Risk Control", ICLR 2024) of each class's miss
rate, the selective policy ``phase5.policy=crc_classwise``.

Prediction set: ``C(x) = {k : p_k(x) >= t_k}`` on calibrated probabilities (``p_roadwork = P``, ``p_no = 1 - P``).
Loss for an image of class k: 1 when k is not in ``C(x)`` (a miss; bounded by B = 1, non-increasing as t_k falls).
Per class, on that class's n_k calibration images, CRC picks the largest t_k with
``(n_k * miss_rate_k(t_k) + B) / (n_k + 1) <= alpha``; then for a new exchangeable image of class k,
``E[1{k not in C(X)} | Y = k] <= alpha``: each class's miss rate is bounded on average over calibration draws. With a
0/1 loss this is the class-conditional split-conformal quantile: t_k = the (m + 1)-th smallest p_k among class k,
``m = floor(alpha * (n_k + 1)) - 1``; feasible only when ``alpha >= 1 / (n_k + 1)``.

Decision: an image is accepted when its set is exactly the class the decision threshold chose (one class, the
decided one); otherwise (both classes, none, or the other class) it is deferred. A miner still answers a deferred
image with the decision; the flag says which answers the guarantee does not vouch for.
"""

from __future__ import annotations

import math

import numpy as np

from streetvision.errors import ConfigError


def class_probabilities(probs: np.ndarray) -> np.ndarray:
    """[N, 2]: (P(no_roadwork), P(roadwork)) from calibrated P(roadwork)."""
    p = np.asarray(probs, dtype=np.float64)
    return np.stack([1 - p, p], axis=1)


def check_alpha(alpha: float, class_counts: dict[str, int]) -> None:
    """ConfigError unless alpha is in (0, 1) and >= 1 / (n_k + 1) for every class (else no threshold certifies)."""
    if not 0 < alpha < 1:
        raise ConfigError(f"phase5.alpha={alpha} must lie in (0, 1): it is the miss rate allowed per class.",
                          "use e.g. phase5.alpha=0.1.")
    short = {name: n for name, n in class_counts.items() if alpha < 1 / (n + 1)}
    if short:
        need = max(math.ceil(1 / alpha) - 1 - n for n in short.values())
        raise ConfigError(
            f"phase5.alpha={alpha} is infeasible for class-wise CRC with these calibration images: "
            + ", ".join(f"{name} has {n}" for name, n in short.items())
            + f"; a class needs at least {math.ceil(1 / alpha) - 1} (alpha >= 1 / (n + 1)).",
            f"raise phase5.alpha to >= {1 / (min(short.values()) + 1):.3f}, or add {need} or more calibration images "
            "of that class (data.splits.val_calib).")


def classwise_thresholds(probs: np.ndarray, labels: np.ndarray, alpha: float,
                         class_names: list[str]) -> np.ndarray:
    """Per class k, the largest t_k whose CRC bound on class k's miss rate is <= alpha (module docstring)."""
    p = class_probabilities(probs)
    y = np.asarray(labels, dtype=np.int64)
    check_alpha(alpha, {name: int((y == k).sum()) for k, name in enumerate(class_names)})
    out = np.empty(2)
    for k in range(2):
        scores = np.sort(p[y == k, k])
        m = math.floor(alpha * (len(scores) + 1)) - 1  # misses allowed: (m + 1) / (n + 1) <= alpha
        out[k] = scores[m]
    return out


def prediction_sets(probs: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """[N, 2] bool: whether each class is in the image's set."""
    return class_probabilities(probs) >= np.asarray(thresholds, dtype=np.float64)[None, :]


def crc_accepted(probs: np.ndarray, decisions: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Accepted iff the set is exactly {the decided class}."""
    sets = prediction_sets(probs, thresholds)
    d = np.asarray(decisions, dtype=np.int64)
    return (sets.sum(axis=1) == 1) & sets[np.arange(len(d)), d]


def classwise_report(probs: np.ndarray, labels: np.ndarray, decisions: np.ndarray, thresholds: np.ndarray,
                     class_names: list[str]) -> dict[str, dict[str, float]]:
    """Per class: images, miss rate (class not in its set: what CRC bounds), coverage (accepted share) and the
    false-negative rate among its accepted images (decided as the other class although accepted)."""
    sets = prediction_sets(probs, thresholds)
    y = np.asarray(labels, dtype=np.int64)
    accepted = crc_accepted(probs, decisions, thresholds)
    out = {}
    for k, name in enumerate(class_names):
        mine = y == k
        n = int(mine.sum())
        acc = accepted & mine
        out[name] = {"n": n, "miss_rate": float((~sets[mine, k]).mean()) if n else 0.0,
                     "coverage": float(acc.sum() / n) if n else 0.0,
                     "accepted_fnr": float((np.asarray(decisions)[acc] != k).mean()) if acc.any() else 0.0}
    return out
