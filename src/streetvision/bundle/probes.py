"""Probe images: a few rendered scenes whose outputs (logits, probability, decision, score) are recorded in
``probes/probes.json`` at export. Recomputing them proves that the model files and the policy still produce what
was exported, even when a file was edited and ``bundle.json`` re-hashed; ``Predictor.from_bundle`` and ``verify``
both run this check, which costs one forward pass over the probes (8 images by default)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from streetvision.bundle.schema import safe_member
from streetvision.data.decode import DecodeError
from streetvision.errors import IntegrityError
from streetvision.metrics.score import SCORE_MAP

if TYPE_CHECKING:
    from streetvision.bundle.predictor import Predictor

LOGIT_CHANGE = 1e-3  # relative logit difference that blames the model files rather than the policy
PROBES_DIR = "probes"
# The parity images (probes.json "parity_images"): the first PARITY_PER_LEVEL probes as the validator sends them at
# each level, drawn with parity_rng and stored as the wire JPEGs; the Hugging Face export is checked on them.
PARITY_PER_LEVEL = 8


def parity_rng(probe: int, level: int) -> np.random.Generator:
    """The generator that draws probe ``probe``'s challenge at ``level`` for the parity images."""
    return np.random.default_rng([7, probe, level])


def model_files(index: dict[str, Any], backend: str) -> list[str]:
    """The bundle files that determine the logits under ``backend`` (relative paths)."""
    if backend == "onnx":
        return [index["model"]["onnx"]]
    prefix = index["model"]["dir"].rstrip("/") + "/"
    return [f["path"] for f in index["files"] if f["path"].startswith(prefix)] + [index["preprocess"]]


def _load_probes(predictor: Predictor) -> tuple[list[dict[str, Any]], float, torch.Tensor]:
    rel = predictor.index["probes"]
    try:
        raw = json.loads(safe_member(predictor.bundle_dir, rel).read_text())
        records, tolerance = list(raw["probes"]), float(raw["tolerance"])
        paths = [safe_member(predictor.bundle_dir, r["path"]) for r in records]
        batch = torch.stack([predictor.tensor(p) for p in paths])
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, DecodeError) as exc:
        raise IntegrityError(f"'{rel}' or a probe image it lists is missing or malformed ({exc}).",
                             "re-export the bundle.") from exc
    return records, tolerance, batch


def _changed_files(predictor: Predictor, batch: torch.Tensor, records: list[dict[str, Any]]) -> list[str]:
    """Which files explain a probe mismatch: the model files when the logits moved, else the policy file."""
    suspects = model_files(predictor.index, predictor.backend)
    policy = [predictor.index["policy"]["policy_path"]]
    if any("logits" not in r for r in records):  # bundles exported before logits were recorded
        return suspects + policy
    recorded = np.asarray([r["logits"] for r in records], dtype=np.float64)
    moved = np.abs(predictor.logits(batch) - recorded).max() > LOGIT_CHANGE * max(1.0, np.abs(recorded).max())
    return suspects if moved else policy


def check_probes(predictor: Predictor) -> str:
    """Recompute the probe outputs with ``predictor``; raise IntegrityError naming the files that no longer
    reproduce ``probes.json``. Returns a one-line summary."""
    records, tolerance, batch = _load_probes(predictor)
    try:
        got = predictor.predict_tensor(batch)
    except Exception as exc:  # an ONNX graph or weights that load but cannot run (any library's error)
        files = ", ".join(model_files(predictor.index, predictor.backend))
        raise IntegrityError(f"{files} cannot score the probe images ({type(exc).__name__}: {exc}).",
                             "restore the original files or re-export the bundle.") from exc
    # bundles exported before the score became validator_score's sigmoid recorded another map of the same
    # probability: their probability and decision are still checked, their score is not
    same_map = predictor.index.get("score_map", "").startswith(SCORE_MAP)
    diffs = [max(abs(g.probability - r["probability"]), abs(g.score - r["score"]) if same_map else 0.0)
             for g, r in zip(got, records)]
    same_decisions = all(g.decision == r["decision"] for g, r in zip(got, records))
    worst = float(np.max(diffs)) if diffs else 0.0
    detail = (f"{len(records)} probe images, max |diff| {worst:.2e} (tolerance {tolerance:g})"
              f"{'' if same_decisions else ', decisions differ'}")
    if worst > tolerance or not same_decisions:
        changed = _changed_files(predictor, batch, records)
        which = f"'{changed[0]}' was" if len(changed) == 1 else f"one of {', '.join(changed)} was"
        raise IntegrityError(f"{which} edited after export: the outputs recorded in '{predictor.index['probes']}' "
                             f"are no longer reproduced ({predictor.backend}: {detail}).",
                             "restore the original files or re-export the bundle.")
    return detail
