"""Evaluate a bundle through the Predictor (the code a miner runs) on clean images and under validator
conditions, with seeded bootstrap intervals.

Conditions: ``clean`` (the decoded file through the model's preprocessing, no validator processing),
``level0``..``level3`` (each image as the validator sends it at that level: :func:`streetvision.validator.challenge`,
JPEG wire included, seeded per image), and ``validator_mix`` (each image at a level drawn with the validator's
probabilities). Metrics per condition: MCC, accuracy, precision, recall, FNR, FPR and reward
((0.5 MCC + 0.5 accuracy) ** 3) at the validator's reading of the score (it rounds at 0.5), AUROC of the probability,
ECE and Brier of the calibrated probability, coverage / selective risk of the accept policy, and MCC, accuracy and
reward at the deployment prior (``*_deploy``: the validator's 50/50 by default, :mod:`streetvision.validator.prior`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from streetvision.bundle.predictor import Predictor
from streetvision.data.decode import DecodeError, decode_image
from streetvision.eval.bootstrap import bootstrap_many
from streetvision.eval.calibration import calibration_metrics
from streetvision.eval.metrics import auroc, metrics_from_decisions, softmax_probs, validator_decisions
from streetvision.eval.score import validator_score
from streetvision.eval.selective import decided_confidence
from streetvision.validator.challenge import LEVELS, challenge, draw_level
from streetvision.validator.prior import VALIDATOR_PRIOR, prior_weights

CONDITIONS = ("clean", *(f"level{lv}" for lv in LEVELS), "validator_mix")
CI_METRICS = ("mcc", "accuracy", "precision", "recall", "fnr", "fpr", "reward", "auroc", "ece", "brier",
              "coverage", "selective_risk", "mcc_deploy", "accuracy_deploy", "reward_deploy")


@dataclass
class ConditionOutputs:
    """Raw logits and labels of one condition (probabilities derive from the bundle's policy)."""

    logits: np.ndarray
    labels: np.ndarray
    images: list[Image.Image] = field(default_factory=list)  # kept for the mistakes grid (clean only)


def condition_metrics(out: ConditionOutputs, predictor: Predictor, rows: np.ndarray | None = None,
                      prior: float = VALIDATOR_PRIOR) -> dict:
    """All metrics of a condition on ``rows`` (all rows by default); ``*_deploy`` at P(roadwork) = ``prior``."""
    rows = np.arange(len(out.labels)) if rows is None else rows
    y = out.labels[rows]
    policy = predictor.policy
    probs = softmax_probs(out.logits[rows], policy.temperature)
    scores = validator_score(probs, policy.decision_threshold)
    decisions = validator_decisions(scores)
    m: dict = dict(metrics_from_decisions(y, decisions))
    deploy = metrics_from_decisions(y, decisions, prior_weights(y, prior))
    m["mcc_deploy"], m["accuracy_deploy"], m["reward_deploy"] = deploy["mcc"], deploy["accuracy"], deploy["reward"]
    m["auroc"] = auroc(y, probs)
    cal = calibration_metrics(y, probs)
    m["ece"], m["brier"] = cal["ece"], cal["brier"]
    if policy.has_selective:
        decisions, conf = decided_confidence(probs, policy.decision_threshold)
        lam = policy.selective_threshold
        accepted = conf >= lam if lam is not None else np.zeros(len(y), dtype=bool)
        m["coverage"] = float(accepted.mean()) if len(y) else 0.0
        m["selective_risk"] = float((decisions[accepted] != y[accepted]).mean()) if accepted.any() else 0.0
    return m


def score_conditions(predictor: Predictor, images: list[Image.Image], labels: np.ndarray, seed: int,
                     batch_size: int = 64) -> dict[str, ConditionOutputs]:
    """Logits for every condition; each image's challenge is seeded by (seed, index, level)."""
    def logits_of(imgs: list[Image.Image]) -> np.ndarray:
        chunks = [predictor.logits(torch.stack([predictor.preprocess.to_tensor(im) for im in imgs[i:i + batch_size]]))
                  for i in range(0, len(imgs), batch_size)]
        return np.concatenate(chunks) if chunks else np.zeros((0, 2))

    out = {"clean": ConditionOutputs(logits_of(images), labels, list(images))}
    for level in LEVELS:
        distorted = [challenge(im, np.random.default_rng([seed, i, level]), level=level)[0]
                     for i, im in enumerate(images)]
        out[f"level{level}"] = ConditionOutputs(logits_of(distorted), labels)
    mix_rng = np.random.default_rng([seed, 10_000])
    mix_levels = [draw_level(mix_rng) for _ in images]
    mix = np.stack([out[f"level{lv}"].logits[i] for i, lv in enumerate(mix_levels)]) if len(images) else \
        np.zeros((0, 2))
    out["validator_mix"] = ConditionOutputs(mix, labels)
    return out


def load_labelled_images(samples: list[tuple[Path, int]]) -> tuple[list[Image.Image], np.ndarray, list[dict]]:
    """Decode (path, label) pairs; unreadable files are returned as skipped with their reason."""
    images, labels, skipped = [], [], []
    for path, label in samples:
        try:
            images.append(decode_image(path))
            labels.append(label)
        except DecodeError as exc:
            skipped.append({"path": str(path), "reason": exc.reason})
    return images, np.asarray(labels, dtype=np.int64), skipped


def evaluate(predictor: Predictor, images: list[Image.Image], labels: np.ndarray, seed: int = 0,
             n_resamples: int = 1000, prior: float = VALIDATOR_PRIOR) -> tuple[dict[str, ConditionOutputs], dict, dict]:
    """(outputs per condition, metrics summary, bootstrap intervals) for labelled images."""
    outputs = score_conditions(predictor, images, labels, seed)
    summary, intervals = {}, {}
    for name, out in outputs.items():
        summary[name] = condition_metrics(out, predictor, prior=prior)
        cis = bootstrap_many(lambda rows, out=out: condition_metrics(out, predictor, rows, prior), len(labels),
                             n_resamples, seed=seed)
        intervals[name] = {k: v for k, v in cis.items() if k in CI_METRICS}
    return outputs, summary, intervals
