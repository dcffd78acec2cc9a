"""The per-split logits format that phase1 writes and phase2, phase5 and evaluation read.

``phase1/logits/<split>.csv``: one row per image of the split, columns

    sample_id   the image path relative to the data root (as in splits.json)
    label       the true class index (1 = roadwork)
    logit_<c>   the raw logit of each class, in class-index order (``repr`` floats: exact round trip)
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streetvision.data.sources import path_text
from streetvision.errors import IntegrityError
from streetvision.io import atomic_write_csv


@dataclass(frozen=True)
class SplitLogits:
    """Logits of one split, aligned with sample ids and labels."""

    sample_ids: list[str]
    labels: np.ndarray
    logits: np.ndarray
    class_names: list[str]


def write_logits(path: Path, sample_ids: list[str], labels: np.ndarray, logits: np.ndarray,
                 class_names: list[str]) -> str:
    """Write a logits CSV atomically (a sample id that is not valid UTF-8 as ``data.sources.path_text`` writes it);
    return its SHA-256."""
    return atomic_write_csv(path, ["sample_id", "label", *(f"logit_{c}" for c in class_names)],
                            ([sid, int(y), *(repr(float(v)) for v in row)]
                             for sid, y, row in zip(map(path_text, sample_ids), labels, logits)))


def read_logits(path: Path) -> SplitLogits:
    """Read a logits CSV; IntegrityError naming the file when it is missing or malformed."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
        header, body = rows[0], rows[1:]
        if header[:2] != ["sample_id", "label"] or len(header) < 4:
            raise ValueError(f"unexpected header {header}")
        return SplitLogits([r[0] for r in body], np.array([int(r[1]) for r in body], dtype=np.int64),
                           np.array([[float(v) for v in r[2:]] for r in body], dtype=np.float64).reshape(
                               len(body), len(header) - 2), [h.removeprefix("logit_") for h in header[2:]])
    except (OSError, ValueError, IndexError) as exc:
        raise IntegrityError(f"Logits file '{path}' is missing or malformed ({exc}).",
                             "rerun phase1: streetvision run pipeline.phases=[phase1].") from exc
