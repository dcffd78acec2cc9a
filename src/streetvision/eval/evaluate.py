"""Evaluate a bundle through the Predictor (the code a miner runs) on clean images and under validator
conditions, with seeded BCa bootstrap intervals.

Conditions: ``clean`` (the decoded file through the model's preprocessing, no validator processing),
``level0``..``level3`` (each image as the validator sends it at that level: :func:`streetvision.validator.challenges`,
JPEG wire included, seeded per image), and ``validator_mix`` (each image at a level drawn with the validator's
probabilities). Metrics per condition: MCC, accuracy, precision, recall, FNR, FPR and reward
((0.5 MCC + 0.5 accuracy) ** 3) at the validator's reading of the score (it rounds at 0.5), AUROC of the probability,
ECE and Brier of the calibrated probability, coverage / selective risk of the accept policy, and MCC, accuracy and
reward at the deployment prior (``*_deploy``: the validator's 50/50 by default, :mod:`streetvision.validator.prior`).
Every metric is computed from the per-image rows of :mod:`streetvision.eval.predictions`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image

from streetvision.bundle.predictor import Predictor
from streetvision.console import progress
from streetvision.data.decode import DecodeError, decode_image
from streetvision.data.sources import path_text
from streetvision.eval.bootstrap import bootstrap_intervals
from streetvision.metrics.calibration import calibration_metrics, ece_along_last_axis
from streetvision.metrics.classification import (
    auroc,
    auroc_along_last_axis,
    confusion_along_last_axis,
    metrics_from_decisions,
    rates_from_counts,
)
from streetvision.eval.predictions import NO_LEVEL, ConditionPredictions, from_logits
from streetvision.io import sha256_file
from streetvision.validator.challenges import LEVELS, challenge, draw_level
from streetvision.validator.prior import VALIDATOR_PRIOR, prior_weights

if TYPE_CHECKING:
    from rich.console import Console

CONDITIONS = ("clean", *(f"level{lv}" for lv in LEVELS), "validator_mix")
CI_METRICS = ("mcc", "accuracy", "precision", "recall", "fnr", "fpr", "reward", "auroc", "ece", "brier",
              "coverage", "selective_risk", "mcc_deploy", "accuracy_deploy", "reward_deploy")
SELECTIVE_METRICS = ("coverage", "selective_risk")
MIX_SEED = 10_000  # validator_mix draws its levels from default_rng([seed, MIX_SEED])


@dataclass
class ConditionOutputs:
    """Raw logits, labels, and the validator level and challenge parameters each image was seen under."""

    logits: np.ndarray
    labels: np.ndarray
    levels: np.ndarray
    params: list[dict] = field(default_factory=list)


def condition_image(image: Image.Image, seed: int, index: int, level: int) -> Image.Image:
    """The image as the model saw it in a condition: the file itself for ``NO_LEVEL`` (clean), else the validator's
    challenge at ``level`` seeded by (seed, index, level) -- what :func:`score_conditions` scored."""
    if level == NO_LEVEL:
        return image
    return challenge(image, np.random.default_rng([seed, index, level]), level=level)[0]


def score_conditions(predictor: Predictor, images: list[Image.Image], labels: np.ndarray, seed: int,
                     batch_size: int = 64, console: Console | None = None) -> dict[str, ConditionOutputs]:
    """Logits for every condition; each image's challenge is seeded by (seed, index, level). A ``console`` shows a
    progress bar over every (condition, image)."""
    n = len(images)
    with progress(f"scoring clean + levels {LEVELS[0]}-{LEVELS[-1]}", n * (1 + len(LEVELS)), console) as advance:

        def logits_of(image_at: Callable[[int], Image.Image]) -> np.ndarray:
            chunks = []
            for start in range(0, n, batch_size):
                batch = [image_at(i) for i in range(start, min(start + batch_size, n))]
                chunks.append(predictor.logits(torch.stack([predictor.preprocess.to_tensor(im) for im in batch])))
                advance(len(batch))
            return np.concatenate(chunks) if chunks else np.zeros((0, 2))

        out = {"clean": ConditionOutputs(logits_of(images.__getitem__), labels, np.full(n, NO_LEVEL),
                                         [{} for _ in images])}
        for level in LEVELS:
            params: list[dict] = []

            def challenged(i: int, level: int = level, params: list[dict] = params) -> Image.Image:
                image, _, drawn = challenge(images[i], np.random.default_rng([seed, i, level]), level=level)
                params.append(drawn)
                return image

            out[f"level{level}"] = ConditionOutputs(logits_of(challenged), labels, np.full(n, level), params)
    mix_rng = np.random.default_rng([seed, MIX_SEED])
    mix_levels = np.array([draw_level(mix_rng) for _ in images], dtype=np.int64)
    mix = np.stack([out[f"level{lv}"].logits[i] for i, lv in enumerate(mix_levels)]) if n else np.zeros((0, 2))
    out["validator_mix"] = ConditionOutputs(mix, labels, mix_levels,
                                            [out[f"level{lv}"].params[i] for i, lv in enumerate(mix_levels)])
    return out


def to_predictions(outputs: dict[str, ConditionOutputs], predictor: Predictor, sample_ids: list[str],
                   image_sha256: list[str]) -> dict[str, ConditionPredictions]:
    """The per-image rows of every condition under the bundle's policy."""
    policy = predictor.policy
    return {name: from_logits(out.logits, out.labels, out.levels, out.params, sample_ids, image_sha256,
                              policy.temperature, policy.decision_threshold, policy.selective_threshold,
                              policy.has_selective)
            for name, out in outputs.items()}


def condition_metrics(pred: ConditionPredictions, prior: float = VALIDATOR_PRIOR) -> dict:
    """All metrics of one condition from its rows; ``*_deploy`` at P(roadwork) = ``prior``."""
    y = pred.labels
    m: dict = dict(metrics_from_decisions(y, pred.decision))
    deploy = metrics_from_decisions(y, pred.decision, prior_weights(y, prior))
    m["mcc_deploy"], m["accuracy_deploy"], m["reward_deploy"] = deploy["mcc"], deploy["accuracy"], deploy["reward"]
    m["auroc"] = auroc(y, pred.probability)
    cal = calibration_metrics(y, pred.probability)
    m["ece"], m["brier"] = cal["ece"], cal["brier"]
    if pred.accepted is not None:
        accepted = pred.accepted
        m["coverage"] = float(accepted.mean()) if len(y) else 0.0
        m["selective_risk"] = float((~pred.correct[accepted]).mean()) if accepted.any() else 0.0
    return m


def _deploy_weights(labels: np.ndarray, prior: float) -> np.ndarray:
    """:func:`prior_weights` of each row of ``labels`` (ones where a row holds one class, as unweighted)."""
    flat = labels.reshape(-1, labels.shape[-1])
    w = np.ones(flat.shape)
    for i, row in enumerate(flat):
        wi = prior_weights(row, prior)
        if wi is not None:
            w[i] = wi
    return w.reshape(labels.shape)


def threshold_metrics_along_last_axis(labels: np.ndarray, decisions: np.ndarray, prior: float) -> dict:
    """Threshold metrics and their ``*_deploy`` versions over the last axis (vectorised over resamples)."""
    rates = rates_from_counts(*confusion_along_last_axis(labels, decisions))
    deploy = rates_from_counts(*confusion_along_last_axis(labels, decisions, _deploy_weights(labels, prior)))
    return {**rates, "mcc_deploy": deploy["mcc"], "accuracy_deploy": deploy["accuracy"],
            "reward_deploy": deploy["reward"]}


def interval_names(pred: ConditionPredictions) -> tuple[str, ...]:
    """The metrics with intervals for a condition (coverage and selective risk need a selective policy)."""
    return tuple(k for k in CI_METRICS if pred.accepted is not None or k not in SELECTIVE_METRICS)


def condition_intervals(pred: ConditionPredictions, n_resamples: int, seed: int,
                        prior: float = VALIDATOR_PRIOR) -> dict:
    """Paired BCa intervals (images resampled with all their columns) of every metric in ``interval_names``;
    one vectorised pass per resample batch (:func:`streetvision.eval.bootstrap.bootstrap_intervals`)."""
    names = interval_names(pred)
    accepted = pred.accepted if pred.accepted is not None else np.zeros(len(pred), dtype=bool)

    def statistic(y, p, d, correct, acc):
        values = threshold_metrics_along_last_axis(y, d, prior)
        values["auroc"] = auroc_along_last_axis(y, p)
        values["ece"] = ece_along_last_axis(y, p)
        values["brier"] = np.mean((p - y) ** 2, axis=-1)
        n_acc = acc.sum(-1)
        values["coverage"] = n_acc / y.shape[-1]
        values["selective_risk"] = np.divide((acc & ~correct).sum(-1), n_acc,
                                             out=np.zeros(n_acc.shape), where=n_acc > 0)
        return np.stack([np.broadcast_to(values[k], y.shape[:-1]) for k in names])

    return bootstrap_intervals([pred.labels, pred.probability, pred.decision, pred.correct, accepted], statistic,
                               names, n_resamples, seed)


def common_root(paths: list[Path]) -> Path:
    """The deepest folder holding every path (the data root sample ids are relative to)."""
    if not paths:
        return Path(".")
    return Path(os.path.commonpath([str(Path(p).absolute().parent) for p in paths]))


def load_samples(samples: list[tuple[Path, int]], console: Console | None = None,
                 ) -> tuple[list[Image.Image], np.ndarray, list[Path], list[dict]]:
    """Decode (path, label) pairs: (images, labels, their paths, skipped files with the reason); a ``console``
    shows a progress bar."""
    images, labels, kept, skipped = [], [], [], []
    with progress("decoding images", len(samples), console) as advance:
        for path, label in samples:
            try:
                images.append(decode_image(path))
                labels.append(label)
                kept.append(Path(path))
            except DecodeError as exc:
                skipped.append({"path": str(path), "reason": exc.reason})
            advance()
    return images, np.asarray(labels, dtype=np.int64), kept, skipped


def load_labelled_images(samples: list[tuple[Path, int]], console: Console | None = None,
                         ) -> tuple[list[Image.Image], np.ndarray, list[dict]]:
    """Decode (path, label) pairs; unreadable files are returned as skipped with their reason."""
    images, labels, _, skipped = load_samples(samples, console)
    return images, labels, skipped


def predict_conditions(predictor: Predictor, images: list[Image.Image], labels: np.ndarray, seed: int = 0,
                       paths: list[Path] | None = None, console: Console | None = None,
                       ) -> tuple[dict[str, ConditionPredictions], Path]:
    """(per-image predictions per condition, the data root sample ids are relative to); ``paths`` (the files the
    images came from) give the sample ids and content hashes; a ``console`` shows progress bars."""
    paths = paths if paths is not None else [Path(f"image_{i:05d}") for i in range(len(images))]
    root = common_root(paths)
    sample_ids = [path_text(Path(os.path.relpath(Path(p).absolute(), root)).as_posix()) for p in paths]
    hashes = []
    with progress("hashing images", len(paths), console) as advance:
        for p in paths:
            hashes.append(sha256_file(p) if Path(p).is_file() else "")
            advance()
    outputs = score_conditions(predictor, images, labels, seed, console=console)
    return to_predictions(outputs, predictor, sample_ids, hashes), root


def evaluate(predictor: Predictor, images: list[Image.Image], labels: np.ndarray, seed: int = 0,
             n_resamples: int = 1000, prior: float = VALIDATOR_PRIOR, paths: list[Path] | None = None,
             ) -> tuple[dict[str, ConditionPredictions], dict, dict]:
    """(per-image predictions per condition, metrics summary, bootstrap intervals) for labelled images."""
    predictions, _ = predict_conditions(predictor, images, labels, seed, paths)
    return predictions, *summarise(predictions, n_resamples, seed, prior)


def summarise(predictions: dict[str, ConditionPredictions], n_resamples: int, seed: int,
              prior: float = VALIDATOR_PRIOR) -> tuple[dict, dict]:
    """(metrics per condition, intervals per condition) from per-image predictions."""
    summary = {name: condition_metrics(p, prior) for name, p in predictions.items()}
    intervals = {name: condition_intervals(p, n_resamples, seed, prior) for name, p in predictions.items()}
    return summary, intervals
