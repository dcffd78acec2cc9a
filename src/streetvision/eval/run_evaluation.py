"""Evaluation entry points shared by the ``evaluation`` phase and the ``evaluate`` command."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from streetvision.bundle.predictor import Predictor
from streetvision.eval.evaluate import CONDITIONS, FileImages, predict_files, source_metrics, summarise
from streetvision.eval.predictions import PREDICTIONS_CSV, read_predictions, write_predictions
from streetvision.eval.report import image_loader, write_report
from streetvision.validator.prior import VALIDATOR_PRIOR
from streetvision.validator.stream import DEFAULT_STEPS, simulate


def evaluate_to_dir(bundle_dir: Path, samples: list[tuple[Path, int]], out_dir: Path, seed: int,
                    n_resamples: int, data_description: str, backend: str = "torch",
                    prior: float = VALIDATOR_PRIOR, stream_steps: int = DEFAULT_STEPS,
                    curves: dict | None = None, console: Console | None = None,
                    kinds: list[str] | None = None) -> tuple[dict, dict, list[Path]]:
    """Score ``samples`` with the bundle under every condition, write predictions.csv (one row per image and
    condition), replay a validator stream over them (when both classes are present and ``stream_steps`` > 0) and
    write the report into ``out_dir`` (with the run's learning ``curves`` when given); every metric and figure is
    computed from predictions.csv as read back. A ``console`` shows progress bars of the decoding and scoring.
    ``kinds`` (real | generated per sample) adds each kind's metrics and the validator's real/generated mix
    (``summary["sources"]``), and the stream then draws a kind per challenge as the validator does."""
    predictor = Predictor.from_bundle(bundle_dir, backend=backend)
    predictions, data_root, labels, paths, skipped = predict_files(predictor, samples, seed, console)
    images = FileImages(paths)  # decoded again only where the stream and the gallery look
    out_dir.mkdir(parents=True, exist_ok=True)
    write_predictions(out_dir / PREDICTIONS_CSV, predictions)
    predictions = read_predictions(out_dir / PREDICTIONS_CSV)
    summary, intervals = summarise(predictions, n_resamples, seed, prior)
    kept_kinds = None
    if kinds is not None and len(set(kinds)) > 1:
        kind_of = {Path(path): kind for (path, _), kind in zip(samples, kinds)}
        kept_kinds = np.array([kind_of[Path(path)] for path in paths])
        summary["sources"] = source_metrics(predictions, kept_kinds, prior)
    stream = None
    if stream_steps > 0 and len(set(labels.tolist())) == 2:
        stream = simulate(predictor.scores, images, labels, stream_steps, seed, prior, n_resamples=n_resamples,
                          console=console, kinds=kept_kinds)
        summary["stream"] = stream["summary"]
    meta = {"bundle": str(bundle_dir), "data": data_description, "data_root": str(data_root),
            "images": int(len(labels)), "unreadable": len(skipped), "seed": seed, "bootstrap_resamples": n_resamples,
            "interval_method": "BCa (scipy.stats.bootstrap, paired over images); percentile where BCa is undefined",
            "backend": backend, "class_names": list(predictor.index["class_names"]),
            "policy": predictor.policy.policy_type, "decision_threshold": predictor.policy.decision_threshold,
            "temperature": predictor.policy.temperature, "selective_threshold": predictor.policy.selective_threshold,
            "target_risk": predictor.policy.target_risk, "class_thresholds": predictor.policy.class_thresholds,
            "deploy_prior_roadwork": prior}
    paths = write_report(out_dir, predictions, summary, intervals, meta, stream, curves,
                         image_loader(data_root, images))
    return summary, intervals, [out_dir / PREDICTIONS_CSV, *paths]


def print_table(summary: dict, intervals: dict, console: Console, report: Path) -> None:
    """A short table: reward, MCC, accuracy (with intervals), ECE and coverage per condition."""
    table = Table(title="Evaluation (95% BCa bootstrap intervals; reward = (0.5 MCC + 0.5 acc)^3, "
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
