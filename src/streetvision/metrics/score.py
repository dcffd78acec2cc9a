"""The validator score: the float a miner returns for an image.

A monotone, piecewise-linear map of the calibrated probability p with the decision threshold t at its kink:

    p <  t :  score = 0.5 * p / t                          (in [0, 0.5))
    p >= t :  score = 0.5 + EPS + (0.5 - EPS) * (p - t) / (1 - t)   (in (0.5, 1])

so the validator, which reads roadwork when the score rounds up (score > 0.5), takes exactly our decision
(p >= t), and scores stay in [0, 1] and keep the ranking of p (AUROC is unchanged).
"""

from __future__ import annotations

import numpy as np

EPS = 1e-6


def validator_score(probs: np.ndarray | float, threshold: float) -> np.ndarray:
    """Map calibrated P(roadwork) to the miner's float in [0, 1] (see module docstring)."""
    p = np.clip(np.asarray(probs, dtype=np.float64), 0.0, 1.0)
    t = float(threshold)
    if t <= 0.0:
        return 0.5 + EPS + (0.5 - EPS) * p
    low = 0.5 * p / t
    high = 0.5 + EPS + (0.5 - EPS) * ((p - t) / (1 - t) if t < 1.0 else np.ones_like(p))
    return np.where(p >= t, high, low)
