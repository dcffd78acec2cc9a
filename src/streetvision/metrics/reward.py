"""The validator's reward as a metric of (MCC, accuracy): the formula of ``natix/validator/reward.py``. It lives
here, below ``streetvision.validator`` (whose step-by-step tracker and stream use it), so that ``metrics`` never
imports ``validator`` and the two packages do not import each other."""

from __future__ import annotations

import numpy as np

CURVE_EXPONENT = 3.0


def reward_from_metrics(mcc: np.ndarray | float, accuracy: np.ndarray | float) -> np.ndarray | float:
    """The reward at long-run MCC (clipped at 0) and accuracy: (0.5 MCC + 0.5 accuracy) ** 3.

    Per step the validator uses MCC over the last 100 and accuracy over the last 10 answers
    (:class:`streetvision.validator.reward.RewardTracker`); :mod:`streetvision.validator.stream` gives the
    distribution of that payment."""
    return (0.5 * np.maximum(mcc, 0.0) + 0.5 * np.asarray(accuracy, dtype=np.float64)) ** CURVE_EXPONENT
