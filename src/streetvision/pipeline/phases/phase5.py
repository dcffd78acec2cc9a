"""Phase 5 (SCRC): temperature scaling fitted on val_calib only, calibration metrics before/after on val_calib and
test, the decision threshold re-expressed on calibrated probabilities, and a certified selective (defer) policy.

When the crossfit phase is committed, the temperature and the selective policy are fitted on its out-of-fold
logits of train + val_select + val_calib instead of val_calib. They are then cross-fitted estimates for the
deployed phase1 model (the logits come from K fold models), and the policy's Clopper-Pearson guarantee, exact for
calibration images scored by the deployed model, holds only approximately (streetvision.pipeline.phases.crossfit).
"""

from __future__ import annotations

from streetvision.models.temperature import fit_temperature
from streetvision.metrics.calibration import (
    calibrated_probs,
    calibration_metrics,
    recalibrated_threshold,
)
from streetvision.eval.logits import read_logits
from streetvision.metrics.classification import binary_metrics
from streetvision.metrics.crc import classwise_report, classwise_thresholds, crc_accepted
from streetvision.metrics.policy import THRESHOLD, Policy, decided_confidence, scrc_document, threshold_split
from streetvision.metrics.selective import apply_policy, learn_then_test, risk_coverage_curve
from streetvision.metrics.thresholds import select_threshold
from streetvision.io import atomic_write_csv, atomic_write_json
from streetvision.pipeline.phases.crossfit import fitting_logits
from streetvision.pipeline.registry import PhaseContext, PhaseResult, phase
from streetvision.validator.prior import prior_weights


def _improvement(pre: dict, post: dict) -> dict:
    out = {f"{k}_reduction": pre[k] - post[k] for k in ("ece", "mce", "brier", "nll")}
    out["ece_relative_reduction"] = (pre["ece"] - post["ece"]) / pre["ece"] if pre["ece"] > 0 else 0.0
    return out


@phase("phase5", "temperature scaling + certified selective policy (LTT or class-wise CRC) on val_calib (crossfit's out-of-fold logits "
       "when committed)", dir="phase5_scrc", needs=("phase1",), uses=("phase2", "crossfit"),
       config_keys=("phase5", "phase2", "deploy"))
def run_phase5(ctx: PhaseContext) -> PhaseResult:
    """Write calibration_metrics.json, risk_coverage.csv and scrcparams.json."""
    cfg, art = ctx.cfg, ctx.artifacts
    p5 = cfg.phase5
    prior = float(cfg.deploy.prior_roadwork)
    fit_split, calib = fitting_logits(art, ctx.committed, "val_calib")
    temperature = fit_temperature(calib.logits, calib.labels)  # fitted on val_calib (or out-of-fold) ONLY
    calib_probs = calibrated_probs(calib.logits, temperature)

    if "phase2" in ctx.committed:
        raw_threshold = Policy.from_file(art.thresholds_json, THRESHOLD).decision_threshold
        threshold = recalibrated_threshold(raw_threshold, temperature)
        source = f"phase2 ({threshold_split(art.thresholds_json)}), re-expressed on calibrated probabilities"
    else:
        threshold, _ = select_threshold(calib.labels, calib_probs, cfg.phase2.metric, cfg.phase2.n_thresholds,
                                        cfg.phase2.max_fnr, prior_weights(calib.labels, prior))
        raw_threshold, source = None, f"{fit_split} (phase2 did not run; best {cfg.phase2.metric})"

    decisions, confidence = decided_confidence(calib_probs, threshold)
    class_thresholds = None
    if p5.policy == "crc_classwise":
        class_thresholds = classwise_thresholds(calib_probs, calib.labels, float(p5.alpha), calib.class_names)
    policy = learn_then_test(confidence, decisions != calib.labels, p5.target_risk, p5.delta)
    coverage, risk, aurc = risk_coverage_curve(confidence, decisions != calib.labels)
    atomic_write_csv(art.risk_coverage_csv, ["coverage", "selective_risk"],
                     ([f"{c:.6f}", f"{r:.6f}"] for c, r in zip(coverage, risk)))

    # Reporting only (after fitting): the untouched test split.
    test = read_logits(art.logits_csv("test"))
    test_probs = calibrated_probs(test.logits, temperature)
    test_decisions, test_conf = decided_confidence(test_probs, threshold)
    ltt_test = apply_policy(test_conf, test_decisions != test.labels, policy.threshold)
    if class_thresholds is None:
        test_policy = ltt_test
    else:
        accepted = crc_accepted(test_probs, test_decisions, class_thresholds)
        wrong = test_decisions != test.labels
        test_policy = {"coverage": float(accepted.mean()), "risk": float(wrong[accepted].mean()) if accepted.any()
                       else 0.0}
    report = {}
    for name, table in ((fit_split, calib), ("test", test)):
        pre = calibration_metrics(table.labels, calibrated_probs(table.logits, 1.0), p5.n_bins)
        post = calibration_metrics(table.labels, calibrated_probs(table.logits, temperature), p5.n_bins)
        report[name] = {"pre_calibration": pre, "post_calibration": post, "improvement": _improvement(pre, post)}
    atomic_write_json(art.calibration_metrics_json, {
        "method": "temperature_scaling", "temperature": temperature, "fitted_on": fit_split,
        "n_bins": int(p5.n_bins), **report[fit_split], "test": report["test"],
    })
    ltt = {
        "confidence": "calibrated probability of the decided class", "confidence_threshold": policy.threshold,
        "target_risk": float(p5.target_risk), "delta": float(p5.delta), "method": "learn_then_test_clopper_pearson",
        "risk_upper_bound": policy.risk_upper_bound, f"{fit_split}_coverage": policy.coverage,
        f"{fit_split}_risk": policy.risk, "test_coverage": ltt_test["coverage"], "test_risk": ltt_test["risk"],
        f"aurc_{fit_split}": aurc, "risk_coverage_csv": art.rel(art.risk_coverage_csv),
        "status": "certified" if policy.threshold is not None else
        "no threshold meets the target: every image is deferred",
    }
    if class_thresholds is None:
        selective = ltt
    else:
        fit_report = classwise_report(calib_probs, calib.labels, decisions, class_thresholds, calib.class_names)
        test_report = classwise_report(test_probs, test.labels, test_decisions, class_thresholds, calib.class_names)
        selective = {
            "method": "crc_classwise", "alpha": float(p5.alpha),
            "class_thresholds": [float(t) for t in class_thresholds],
            "prediction_set": "classes whose calibrated probability >= its class threshold; accepted iff the set "
                              "is exactly the decided class",
            "guarantee": "each class's miss rate (its class not in the set) <= alpha in expectation over "
                         "calibration draws (conformal risk control, per class)",
            f"{fit_split}_per_class": fit_report, "test_per_class": test_report,
            "test_coverage": test_policy["coverage"], "test_risk": test_policy["risk"],
            "ltt_for_comparison": ltt, "status": "certified"}
    test_metrics = binary_metrics(test.labels, test_probs, threshold)
    test_metrics_deploy = binary_metrics(test.labels, test_probs, threshold, prior_weights(test.labels, prior))
    atomic_write_json(art.scrcparams_json, scrc_document(
        temperature, threshold, calib.class_names,
        {"decision_threshold_uncalibrated": raw_threshold, "threshold_source": source}, selective,
        {"metrics": {"test_at_threshold": test_metrics, "test_at_threshold_deploy_prior": test_metrics_deploy,
                     "deploy_prior_roadwork": prior, "prior_method": "importance weights per class"},
         "calibration_metrics": art.rel(art.calibration_metrics_json)}))
    pre, post = report[fit_split]["pre_calibration"], report[fit_split]["post_calibration"]
    return PhaseResult(
        outputs=[art.calibration_metrics_json, art.risk_coverage_csv, art.scrcparams_json],
        metrics={"temperature": temperature, "decision_threshold": threshold, "ece_pre": pre["ece"],
                 "ece_post": post["ece"], "selective": selective, "test_at_threshold": test_metrics,
                 "test_at_threshold_deploy_prior": test_metrics_deploy},
        summary={"T": f"{temperature:.3f}", f"ECE {fit_split}": f"{pre['ece']:.3f} -> {post['ece']:.3f}",
                 "threshold": f"{threshold:.4f}",
                 **({"coverage at risk<=" + f"{p5.target_risk}":
                     f"{policy.coverage:.1%} (test {test_policy['coverage']:.1%}, risk {test_policy['risk']:.3f})"}
                    if class_thresholds is None else {
                     f"class-wise CRC alpha={p5.alpha}": f"test coverage {test_policy['coverage']:.1%}, miss "
                     + ", ".join(f"{k} {v['miss_rate']:.3f}" for k, v in selective["test_per_class"].items())})},
    )

