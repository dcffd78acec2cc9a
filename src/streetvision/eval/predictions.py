"""The per-image evidence behind an evaluation: ``evaluation/predictions.csv``, one row per image and condition.

Every number and figure of the report is computed from this table (:mod:`streetvision.eval.report` reads it back),
so a user can sort it, find the photos that fail, and recompute any metric. Columns:

    condition                 clean, level0 .. level3, validator_mix
    image_index               the image's position in the evaluated set (the challenge seed is [seed, index, level])
    sample_id                 the file path relative to ``data_root`` (recorded in metrics_summary.json's meta)
    image_sha256              SHA-256 of the file (two evaluations compare only when these agree)
    label                     true class index (1 = roadwork)
    level                     the validator challenge level the model saw (empty for clean)
    distortion                the challenge's parameters as JSON (rotation, crop, distortion levels, wire JPEG)
    probability_uncalibrated  P(roadwork) at temperature 1
    probability               calibrated P(roadwork) (the bundle's temperature)
    score                     the float the miner returns (:func:`streetvision.metrics.score.validator_score`)
    decision                  the validator's reading of the score (1 when score > 0.5)
    accepted                  the accept/defer policy's answer (empty when the bundle has no selective policy)
    correct                   decision == label
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streetvision.errors import IntegrityError
from streetvision.metrics.classification import softmax_probs, validator_decisions
from streetvision.metrics.score import validator_score
from streetvision.metrics.policy import Policy
from streetvision.io import atomic_write_csv

PREDICTIONS_CSV = "predictions.csv"
COLUMNS = ("condition", "image_index", "sample_id", "image_sha256", "label", "level", "distortion",
           "probability_uncalibrated", "probability", "score", "decision", "accepted", "correct")
NO_LEVEL = -1  # the clean condition: no validator processing


@dataclass(frozen=True)
class ConditionPredictions:
    """One condition's rows of predictions.csv, as aligned columns."""

    image_index: np.ndarray
    sample_ids: list[str]
    image_sha256: list[str]
    labels: np.ndarray
    levels: np.ndarray  # NO_LEVEL for clean
    distortions: list[str]  # JSON
    probability_uncalibrated: np.ndarray
    probability: np.ndarray
    score: np.ndarray
    decision: np.ndarray  # int 0/1
    accepted: np.ndarray | None  # bool; None without a selective policy
    correct: np.ndarray  # bool

    def __len__(self) -> int:
        return len(self.labels)

    def confidence(self) -> np.ndarray:
        """Calibrated probability of the decided class (what the accept/defer policy thresholds)."""
        return np.where(self.decision == 1, self.probability, 1 - self.probability)


def subset(pred: ConditionPredictions, mask: np.ndarray) -> ConditionPredictions:
    """The rows of ``pred`` where ``mask`` (per row) is true."""
    keep = np.flatnonzero(mask)
    return ConditionPredictions(
        pred.image_index[keep], [pred.sample_ids[i] for i in keep], [pred.image_sha256[i] for i in keep],
        pred.labels[keep], pred.levels[keep], [pred.distortions[i] for i in keep],
        pred.probability_uncalibrated[keep], pred.probability[keep], pred.score[keep], pred.decision[keep],
        None if pred.accepted is None else pred.accepted[keep], pred.correct[keep])


def from_logits(logits: np.ndarray, labels: np.ndarray, levels: np.ndarray, distortions: list[dict],
                sample_ids: list[str], image_sha256: list[str], policy: Policy) -> ConditionPredictions:
    """A condition's rows from its raw logits and the bundle's policy (as the Predictor applies it)."""
    probability = softmax_probs(logits, policy.temperature)
    score = validator_score(probability, policy.decision_threshold)
    decision = validator_decisions(score).astype(np.int64)
    accepted = policy.accepted(probability)
    return ConditionPredictions(
        np.arange(len(labels)), list(sample_ids), list(image_sha256), np.asarray(labels, dtype=np.int64),
        np.asarray(levels, dtype=np.int64), [json.dumps(d, sort_keys=True, separators=(",", ":")) for d in distortions],
        softmax_probs(logits, 1.0), probability, score, decision, accepted, decision == np.asarray(labels))


def write_predictions(path: Path, predictions: dict[str, ConditionPredictions]) -> str:
    """Write predictions.csv atomically (floats as ``repr``: exact round trip); return its SHA-256."""
    rows = []
    for condition, p in predictions.items():
        for k in range(len(p)):
            rows.append([condition, int(p.image_index[k]), p.sample_ids[k], p.image_sha256[k], int(p.labels[k]),
                         "" if p.levels[k] == NO_LEVEL else int(p.levels[k]), p.distortions[k],
                         repr(float(p.probability_uncalibrated[k])), repr(float(p.probability[k])),
                         repr(float(p.score[k])), int(p.decision[k]),
                         "" if p.accepted is None else int(p.accepted[k]), int(p.correct[k])])
    return atomic_write_csv(path, list(COLUMNS), rows)


def read_predictions(path: Path) -> dict[str, ConditionPredictions]:
    """Read predictions.csv back into columns per condition (in file order); IntegrityError naming the file when
    it is missing or malformed."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise ValueError(f"missing columns {missing}")
            by_condition: dict[str, list[dict]] = {}
            for row in reader:
                by_condition.setdefault(row["condition"], []).append(row)
        out = {}
        for condition, rows in by_condition.items():
            accepted = [r["accepted"] for r in rows]
            out[condition] = ConditionPredictions(
                np.array([int(r["image_index"]) for r in rows], dtype=np.int64), [r["sample_id"] for r in rows],
                [r["image_sha256"] for r in rows], np.array([int(r["label"]) for r in rows], dtype=np.int64),
                np.array([int(r["level"]) if r["level"] != "" else NO_LEVEL for r in rows], dtype=np.int64),
                [r["distortion"] for r in rows],
                np.array([float(r["probability_uncalibrated"]) for r in rows], dtype=np.float64),
                np.array([float(r["probability"]) for r in rows], dtype=np.float64),
                np.array([float(r["score"]) for r in rows], dtype=np.float64),
                np.array([int(r["decision"]) for r in rows], dtype=np.int64),
                None if all(a == "" for a in accepted) else np.array([a == "1" for a in accepted], dtype=bool),
                np.array([r["correct"] == "1" for r in rows], dtype=bool))
        return out
    except (OSError, ValueError, KeyError) as exc:
        raise IntegrityError(f"Predictions file '{path}' is missing or malformed ({exc}).",
                             "rerun the evaluation (streetvision evaluate BUNDLE ..., or the evaluation phase)."
                             ) from exc
