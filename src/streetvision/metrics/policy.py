"""The decision policy, and the one writer and reader of the two files that hold it: phase2's ``thresholds.json``
(a threshold on P(roadwork)) and phase5's ``scrcparams.json`` (temperature, threshold on the calibrated
probability, and a certified selective threshold). Phase5 reads phase2's file, the bundle copies one of them, the
Predictor and the evaluation read it back: all through :meth:`Policy.from_json`.

The rule, defined once here: P = softmax(logits / T)[roadwork]; roadwork iff P >= decision_threshold; an image
is accepted (not deferred) iff the probability of the decided class >= selective_threshold (Learn-then-Test,
``ltt``), or, with class-wise conformal risk control (``crc_classwise``), iff its prediction set under the per-class
thresholds is exactly the decided class (metrics/crc.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from streetvision.errors import IntegrityError

THRESHOLD, SCRC, FOLDED = "threshold", "scrc", "folded"  # FOLDED: T and t already folded into the model's logits
POLICY_TYPES = (SCRC, THRESHOLD)


def decided_confidence(probs: np.ndarray, decision_threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """(decisions, probability of the decided class) for P(roadwork) under the decision threshold."""
    p = np.asarray(probs, dtype=np.float64)
    decisions = (p >= decision_threshold).astype(np.int64)
    return decisions, np.where(decisions == 1, p, 1 - p)


@dataclass(frozen=True)
class Policy:
    """How probabilities become decisions (see the module docstring)."""

    policy_type: str
    temperature: float = 1.0
    decision_threshold: float = 0.5
    selective_threshold: float | None = None
    has_selective: bool = False
    target_risk: float | None = None  # the selective guarantee's target error rate (scrc, ltt)
    class_thresholds: tuple[float, float] | None = None  # crc_classwise: t_k on P(no_roadwork), P(roadwork)

    @classmethod
    def from_json(cls, raw: dict[str, Any], policy_type: str | None = None) -> Policy:
        """The policy in a thresholds.json / scrcparams.json document (``policy_type`` defaults to the file's)."""
        kind = policy_type or raw.get("policy_type")
        if kind == SCRC:
            p = raw["scrc_params"]
            sel = p.get("selective") or {}
            classwise = sel.get("class_thresholds")
            return cls(SCRC, float(p["temperature"]), float(p["decision_threshold"]),
                       sel.get("confidence_threshold"), bool(sel), sel.get("target_risk"),
                       tuple(float(t) for t in classwise) if classwise is not None else None)
        if kind == THRESHOLD:
            return cls(THRESHOLD, 1.0, float(raw["thresholds"]["best"]))
        raise ValueError(f"policy_type is '{kind}'; expected {' or '.join(POLICY_TYPES)}")

    @classmethod
    def from_file(cls, path: Path, policy_type: str | None = None) -> Policy:
        """:meth:`from_json` of a file; IntegrityError naming the file and the field when it is unreadable."""
        try:
            raw = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise IntegrityError(f"policy file '{Path(path).name}' is missing or not valid JSON ({exc}).",
                                 "re-export the bundle.") from exc
        kind = policy_type or (raw.get("policy_type") if isinstance(raw, dict) else None)
        if kind not in POLICY_TYPES:
            raise IntegrityError(f"policy file '{Path(path).name}': policy_type is '{kind}'; expected "
                                 f"{' or '.join(POLICY_TYPES)}.", "re-export the bundle.")
        try:
            return cls.from_json(raw, kind)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise IntegrityError(f"policy file '{Path(path).name}': field {exc} is missing or invalid.",
                                 "re-export the bundle.") from exc

    def decide(self, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(decisions, probability of the decided class) for calibrated P(roadwork)."""
        return decided_confidence(probs, self.decision_threshold)

    def accepted(self, probs: np.ndarray) -> np.ndarray | None:
        """Whether each image is accepted (not deferred) for calibrated P(roadwork); None without a selective
        policy."""
        if not self.has_selective:
            return None
        decisions, confidence = self.decide(probs)
        if self.class_thresholds is not None:
            from streetvision.metrics.crc import crc_accepted

            return crc_accepted(probs, decisions, np.asarray(self.class_thresholds))
        lam = self.selective_threshold
        return confidence >= lam if lam is not None else np.zeros(len(confidence), dtype=bool)


def threshold_split(path: Path) -> str:
    """The logits phase2 swept ``thresholds.json``'s threshold on (its ``split``: ``val_select``, or the crossfit
    phase's out-of-fold logits); ``val_select`` when the file does not say. IntegrityError naming the file when it
    is unreadable."""
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise IntegrityError(f"policy file '{Path(path).name}' is missing or not valid JSON ({exc}).",
                             "rerun phase2.") from exc
    return str(raw.get("split", "val_select")) if isinstance(raw, dict) else "val_select"


def threshold_document(threshold: float, class_names: list[str], selection: dict[str, Any],
                       report: dict[str, Any]) -> dict[str, Any]:
    """thresholds.json: the threshold with how it was selected (``selection``: n_thresholds, metric, max_fnr),
    followed by the ``report`` fields."""
    return {"policy_type": THRESHOLD, "class_names": list(class_names), "probability_of": class_names[1],
            "thresholds": {"best": float(threshold), **selection}, **report}


def scrc_document(temperature: float, threshold: float, class_names: list[str], details: dict[str, Any],
                  selective: dict[str, Any], report: dict[str, Any]) -> dict[str, Any]:
    """scrcparams.json: temperature, the decision threshold on the calibrated probability (``details``: where it
    came from), the selective policy (``confidence_threshold``, ``target_risk``, ...), then the ``report`` fields."""
    return {"policy_type": SCRC, "class_names": list(class_names), "probability_of": class_names[1],
            "scrc_params": {"method": "temperature_scaling", "temperature": float(temperature),
                            "decision_threshold": float(threshold), **details, "selective": selective},
            **report}
