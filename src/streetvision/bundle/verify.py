"""``streetvision verify BUNDLE``: one line per check, non-zero exit on any failure."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streetvision.bundle.schema import check_files, load_index, safe_member
from streetvision.errors import StreetVisionError, ValidationFailure


@dataclass(frozen=True)
class Check:
    """The outcome of one check."""

    name: str
    ok: bool
    detail: str


def _probe_check(predictor, bundle_dir: Path, index: dict) -> str:
    probes = json.loads(safe_member(bundle_dir, index["probes"]).read_text())
    paths = [safe_member(bundle_dir, p["path"]) for p in probes["probes"]]
    got = predictor.predict_batch(paths)
    diffs = [max(abs(g.probability - p["probability"]), abs(g.score - p["score"])) for g, p in
             zip(got, probes["probes"])]
    same_decisions = all(g.decision == p["decision"] for g, p in zip(got, probes["probes"]))
    worst = float(np.max(diffs)) if diffs else 0.0
    detail = (f"{len(paths)} probe images, max |diff| {worst:.2e} (tolerance {probes['tolerance']:g})"
              f"{'' if same_decisions else ', decisions differ'}")
    if worst > float(probes["tolerance"]) or not same_decisions:
        raise ValidationFailure(f"probe outputs differ from probes.json: {detail}", "re-export the bundle.")
    return detail


def verify_bundle(path: str | Path) -> list[Check]:
    """Run every check; later checks are skipped once the files cannot be trusted."""
    from streetvision.bundle.predictor import Predictor

    bundle_dir = Path(path)
    checks: list[Check] = []

    def attempt(name: str, fn) -> bool:
        try:
            detail = fn()
            checks.append(Check(name, True, detail))
            return True
        except StreetVisionError as exc:
            checks.append(Check(name, False, str(exc)))
        except Exception as exc:  # a malformed bundle can fail in any library; report it as a failed check
            checks.append(Check(name, False, f"{type(exc).__name__}: {exc}"))
        return False

    holder: dict = {}
    if not attempt("schema", lambda: (holder.setdefault("index", load_index(bundle_dir)), "bundle.json valid")[1]):
        return checks
    index = holder["index"]
    if not attempt("checksums", lambda: f"{check_files(bundle_dir, index)} files match bundle.json"):
        return checks
    for backend in ("torch", "onnx"):
        if backend == "onnx" and not index["model"].get("onnx"):
            continue

        def load(b=backend):
            holder[b] = Predictor.from_bundle(bundle_dir, backend=b, verify_files=False)
            return f"{b} model loaded (policy {holder[b].policy.policy_type}, threshold "\
                   f"{holder[b].policy.decision_threshold:.4f})"

        if attempt(f"load ({backend})", load):
            attempt(f"probes ({backend})", lambda b=backend: _probe_check(holder[b], bundle_dir, index))
    return checks
