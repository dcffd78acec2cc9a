"""Phase 6: build the self-contained bundle from a run's committed phases.

``export/bundle/`` holds the model (backbone in save_pretrained form + head, safetensors), ``preprocess.json``,
the policy (scrcparams.json from phase5, else thresholds.json from phase2), split digest and counts, training and
calibration metrics, a NATIX ``model_card.json``, probe images with their expected outputs, ``model.onnx`` (checked
against torch) and ``bundle.json``, the index of every file with its SHA-256. The whole directory is built beside
the old one and swapped in, so a failed export never leaves a half-written bundle.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from streetvision.bundle.probes import PARITY_PER_LEVEL, PROBES_DIR, parity_rng
from streetvision.bundle.schema import BUNDLE_INDEX, SCHEMA_VERSION
from streetvision.config import SPLIT_NAMES
from streetvision.data.splits import load_splits
from streetvision.data.synthetic import render_scene
from streetvision.errors import ValidationFailure
from streetvision.io import atomic_path, atomic_write_json, read_json, replace_dir
from streetvision.io.manifest import git_commit, library_versions, records_for
from streetvision.metrics.score import SCORE_MAP
from streetvision.models.classifier import MODEL_FILES, SPEC_FILE, load_classifier
from streetvision.validator.challenges import LEVELS, WIRE_JPEG_QUALITY, challenge

MODEL_DIR = "model"
ONNX_FILE = "model.onnx"


def check_onnx_graph(path: Path) -> None:
    """``onnx.checker`` on the exported file (structure, operator set, types and shapes inferred across the graph);
    ValidationFailure naming the problem when it does not pass."""
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ValidationFailure(f"The exported ONNX graph does not pass onnx.checker ({str(exc).splitlines()[0]}).",
                                "export with phase6.onnx=false, or report it.") from exc


def export_onnx(model: torch.nn.Module, size: int, path: Path) -> None:
    """TorchScript-based ONNX export (``dynamo=False``) with a dynamic batch axis, checked with ``onnx.checker``
    and written atomically."""
    dummy = torch.zeros(2, 3, size, size)
    with atomic_path(path) as tmp:
        torch.onnx.export(model.eval(), (dummy,), str(tmp), input_names=["pixel_values"], output_names=["logits"],
                          dynamic_axes={"pixel_values": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17,
                          dynamo=False)
        check_onnx_graph(tmp)


@dataclass(frozen=True)
class BundleSources:
    """The run's files a bundle is built from (phase6 resolves them from the run layout)."""

    model_dir: Path  # phase1's model: backbone/, head.safetensors, model.json
    splits_json: Path
    phase1_metrics_json: Path
    policy_type: str  # scrc (phase5's scrcparams.json) | threshold (phase2's thresholds.json)
    policy_json: Path
    calibration_metrics_json: Path | None  # phase5's, when committed
    lineage: dict[str, Any]  # run_id, experiment_name, config_hash of the run


def model_card(card: Mapping[str, Any]) -> dict[str, Any]:
    """NATIX model card fields from ``phase6.model_card`` (the version format is checked with the config)."""
    return {"model_name": str(card["model_name"]), "description": str(card["description"]),
            "version": str(card["version"]), "submitted_by": str(card["submitted_by"]),
            "submission_time": int(card["submission_time"]) if card["submission_time"] is not None
            else int(time.time())}


def write_parity_images(bundle: Path, probe_paths: list[str]) -> list[dict[str, Any]]:
    """Write each probe as the validator sends it at levels 0-3 (``parity_rng``), as the very JPEG it travels as,
    beside the probes; return their records for probes.json (path, probe, level)."""
    from PIL import Image

    records = []
    for i, rel in enumerate(probe_paths):
        with Image.open(bundle / rel) as img:
            scene = img.convert("RGB")
        for level in LEVELS:
            sent = challenge(scene, parity_rng(i, level), level=level, wire_jpeg=False)[0]
            path = f"{PROBES_DIR}/parity_{i:02d}_level{level}.jpg"
            sent.save(bundle / path, format="JPEG", quality=WIRE_JPEG_QUALITY)  # the validator's wire encoding
            records.append({"path": path, "probe": i, "level": level})
    return records


def _write_index(bundle: Path, extra: dict[str, Any], exclude: set[str] = frozenset()) -> None:
    files = [r for r in records_for([p for p in bundle.iterdir() if p.name != BUNDLE_INDEX], bundle)
             if r.path not in exclude]
    atomic_write_json(bundle / BUNDLE_INDEX, {"schema_version": SCHEMA_VERSION,
                                              "files": [r.__dict__ for r in files], **extra})


def build_bundle(sources: BundleSources, phase6: Mapping[str, Any], bundle_dir: Path,
                 pointer_json: Path) -> dict[str, Any]:
    """Build ``bundle_dir`` and its pointer file from ``sources`` with the ``phase6`` settings; return a summary."""
    from streetvision.bundle.predictor import Predictor

    p6 = phase6
    splits = load_splits(sources.splits_json)
    phase1_metrics = read_json(sources.phase1_metrics_json)
    spec = read_json(sources.model_dir / SPEC_FILE)
    with replace_dir(bundle_dir) as tmp:
        model_dir = tmp / MODEL_DIR
        for name in MODEL_FILES:
            copy = shutil.copytree if (sources.model_dir / name).is_dir() else shutil.copy2
            copy(sources.model_dir / name, model_dir / name)
        atomic_write_json(tmp / "preprocess.json", spec["preprocess"])
        shutil.copy2(sources.policy_json, tmp / sources.policy_json.name)
        counts = {s: len(splits.rows(s)) for s in SPLIT_NAMES}
        atomic_write_json(tmp / "splits_summary.json", {"digest": splits.digest, "counts": counts,
                                                         "class_names": splits.class_names})
        metrics = {"phase1": phase1_metrics["splits"], "finetune": phase1_metrics["finetune"]}
        if sources.calibration_metrics_json is not None:
            cal = read_json(sources.calibration_metrics_json)
            metrics["calibration"] = {k: {m: cal[k][m] for m in ("ece", "mce", "brier", "nll", "accuracy")}
                                      for k in ("pre_calibration", "post_calibration")}
        atomic_write_json(tmp / "metrics.json", metrics)
        atomic_write_json(tmp / "model_card.json", model_card(p6["model_card"]))
        probe_dir = tmp / PROBES_DIR
        probe_dir.mkdir()
        probe_names = []
        for i in range(int(p6["n_probes"])):
            name = f"probe_{i:02d}.png"
            render_scene(i, seed=20251, domain="source" if i % 4 else "target").image.save(probe_dir / name)
            probe_names.append(f"{PROBES_DIR}/{name}")
        parity_images = write_parity_images(tmp, probe_names[:PARITY_PER_LEVEL])
        onnx_rel = None
        if p6["onnx"]:
            model = load_classifier(model_dir)
            export_onnx(model, int(spec["preprocess"]["size"]), tmp / ONNX_FILE)
            onnx_rel = ONNX_FILE
        index_extra = {
            "class_names": splits.class_names, "preprocess": "preprocess.json", "probes": f"{PROBES_DIR}/probes.json",
            "model": {"dir": MODEL_DIR, "format": "safetensors", "onnx": onnx_rel,
                      "backbone_source": phase1_metrics["backbone_source"]},
            "policy": {"policy_type": sources.policy_type, "policy_path": sources.policy_json.name},
            "score_map": f"{SCORE_MAP}, > 0.5 iff roadwork",
            "lineage": {**sources.lineage, "code_version": git_commit(), "versions": library_versions()},
        }
        _write_index(tmp, index_extra)  # provisional, to compute the expected probe outputs from the bundle itself
        torch_pred = Predictor.from_bundle(tmp, backend="torch", verify_files=False)
        probe_batch = torch.stack([torch_pred.tensor(tmp / p) for p in probe_names])
        expected, probe_logits = torch_pred.predict_tensor(probe_batch), torch_pred.logits(probe_batch)
        parity = None
        if onnx_rel:
            onnx_out = Predictor.from_bundle(tmp, backend="onnx", verify_files=False).predict_batch(
                [tmp / p for p in probe_names])
            parity = float(np.max(np.abs([a.probability - b.probability for a, b in zip(expected, onnx_out)])))
            if parity > float(p6["onnx_tolerance"]):
                raise ValidationFailure(f"ONNX and torch disagree on the probe images: max |dP| = {parity:.2e} > "
                                        f"{p6['onnx_tolerance']}.", "export with phase6.onnx=false, or report it.")
        atomic_write_json(probe_dir / "probes.json", {
            "tolerance": float(p6["probe_tolerance"]),
            "probes": [{"path": name, **pred.as_dict(), "logits": [float(v) for v in logits]}
                       for name, pred, logits in zip(probe_names, expected, probe_logits)],
            "parity_images": parity_images,
        })
        _write_index(tmp, index_extra)
    pointer = {"bundle_dir": bundle_dir.name, "index": f"{bundle_dir.name}/{BUNDLE_INDEX}",
               "policy_type": sources.policy_type}
    atomic_write_json(pointer_json, pointer)
    return {"policy_type": sources.policy_type, "onnx_max_abs_diff": parity, "n_probes": len(probe_names)}
