"""Evaluation entry points shared by the ``evaluation`` phase and the ``evaluate`` command."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from streetvision.bundle.predictor import Predictor
from streetvision.eval.evaluate import CONDITIONS, evaluate, load_labelled_images
from streetvision.eval.report import write_report


def evaluate_to_dir(bundle_dir: Path, samples: list[tuple[Path, int]], out_dir: Path, seed: int,
                    n_resamples: int, data_description: str, backend: str = "torch",
                    curves: dict | None = None) -> tuple[dict, dict, list[Path]]:
    """Score ``samples`` with the bundle under every condition and write the report into ``out_dir`` (with the
    run's learning ``curves`` when given)."""
    predictor = Predictor.from_bundle(bundle_dir, backend=backend)
    images, labels, skipped = load_labelled_images(samples)
    outputs, summary, intervals = evaluate(predictor, images, labels, seed, n_resamples)
    target = None
    if predictor.policy.policy_type == "scrc":
        raw = json.loads((bundle_dir / predictor.index["policy"]["policy_path"]).read_text())
        target = raw["scrc_params"]["selective"]["target_risk"]
    meta = {"bundle": str(bundle_dir), "data": data_description, "images": int(len(labels)),
            "unreadable": len(skipped), "seed": seed, "bootstrap_resamples": n_resamples, "backend": backend,
            "policy": predictor.policy.policy_type, "decision_threshold": predictor.policy.decision_threshold,
            "temperature": predictor.policy.temperature, "target_risk": target}
    paths = write_report(out_dir, predictor, outputs, summary, intervals, meta, curves)
    return summary, intervals, paths


def print_table(summary: dict, intervals: dict, console: Console, report: Path) -> None:
    """A short table: reward, MCC, accuracy (with intervals), ECE and coverage per condition."""
    table = Table(title="Evaluation (95% bootstrap intervals)")
    for col in ("condition", "reward", "MCC", "accuracy", "ECE", "coverage"):
        table.add_column(col, justify="right" if col != "condition" else "left")
    for name in CONDITIONS:
        s, ci = summary[name], intervals[name]

        def fmt(key):
            return f"{s[key]:.3f} [{ci[key]['low']:.3f}, {ci[key]['high']:.3f}]" if key in ci else f"{s[key]:.3f}"

        table.add_row(name, fmt("reward"), fmt("mcc"), fmt("accuracy"), f"{s['ece']:.3f}",
                      f"{s['coverage']:.1%}" if "coverage" in s else "-")
    console.print(table)
    console.print(f"report: {report}", markup=False, highlight=False, soft_wrap=True)
