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
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from streetvision.bundle.schema import BUNDLE_INDEX, SCHEMA_VERSION
from streetvision.config import to_plain
from streetvision.data.splits import load_splits
from streetvision.data.synthetic import render_scene
from streetvision.errors import ConfigError, MissingArtifactError, ValidationFailure
from streetvision.io import atomic_path, atomic_write_json, config_hash, read_json, replace_dir
from streetvision.io.manifest import git_commit, library_versions, records_for
from streetvision.models.classifier import load_classifier
from streetvision.pipeline.artifacts import ArtifactSchema

MODEL_DIR = "model"
ONNX_FILE = "model.onnx"
PROBES_DIR = "probes"


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


def model_card(cfg: DictConfig) -> dict[str, Any]:
    """NATIX model card fields from ``phase6.model_card`` (the version format is checked with the config)."""
    card = cfg.phase6.model_card
    return {"model_name": str(card.model_name), "description": str(card.description), "version": str(card.version),
            "submitted_by": str(card.submitted_by),
            "submission_time": int(card.submission_time) if card.submission_time is not None else int(time.time())}


def _policy(art: ArtifactSchema, committed_phases: set[str]) -> tuple[str, Path]:
    if "phase5" in committed_phases:
        return "scrc", art.scrcparams_json
    if "phase2" in committed_phases:
        return "threshold", art.thresholds_json
    raise MissingArtifactError("phase6 needs a decision policy: neither phase5 (scrcparams.json) nor phase2 "
                               "(thresholds.json) is committed in this run.",
                               "add phase5 (or phase2) to pipeline.phases, e.g. pipeline.phases=[phase1,phase2,"
                               "phase5,phase6].")


def _write_index(bundle: Path, extra: dict[str, Any], exclude: set[str] = frozenset()) -> None:
    files = [r for r in records_for([p for p in bundle.iterdir() if p.name != BUNDLE_INDEX], bundle)
             if r.path not in exclude]
    atomic_write_json(bundle / BUNDLE_INDEX, {"schema_version": SCHEMA_VERSION,
                                              "files": [r.__dict__ for r in files], **extra})


def build_bundle(cfg: DictConfig, art: ArtifactSchema, committed_phases: set[str]) -> dict[str, Any]:
    """Build export/bundle/ and export/bundle.json; return a summary for the manifest."""
    from streetvision.bundle.predictor import Predictor

    policy_type, policy_src = _policy(art, committed_phases)
    p6 = cfg.phase6
    splits = load_splits(art.splits_json)
    phase1_metrics = read_json(art.metrics_json("phase1"))
    spec = read_json(art.phase1_model_dir / "model.json")
    bundle_dir = art.bundle_dir
    with replace_dir(bundle_dir) as tmp:
        model_dir = tmp / MODEL_DIR
        shutil.copytree(art.phase1_model_dir / "backbone", model_dir / "backbone")
        for name in ("head.safetensors", "model.json"):
            shutil.copy2(art.phase1_model_dir / name, model_dir / name)
        atomic_write_json(tmp / "preprocess.json", spec["preprocess"])
        shutil.copy2(policy_src, tmp / policy_src.name)
        counts = {s: len(splits.rows(s)) for s in ("train", "val_select", "val_calib", "test")}
        atomic_write_json(tmp / "splits_summary.json", {"digest": splits.digest, "counts": counts,
                                                         "class_names": splits.class_names})
        metrics = {"phase1": phase1_metrics["splits"], "finetune": phase1_metrics["finetune"]}
        if "phase5" in committed_phases:
            cal = read_json(art.calibration_metrics_json)
            metrics["calibration"] = {k: {m: cal[k][m] for m in ("ece", "mce", "brier", "nll", "accuracy")}
                                      for k in ("pre_calibration", "post_calibration")}
        atomic_write_json(tmp / "metrics.json", metrics)
        atomic_write_json(tmp / "model_card.json", model_card(cfg))
        probe_dir = tmp / PROBES_DIR
        probe_dir.mkdir()
        probe_names = []
        for i in range(int(p6.n_probes)):
            name = f"probe_{i:02d}.png"
            render_scene(i, seed=20251, domain="source" if i % 4 else "target").image.save(probe_dir / name)
            probe_names.append(f"{PROBES_DIR}/{name}")
        onnx_rel = None
        if p6.onnx:
            model = load_classifier(model_dir)
            export_onnx(model, int(spec["preprocess"]["size"]), tmp / ONNX_FILE)
            onnx_rel = ONNX_FILE
        index_extra = {
            "class_names": splits.class_names, "preprocess": "preprocess.json", "probes": f"{PROBES_DIR}/probes.json",
            "model": {"dir": MODEL_DIR, "format": "safetensors", "onnx": onnx_rel,
                      "backbone_source": phase1_metrics["backbone_source"]},
            "policy": {"policy_type": policy_type, "policy_path": policy_src.name},
            "score_map": "streetvision.metrics.score.validator_score: piecewise linear, > 0.5 iff roadwork",
            "lineage": {"run_id": str(cfg.run_id), "experiment_name": str(cfg.experiment_name),
                        "config_hash": config_hash(to_plain(cfg)), "code_version": git_commit(),
                        "versions": library_versions()},
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
            if parity > float(p6.onnx_tolerance):
                raise ValidationFailure(f"ONNX and torch disagree on the probe images: max |dP| = {parity:.2e} > "
                                        f"{p6.onnx_tolerance}.", "export with phase6.onnx=false, or report it.")
        atomic_write_json(probe_dir / "probes.json", {
            "tolerance": float(p6.probe_tolerance),
            "probes": [{"path": name, **pred.as_dict(), "logits": [float(v) for v in logits]}
                       for name, pred, logits in zip(probe_names, expected, probe_logits)],
        })
        _write_index(tmp, index_extra)
    pointer = {"bundle_dir": "bundle", "index": f"bundle/{BUNDLE_INDEX}", "policy_type": policy_type}
    atomic_write_json(art.bundle_pointer_json, pointer)
    return {"policy_type": policy_type, "onnx_max_abs_diff": parity, "n_probes": len(probe_names),
            "bundle_dir": art.rel(bundle_dir)}
