"""Phase 6: export the self-contained, verifiable bundle (see streetvision.bundle.export) and, when the model maps
onto Dinov2ForImageClassification, the Hugging Face folder the NATIX miner serves (streetvision.bundle.hf_export)."""

from __future__ import annotations

import json
import shutil

from streetvision.bundle.export import build_bundle
from streetvision.bundle.hf_export import check_hf_parity, export_hf, is_exportable
from streetvision.pipeline.registry import PhaseContext, PhaseResult, phase
from streetvision.pipeline.runner import committed


@phase("phase6", "self-contained bundle: model, policy, ONNX, probes, checksums", needs=("phase1",),
       uses=("phase2", "phase5"), config_keys=("phase6",))
def run_phase6(ctx: PhaseContext) -> PhaseResult:
    """Build export/bundle and export/bundle.json, and export/hf when the model is exportable."""
    art = ctx.artifacts
    done = {p for p in ("phase2", "phase5") if committed(art, p) is not None}
    summary = build_bundle(ctx.cfg, art, done)
    diff = summary["onnx_max_abs_diff"]
    outputs = [art.bundle_dir, art.bundle_pointer_json]
    spec = json.loads((art.bundle_dir / "model" / "model.json").read_text())
    model_type = json.loads((art.bundle_dir / "model" / "backbone" / "config.json").read_text()).get("model_type", "")
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
