"""Evaluation entry points shared by the ``evaluation`` phase and the ``evaluate`` command."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from streetvision.bundle.predictor import Predictor
from streetvision.eval.evaluate import CONDITIONS, evaluate, load_labelled_images
from streetvision.eval.report import write_report
from streetvision.validator.prior import VALIDATOR_PRIOR
from streetvision.validator.stream import DEFAULT_STEPS, simulate


def evaluate_to_dir(bundle_dir: Path, samples: list[tuple[Path, int]], out_dir: Path, seed: int,
                    n_resamples: int, data_description: str, backend: str = "torch",
                    prior: float = VALIDATOR_PRIOR, stream_steps: int = DEFAULT_STEPS,
                    curves: dict | None = None) -> tuple[dict, dict, list[Path]]:
    """Score ``samples`` with the bundle under every condition, replay a validator stream over them (when both
    classes are present and ``stream_steps`` > 0) and write the report into ``out_dir`` (with the run's
    learning ``curves`` when given)."""
    predictor = Predictor.from_bundle(bundle_dir, backend=backend)
    images, labels, skipped = load_labelled_images(samples)
    outputs, summary, intervals = evaluate(predictor, images, labels, seed, n_resamples, prior)
    stream = None
    if stream_steps > 0 and len(set(labels.tolist())) == 2:
        stream = simulate(predictor.scores, images, labels, stream_steps, seed, prior, n_resamples=n_resamples)
        summary["stream"] = stream["summary"]
    target = None
    if predictor.policy.policy_type == "scrc":
        raw = json.loads((bundle_dir / predictor.index["policy"]["policy_path"]).read_text())
        target = raw["scrc_params"]["selective"]["target_risk"]
    meta = {"bundle": str(bundle_dir), "data": data_description, "images": int(len(labels)),
            "unreadable": len(skipped), "seed": seed, "bootstrap_resamples": n_resamples, "backend": backend,
            "policy": predictor.policy.policy_type, "decision_threshold": predictor.policy.decision_threshold,
            "temperature": predictor.policy.temperature, "target_risk": target, "deploy_prior_roadwork": prior}
    paths = write_report(out_dir, predictor, outputs, summary, intervals, meta, stream, curves)
    return summary, intervals, paths


def print_table(summary: dict, intervals: dict, console: Console, report: Path) -> None:
    """A short table: reward, MCC, accuracy (with intervals), ECE and coverage per condition."""
    table = Table(title="Evaluation (95% bootstrap intervals; reward = (0.5 MCC + 0.5 acc)^3, "
                        "at the data's prior and at the deployment prior)")
    for col in ("condition", "reward", "MCC", "accuracy", "reward @deploy", "ECE", "coverage"):
        table.add_column(col, justify="right" if col != "condition" else "left")
    for name in CONDITIONS:
        s, ci = summary[name], intervals[name]

        def fmt(key):
            return f"{s[key]:.3f} [{ci[key]['low']:.3f}, {ci[key]['high']:.3f}]" if key in ci else f"{s[key]:.3f}"

        table.add_row(name, fmt("reward"), fmt("mcc"), fmt("accuracy"), fmt("reward_deploy"), f"{s['ece']:.3f}",
                      f"{s['coverage']:.1%}" if "coverage" in s else "-")
    console.print(table)
    stream = summary.get("stream")
    if stream:
        ci = stream["mean_reward_ci"]
        console.print(f"simulated validator stream ({stream['steps']} steps, P(roadwork) {stream['prior_roadwork']:g}):"
                      f" mean reward {stream['mean_reward']:.3f} [{ci['low']:.3f}, {ci['high']:.3f}], p5 "
                      f"{stream['p5']:.3f}, p50 {stream['p50']:.3f}, p95 {stream['p95']:.3f}", markup=False)
    console.print(f"report: {report}", markup=False, highlight=False, soft_wrap=True)
