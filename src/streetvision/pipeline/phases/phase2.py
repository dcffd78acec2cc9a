"""Phase 2: sweep the decision threshold on val_select logits and keep the best by ``phase2.metric``."""

from __future__ import annotations

from streetvision.eval.logits import read_logits
from streetvision.metrics.classification import binary_metrics, softmax_probs
from streetvision.metrics.policy import threshold_document
from streetvision.metrics.thresholds import select_threshold
from streetvision.io import atomic_write_csv, atomic_write_json
from streetvision.pipeline.registry import PhaseContext, PhaseResult, phase
from streetvision.validator.prior import prior_weights


@phase("phase2", "decision-threshold sweep on val_select", dir="phase2", needs=("phase1",),
       config_keys=("phase2", "deploy"))
def run_phase2(ctx: PhaseContext) -> PhaseResult:
    """Write threshold_sweep.csv and thresholds.json."""
    cfg, art = ctx.cfg, ctx.artifacts
    p2 = cfg.phase2
    val = read_logits(art.logits_csv("val_select"))
    probs = softmax_probs(val.logits)
    prior = float(cfg.deploy.prior_roadwork)
    weights = prior_weights(val.labels, prior)  # the sweep counts images as if P(roadwork) were the deploy prior
    best, s = select_threshold(val.labels, probs, p2.metric, p2.n_thresholds, p2.max_fnr, weights)
    atomic_write_csv(art.threshold_sweep_csv, ["threshold", "mcc", "accuracy", "fnr", "fpr", "reward"],
                     ([f"{v:.6f}" for v in row] for row in zip(s.thresholds, s.mcc, s.accuracy, s.fnr, s.fpr, s.reward)))
    at_best, at_half = binary_metrics(val.labels, probs, best, weights), binary_metrics(val.labels, probs, 0.5, weights)
    at_best_data_prior = binary_metrics(val.labels, probs, best)
    selection = {"n_thresholds": int(p2.n_thresholds), "metric": str(p2.metric),
                 "max_fnr": float(p2.max_fnr) if p2.metric == "fnr_constrained" else None}
    atomic_write_json(art.thresholds_json, threshold_document(best, val.class_names, selection, {
        "tie_rule": "middle of the widest run of thresholds attaining the best value",
        "split": "val_select", "deploy_prior_roadwork": prior, "data_prior_roadwork": float(val.labels.mean()),
        "prior_method": "importance weights per class (streetvision.validator.prior)",
        "metrics_at_best": at_best, "metrics_at_0.5": at_half, "metrics_at_best_data_prior": at_best_data_prior,
        "sweep_csv": art.rel(art.threshold_sweep_csv),
    }))
    return PhaseResult(
        outputs=[art.threshold_sweep_csv, art.thresholds_json],
        metrics={"threshold": best, "metric": str(p2.metric), "deploy_prior_roadwork": prior,
                 "val_select_at_best": at_best, "val_select_at_0.5": at_half,
                 "val_select_at_best_data_prior": at_best_data_prior},
        summary={"threshold": f"{best:.4f} ({p2.metric}, prior {prior:g})",
                 "val_select MCC": f"{at_best['mcc']:.3f} (at 0.5: {at_half['mcc']:.3f}; data prior "
                                   f"{at_best_data_prior['mcc']:.3f})"},
    )

