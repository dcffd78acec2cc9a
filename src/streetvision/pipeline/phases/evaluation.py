"""Evaluation phase: the exported bundle, through the Predictor, on the run's test split (clean and under
validator conditions), per-image predictions, BCa bootstrap intervals and the HTML report."""

from __future__ import annotations

import csv

from streetvision.data.splits import load_splits
from streetvision.eval.run_evaluation import evaluate_to_dir, print_table
from streetvision.io import read_json
from streetvision.pipeline.artifacts import ArtifactSchema
from streetvision.pipeline.registry import PhaseContext, PhaseResult, phase


def learning_curves(art: ArtifactSchema) -> dict:
    """The run's learning curves when present: phase1's training_curve.csv rows, phase4's loss per step."""
    curves: dict = {}
    if art.training_curve_csv.is_file():
        with open(art.training_curve_csv, newline="") as handle:
            curves["phase1"] = list(csv.DictReader(handle))
    if art.metrics_json("phase4").is_file():
        curves["phase4"] = read_json(art.metrics_json("phase4")).get("loss_curve", [])
    return curves


@phase("evaluation", "bundle on the test split: clean + validator conditions, bootstrap CIs, HTML report",
       dir="evaluation", needs=("phase6", "splits"), uses=("phase1", "phase4"), config_keys=("evaluation", "deploy"))
def run_evaluation(ctx: PhaseContext) -> PhaseResult:
    """Write evaluation/predictions.csv, metrics_summary.json, bootstrap_ci.json, stream_steps.csv and report.html."""
    cfg, art = ctx.cfg, ctx.artifacts
    ev = cfg.evaluation
    splits = load_splits(art.splits_json)
    samples = list(zip(splits.paths("test"), splits.labels("test")))
    summary, intervals, paths = evaluate_to_dir(art.bundle_dir, samples,
                                                art.evaluation_dir, ev.seed, ev.n_resamples,
                                                "test split of this run", ev.backend,
                                                float(cfg.deploy.prior_roadwork), int(ev.stream_steps),
                                                learning_curves(art), console=ctx.console,
                                                kinds=splits.kinds("test"))
    print_table(summary, intervals, ctx.console, paths[-1])
    clean, mix = summary["clean"], summary["validator_mix"]
    ci_c, ci_m = intervals["clean"]["reward"], intervals["validator_mix"]["reward"]
    stream = summary.get("stream")
    shown = {"reward clean": f"{clean['reward']:.3f} [{ci_c['low']:.3f}, {ci_c['high']:.3f}]",
             "reward validator mix": f"{mix['reward']:.3f} [{ci_m['low']:.3f}, {ci_m['high']:.3f}]"}
    if stream:
        ci = stream["mean_reward_ci"]
        shown["simulated stream reward"] = (f"{stream['mean_reward']:.3f} [{ci['low']:.3f}, {ci['high']:.3f}] "
                                            f"over {stream['steps']} steps")
    return PhaseResult(
        outputs=paths,
        metrics={"clean": clean, "validator_mix": mix, "reward_ci": {"clean": ci_c, "validator_mix": ci_m},
                 "stream": stream},
        summary={**shown, "report": art.rel(paths[-1])})
