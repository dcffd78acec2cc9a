"""Phase 2: sweep the decision threshold on val_select logits and keep the best by ``phase2.metric``; when the
crossfit phase is committed, on its out-of-fold logits of train + val_select + val_calib instead (a cross-fitted
estimate for the deployed phase1 model: see streetvision.pipeline.phases.crossfit)."""

from __future__ import annotations

from streetvision.metrics.classification import binary_metrics, softmax_probs
from streetvision.metrics.policy import threshold_document
from streetvision.metrics.thresholds import select_threshold
from streetvision.io import atomic_write_csv, atomic_write_json
from streetvision.pipeline.phases.crossfit import fitting_logits
from streetvision.pipeline.registry import PhaseContext, PhaseResult, phase
from streetvision.validator.prior import prior_weights


@phase("phase2", "decision-threshold sweep on val_select (crossfit's out-of-fold logits when committed)",
       dir="phase2", needs=("phase1",), uses=("crossfit",), config_keys=("phase2", "deploy"))
def run_phase2(ctx: PhaseContext) -> PhaseResult:
    """Write threshold_sweep.csv and thresholds.json."""
    cfg, art = ctx.cfg, ctx.artifacts
    p2 = cfg.phase2
    split, val = fitting_logits(art, ctx.committed, "val_select")
    probs = softmax_probs(val.logits)
    prior = float(cfg.deploy.prior_roadwork)
    weights = prior_weights(val.labels, prior)  # the sweep counts images as if P(roadwork) were the deploy prior
    best, s = select_threshold(val.labels, probs, p2.metric, p2.n_thresholds, p2.max_fnr, weights)
    atomic_write_csv(art.threshold_sweep_csv, ["threshold", "mcc", "accuracy", "fnr", "fpr", "reward"],
                     ([f"{v:.6f}" for v in row]
                      for row in zip(s.thresholds, s.mcc, s.accuracy, s.fnr, s.fpr, s.reward)))
    at_best, at_half = binary_metrics(val.labels, probs, best, weights), binary_metrics(val.labels, probs, 0.5, weights)
    at_best_data_prior = binary_metrics(val.labels, probs, best)
    selection = {"n_thresholds": int(p2.n_thresholds), "metric": str(p2.metric),
                 "max_fnr": float(p2.max_fnr) if p2.metric == "fnr_constrained" else None}
    atomic_write_json(art.thresholds_json, threshold_document(best, val.class_names, selection, {
        "tie_rule": "middle of the widest run of thresholds attaining the best value",
        "split": split, "deploy_prior_roadwork": prior, "data_prior_roadwork": float(val.labels.mean()),
        "prior_method": "importance weights per class (streetvision.validator.prior)",
        "metrics_at_best": at_best, "metrics_at_0.5": at_half, "metrics_at_best_data_prior": at_best_data_prior,
        "sweep_csv": art.rel(art.threshold_sweep_csv),
    }))
    return PhaseResult(
        outputs=[art.threshold_sweep_csv, art.thresholds_json],
        metrics={"threshold": best, "metric": str(p2.metric), "deploy_prior_roadwork": prior,
                 f"{split}_at_best": at_best, f"{split}_at_0.5": at_half,
                 f"{split}_at_best_data_prior": at_best_data_prior},
        summary={"threshold": f"{best:.4f} ({p2.metric}, prior {prior:g})",
                 f"{split} MCC": f"{at_best['mcc']:.3f} (at 0.5: {at_half['mcc']:.3f}; data prior "
                                 f"{at_best_data_prior['mcc']:.3f})"},
    )

