"""Phase 6: export the self-contained, verifiable bundle (see streetvision.bundle.export) and, when the model maps
onto its family's *ForImageClassification, the Hugging Face folder the NATIX miner serves
(streetvision.bundle.hf_export)."""

from __future__ import annotations

import json
import shutil

from omegaconf import OmegaConf

from streetvision.bundle.export import MODEL_DIR, BundleSources, build_bundle
from streetvision.bundle.hf_export import check_hf_parity, export_hf
from streetvision.bundle.hf_format import is_exportable
from streetvision.errors import MissingArtifactError
from streetvision.io import config_hash
from streetvision.models.classifier import BACKBONE_DIR, SPEC_FILE
from streetvision.pipeline.artifacts import ArtifactSchema
from streetvision.pipeline.registry import PhaseContext, PhaseResult, phase


def bundle_sources(art: ArtifactSchema, committed: frozenset[str]) -> BundleSources:
    """The run files the bundle is built from: phase1's model, the splits, and phase5's policy (else phase2's)."""
    if "phase5" in committed:
        policy_type, policy_json, calibration = "scrc", art.scrcparams_json, art.calibration_metrics_json
    elif "phase2" in committed:
        policy_type, policy_json, calibration = "threshold", art.thresholds_json, None
    else:
        raise MissingArtifactError("phase6 needs a decision policy: neither phase5 (scrcparams.json) nor phase2 "
                                   "(thresholds.json) is committed in this run.",
                                   "add phase5 (or phase2) to pipeline.phases, e.g. pipeline.phases=[phase1,phase2,"
                                   "phase5,phase6].")
    identity = art.identity()
    lineage = {"run_id": identity["run_id"], "experiment_name": identity["experiment_name"],
               "config_hash": config_hash(OmegaConf.to_container(OmegaConf.load(art.config_yaml)))}
    return BundleSources(model_dir=art.phase1_model_dir, splits_json=art.splits_json,
                         phase1_metrics_json=art.metrics_json("phase1"), policy_type=policy_type,
                         policy_json=policy_json, calibration_metrics_json=calibration, lineage=lineage)


@phase("phase6", "self-contained bundle: model, policy, ONNX, probes, checksums", dir="export",
       needs=("phase1",), uses=("phase2", "phase5"), config_keys=("phase6",))
def run_phase6(ctx: PhaseContext) -> PhaseResult:
    """Build export/bundle and export/bundle.json, and export/hf when the model is exportable."""
    art = ctx.artifacts
    summary = build_bundle(bundle_sources(art, ctx.committed), ctx.cfg.phase6, art.bundle_dir,
                           art.bundle_pointer_json)
    summary["bundle_dir"] = art.rel(art.bundle_dir)
    diff = summary["onnx_max_abs_diff"]
    outputs = [art.bundle_dir, art.bundle_pointer_json]
    model_dir = art.bundle_dir / MODEL_DIR
    spec = json.loads((model_dir / SPEC_FILE).read_text())
    model_type = json.loads((model_dir / BACKBONE_DIR / "config.json").read_text()).get("model_type", "")
    if is_exportable(spec, model_type):
        export_hf(art.bundle_dir, art.hf_export_dir)
        summary["hf_export"] = {"dir": art.rel(art.hf_export_dir), "parity": check_hf_parity(art.bundle_dir,
                                                                                             art.hf_export_dir)}
        outputs.append(art.hf_export_dir)
        hf_note = "export/hf (parity checked)"
    else:
        shutil.rmtree(art.hf_export_dir, ignore_errors=True)  # never leave an export of an older model
        summary["hf_export"] = None
        hf_note = f"off (needs model.pooling=cls_mean, model.head=linear; this model: {spec.get('pooling')})"
    if not str(ctx.cfg.phase6.model_card.submitted_by):
        ctx.console.print("[yellow]warning:[/yellow] phase6.model_card.submitted_by is empty: the validator rejects "
                          "a model_card.json whose submitted_by is not your hotkey (set it, or use `streetvision "
                          "publish --hotkey`).")
    return PhaseResult(
        outputs=outputs, metrics=summary,
        summary={"bundle": summary["bundle_dir"], "policy": summary["policy_type"],
                 "onnx parity": f"{diff:.1e}" if diff is not None else "off", "hugging face": hf_note})
