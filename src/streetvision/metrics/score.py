"""The validator score: the float a miner returns for an image, defined once for every way we serve a model.

With p the calibrated probability of roadwork and t the decision threshold,

    score = sigmoid(logit(p) - logit(t))

which is exactly what the Hugging Face export computes (temperature and threshold folded into its classifier, so
``transformers.pipeline``'s softmax "Roadwork" score is this float): the bundle's Predictor, ``from_pretrained`` on
the export and the NATIX miner's pipeline return the same number. The score is monotone in p (AUROC unchanged),
lies in (0, 1), and crosses 0.5 at p = t; at p = t exactly it is nudged just above 0.5, so the validator, which
reads roadwork when the score rounds up (score > 0.5), takes exactly our decision (p >= t).
"""

from __future__ import annotations

import math

import numpy as np

THRESHOLD_CLIP = 1e-6  # thresholds are clipped to [1e-6, 1 - 1e-6] before their log-odds are taken
PROB_CLIP = 1e-12
ABOVE_HALF = float(np.nextafter(0.5, 1.0))
# how bundle.json names this map (its "score_map"); bundles naming another one predate it
SCORE_MAP = "streetvision.metrics.score.validator_score: sigmoid(logit(p) - logit(t))"


def logit(p: float) -> float:
    """log(p / (1 - p)) of a threshold, with p clipped to [THRESHOLD_CLIP, 1 - THRESHOLD_CLIP]."""
    p = min(max(float(p), THRESHOLD_CLIP), 1 - THRESHOLD_CLIP)
    return math.log(p) - math.log1p(-p)


def validator_score(probs: np.ndarray | float, threshold: float) -> np.ndarray:
    """Map calibrated P(roadwork) to the miner's float (see module docstring)."""
    p = np.clip(np.asarray(probs, dtype=np.float64), PROB_CLIP, 1 - PROB_CLIP)
    z = np.log(p) - np.log1p(-p) - logit(threshold)
    score = 1.0 / (1.0 + np.exp(-z))
    roadwork = np.asarray(probs, dtype=np.float64) >= float(threshold)
    return np.where(roadwork, np.maximum(score, ABOVE_HALF), np.minimum(score, 0.5))
