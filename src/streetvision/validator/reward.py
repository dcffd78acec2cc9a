"""How the validator pays a miner, step by step.

Facts carried over from the published validator (``natix/validator/reward.py``,
``natix/validator/miner_performance_tracker.py``, ``natix/validator/config.py``):

- The validator keeps each miner's last 100 (answer, label) pairs. An answer of -1 means "no answer".
- After each challenge it computes, over the last 100 and the last 10 pairs (dropping -1 answers), the answers
  rounded with ``np.round`` (half to even: 0.5 -> 0, so "roadwork" needs an answer above 0.5), MCC clipped at 0
  (0 when the window holds one class only) and accuracy.
- The step's reward is ``(0.5 * MCC(last 100) + 0.5 * accuracy(last 10)) ** 3``, multiplied (before the cube) by
  0 when the answer lies outside [0, 1]; no answer earns 0.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from streetvision.metrics.reward import CURVE_EXPONENT, reward_from_metrics

__all__ = ["ACCURACY_WINDOW", "CURVE_EXPONENT", "HISTORY", "MCC_WINDOW", "NO_ANSWER", "RewardTracker", "penalty",
           "reward_from_metrics", "window_metrics"]  # the formula itself lives in metrics.reward

HISTORY = 100
MCC_WINDOW = 100
ACCURACY_WINDOW = 10
NO_ANSWER = -1.0


def penalty(answer: float) -> float:
    """1 for an answer in [0, 1], else 0."""
    return 0.0 if answer < 0.0 or answer > 1.0 else 1.0


def window_metrics(answers: list[float], labels: list[int], window: int) -> dict[str, float]:
    """Accuracy and clipped MCC of the last ``window`` pairs, as the validator computes them."""
    answers, labels = answers[-window:], labels[-window:]
    keep = [i for i, a in enumerate(answers) if a != NO_ANSWER]
    if not keep:
        return {"accuracy": 0.0, "mcc": 0.0, "n": 0}
    y = np.asarray([labels[i] for i in keep], dtype=np.float64)
    pred = np.round(np.asarray([answers[i] for i in keep], dtype=np.float64))
    accuracy = float(np.mean(pred == y))
    if len(np.unique(y)) < 2:
        mcc = 0.0
    else:  # scikit-learn, as the validator (an out-of-range answer rounds to a third class there too)
        from sklearn.metrics import matthews_corrcoef

        mcc = float(matthews_corrcoef(y, pred))
    return {"accuracy": accuracy, "mcc": max(0.0, float(mcc)), "n": len(keep)}


@dataclass
class RewardTracker:
    """One miner's history and per-step reward, as the validator keeps them."""

    history: int = HISTORY
    answers: deque = field(init=False)
    labels: deque = field(init=False)

    def __post_init__(self) -> None:
        self.answers = deque(maxlen=self.history)
        self.labels = deque(maxlen=self.history)

    def update(self, answer: float, label: int) -> float:
        """Record one challenge and return the reward the validator pays for it."""
        answer = float(answer)
        self.answers.append(answer)
        self.labels.append(int(label))
        if answer == NO_ANSWER:
            return 0.0
        answers, labels = list(self.answers), list(self.labels)
        mcc = window_metrics(answers, labels, MCC_WINDOW)["mcc"]
        accuracy = window_metrics(answers, labels, ACCURACY_WINDOW)["accuracy"]
        return float((penalty(answer) * (0.5 * mcc + 0.5 * accuracy)) ** CURVE_EXPONENT)
