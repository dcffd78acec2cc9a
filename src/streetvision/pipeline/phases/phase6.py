"""Phase 6: export the self-contained, verifiable bundle (see streetvision.bundle.export)."""

from __future__ import annotations

from streetvision.bundle.export import build_bundle
from streetvision.pipeline.registry import PhaseContext, PhaseResult, phase
from streetvision.pipeline.runner import committed


@phase("phase6", "self-contained bundle: model, policy, ONNX, probes, checksums", needs=("phase1",),
       uses=("phase2", "phase5"), config_keys=("phase6",))
def run_phase6(ctx: PhaseContext) -> PhaseResult:
    """Build export/bundle and export/bundle.json."""
    art = ctx.artifacts
    done = {p for p in ("phase2", "phase5") if committed(art, p) is not None}
    summary = build_bundle(ctx.cfg, art, done)
    diff = summary["onnx_max_abs_diff"]
    return PhaseResult(
        outputs=[art.bundle_dir, art.bundle_pointer_json], metrics=summary,
        summary={"bundle": summary["bundle_dir"], "policy": summary["policy_type"],
                 "onnx parity": f"{diff:.1e}" if diff is not None else "off"})
