"""The evaluation report: metrics_summary.json, bootstrap_ci.json, and one self-contained HTML file rendered from
a Jinja2 template (``templates/report.html.j2``) whose figures are matplotlib PNGs and thumbnails embedded as data
URIs; a Content-Security-Policy forbids any other resource, so it opens offline and fetches nothing.

Every table and figure is computed from the per-image rows of ``predictions.csv`` (plus the evaluation's facts in
metrics_summary.json's ``meta``, the stream's steps and the run's learning curves): :func:`report_from_dir`
re-renders the same page from those files alone.
"""

from __future__ import annotations

import base64
import csv
import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from PIL import Image

from streetvision.data.decode import DecodeError, decode_image
from streetvision.eval import figures
from streetvision.eval.bootstrap import PERCENTILE
from streetvision.eval.evaluate import CONDITIONS, condition_image, summarise
from streetvision.eval.predictions import PREDICTIONS_CSV, ConditionPredictions, read_predictions
from streetvision.io import atomic_write_csv, atomic_write_json, atomic_write_text, read_json

FIGURES = ("reward_by_level", "reliability", "reliability_by_condition", "roc_pr", "threshold_curves",
           "risk_coverage", "confusion", "stream")  # "stream" when a stream ran; "learning_curves" when curves given
GALLERY = "mistakes"  # the mistakes gallery: HTML thumbnails, one section per condition
CAPTIONS = {
    "reward_by_level": "Validator reward (0.5 MCC + 0.5 accuracy)^3 per condition, at the data's class prior and at "
                       "the deployment prior, with 95% bootstrap intervals.",
    "reliability": "Reliability of the clean images before and after temperature scaling. The number above each bar "
                   "is the bin's image count (pale, hatched bars hold fewer than 10 images: their accuracy is "
                   "noise); the histogram below shows where the confidences fall.",
    "reliability_by_condition": "Reliability of the calibrated probability in every condition, with bin counts.",
    "roc_pr": "ROC and precision-recall curves per condition (AUC and average precision in the legend); the circle "
              "on each curve is the operating point, the decision the validator reads from the score.",
    "threshold_curves": "MCC and reward against the threshold on the calibrated probability; dashed line: the "
                        "bundle's threshold, circles: the metrics at the decisions taken.",
    "risk_coverage": "Risk-coverage per condition (accepting the k most confident images); circles: the accept/defer "
                     "policy's coverage and selective risk.",
    "confusion": "Confusion matrices per condition: counts (top) and shares of each true class (bottom).",
    "stream": "Simulated validator stream: labels 50/50 (deploy prior), levels as published, reward "
              "(0.5 MCC(last 100) + 0.5 accuracy(last 10))^3 per challenge.",
    "learning_curves": "Learning curves of this run's training phases.",
}
METRIC_GROUPS = (
    ("The validator's reading of the score (data's class prior)",
     ("reward", "mcc", "accuracy", "precision", "recall", "fnr", "fpr")),
    ("At the deployment prior", ("reward_deploy", "mcc_deploy", "accuracy_deploy")),
    ("Ranking, calibration and the accept/defer policy", ("auroc", "ece", "brier", "coverage", "selective_risk")),
)
GALLERY_PER_KIND = 6
THUMBNAIL_PX = 128
STREAM_STEPS_CSV = "stream_steps.csv"
LEARNING_CURVES_JSON = "learning_curves.json"


def template_environment() -> Environment:
    """The Jinja2 environment over the package's templates (autoescaped, undefined names are errors)."""
    return Environment(loader=PackageLoader("streetvision.eval", "templates"), autoescape=select_autoescape(),
                       undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def metric_tables(summary: dict, intervals: dict, conditions: list[str]) -> tuple[list[dict], list[str]]:
    """Table rows for the template and the notes for intervals that fell back to the percentile method."""
    tables, notes = [], []
    for title, keys in METRIC_GROUPS:
        keys = tuple(k for k in keys if any(k in summary[c] for c in conditions))
        rows = []
        for name in conditions:
            cells = []
            for k in keys:
                value, ci = summary[name].get(k), intervals[name].get(k)
                cell = {"value": value, "low": ci["low"] if ci else None, "high": ci["high"] if ci else None,
                        "percentile": bool(ci and ci["method"] == PERCENTILE)}
                if cell["percentile"]:
                    notes.append(f"{name} {k}: percentile interval, BCa undefined ({ci.get('reason', '')})")
                cells.append(cell)
            rows.append({"condition": name, "cells": cells})
        tables.append({"title": title, "keys": keys, "rows": rows})
    return tables, notes


def _thumbnail_uri(image: Image.Image) -> str:
    thumb = image.convert("RGB")
    thumb.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
    buf = io.BytesIO()
    thumb.save(buf, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def gallery(predictions: dict[str, ConditionPredictions], seed: int,
            load_image: Callable[[int, str], Image.Image | None], class_names: list[str],
            per_kind: int = GALLERY_PER_KIND) -> list[dict]:
    """Per condition, the most confident false positives (highest score) and false negatives (lowest score),
    each with the image as the model saw it (thumbnail), its file name and score."""
    cache: dict[int, Image.Image | None] = {}
    sections = []
    for name, pred in predictions.items():
        fp = np.flatnonzero((pred.labels == 0) & (pred.decision == 1))
        fn = np.flatnonzero((pred.labels == 1) & (pred.decision == 0))
        kinds = []
        for kind, rows, true_class in (("false positives", fp[np.argsort(-pred.score[fp], kind="stable")], 0),
                                       ("false negatives", fn[np.argsort(pred.score[fn], kind="stable")], 1)):
            items = []
            for r in rows[:per_kind]:
                index = int(pred.image_index[r])
                if index not in cache:
                    cache[index] = load_image(index, pred.sample_ids[r])
                image = cache[index]
                src = _thumbnail_uri(condition_image(image, seed, index, int(pred.levels[r]))) if image else None
                items.append({"src": src, "sample_id": pred.sample_ids[r], "name": Path(pred.sample_ids[r]).name,
                              "score": float(pred.score[r]), "probability": float(pred.probability[r]),
                              "level": int(pred.levels[r])})
            kinds.append({"kind": f"{kind} (true {class_names[true_class]})", "total": len(rows), "items": items})
        sections.append({"condition": name, "kinds": kinds})
    return sections


def build_figures(predictions: dict[str, ConditionPredictions], summary: dict, intervals: dict, meta: dict,
                  stream: dict | None = None, curves: dict | None = None) -> dict[str, object]:
    """Every figure of the report (matplotlib Figures by id), from the predictions and the evaluation's facts."""
    conditions = tuple(c for c in CONDITIONS if c in predictions)
    class_names = meta["class_names"]
    out = {
        "reward_by_level": figures.reward_by_condition_figure(summary, intervals, conditions),
        "reliability": figures.reliability_figure(predictions["clean"], meta["temperature"]),
        "reliability_by_condition": figures.reliability_by_condition_figure(predictions),
        "roc_pr": figures.roc_pr_figure(predictions, class_names[1]),
        "threshold_curves": figures.threshold_figure(predictions, meta["decision_threshold"]),
        "risk_coverage": figures.risk_coverage_figure(predictions, meta.get("target_risk")),
        "confusion": figures.confusion_figure(predictions, class_names),
    }
    if stream:
        out["stream"] = figures.stream_figure(stream)
    if curves and curves.get("phase1"):
        out["learning_curves"] = figures.learning_curves_figure(curves)
    return out


def headline(summary: dict, intervals: dict, stream_summary: dict | None) -> list[dict]:
    """The few numbers a miner reads first: what the validator would pay."""
    rows = []
    if stream_summary:
        ci = stream_summary["mean_reward_ci"]
        rows.append({"what": f"simulated validator stream ({stream_summary['steps']} challenges)",
                     "value": stream_summary["mean_reward"], "low": ci["low"], "high": ci["high"],
                     "method": ci["method"]})
    for name, key, what in (("validator_mix", "reward_deploy", "validator mix at the deployment prior"),
                            ("clean", "reward", "clean images")):
        ci = intervals[name][key]
        rows.append({"what": f"reward, {what}", "value": summary[name][key], "low": ci["low"], "high": ci["high"],
                     "method": ci["method"]})
    return rows


def render_report(predictions: dict[str, ConditionPredictions], summary: dict, intervals: dict, meta: dict,
                  stream: dict | None = None, curves: dict | None = None,
                  load_image: Callable[[int, str], Image.Image | None] | None = None) -> str:
    """The report page (HTML) from per-image predictions, their metrics and intervals, and the facts."""
    conditions = [c for c in CONDITIONS if c in predictions]
    tables, notes = metric_tables(summary, intervals, conditions)
    figs = build_figures(predictions, summary, intervals, meta, stream, curves)
    stream_summary = stream["summary"] if stream else None
    return template_environment().get_template("report.html.j2").render(
        meta=meta, headline=headline(summary, intervals, stream_summary), tables=tables, notes=notes,
        stream=stream_summary, sources=summary.get("sources"),
        figures=[{"id": k, "caption": CAPTIONS[k], "png": figures.png_base64(f)} for k, f in figs.items()],
        gallery=gallery(predictions, int(meta["seed"]), load_image or (lambda i, s: None), meta["class_names"]),
        gallery_id=GALLERY, n_resamples=meta["bootstrap_resamples"])


def write_report(out_dir: Path, predictions: dict[str, ConditionPredictions], summary: dict, intervals: dict,
                 meta: dict, stream: dict | None = None, curves: dict | None = None,
                 load_image: Callable[[int, str], Image.Image | None] | None = None) -> list[Path]:
    """Write metrics_summary.json, bootstrap_ci.json, stream_steps.csv (when a stream ran), learning_curves.json
    (when curves are given) and report.html into ``out_dir`` (beside predictions.csv); return their paths,
    the report last."""
    out_dir.mkdir(parents=True, exist_ok=True)
    conditions = {name: summary[name] for name in CONDITIONS if name in summary}
    sources = {"sources": summary["sources"]} if "sources" in summary else {}  # per kind: real | generated
    atomic_write_json(out_dir / "metrics_summary.json",
                      {"meta": meta, "conditions": conditions, "stream": stream["summary"] if stream else None,
                       **sources})
    atomic_write_json(out_dir / "bootstrap_ci.json", intervals)
    paths = [out_dir / "metrics_summary.json", out_dir / "bootstrap_ci.json"]
    if stream:
        paths.append(out_dir / STREAM_STEPS_CSV)
        atomic_write_csv(paths[-1], list(stream["steps"][0]), [list(r.values()) for r in stream["steps"]])
    if curves and curves.get("phase1"):
        paths.append(out_dir / LEARNING_CURVES_JSON)
        atomic_write_json(paths[-1], curves)
    page = render_report(predictions, summary, intervals, meta, stream, curves, load_image)
    atomic_write_text(out_dir / "report.html", page)
    return [*paths, out_dir / "report.html"]


def image_loader(data_root: Path, images: list[Image.Image] | None = None) -> Callable[[int, str], Image.Image | None]:
    """Images for the gallery: from memory when given, else decoded from ``data_root / sample_id`` (None when the
    file is gone)."""
    def load(index: int, sample_id: str) -> Image.Image | None:
        if images is not None:
            return images[index]
        try:
            return decode_image(Path(data_root) / sample_id)
        except (DecodeError, OSError):
            return None
    return load


def report_from_dir(eval_dir: Path) -> str:
    """Re-render report.html from an evaluation directory's files alone: predictions.csv, the facts in
    metrics_summary.json, stream_steps.csv and learning_curves.json when present (images for the gallery from
    the data root the facts name)."""
    eval_dir = Path(eval_dir)
    saved = read_json(eval_dir / "metrics_summary.json")
    meta = saved["meta"]
    predictions = read_predictions(eval_dir / PREDICTIONS_CSV)
    summary, intervals = summarise(predictions, int(meta["bootstrap_resamples"]), int(meta["seed"]),
                                   float(meta["deploy_prior_roadwork"]))
    if "sources" in saved:
        summary["sources"] = saved["sources"]
    stream = None
    if (eval_dir / STREAM_STEPS_CSV).is_file():
        with open(eval_dir / STREAM_STEPS_CSV, newline="") as handle:
            stream = {"summary": saved["stream"], "steps": list(csv.DictReader(handle))}
    curves = read_json(eval_dir / LEARNING_CURVES_JSON) if (eval_dir / LEARNING_CURVES_JSON).is_file() else None
    return render_report(predictions, summary, intervals, meta, stream, curves,
                         image_loader(Path(meta["data_root"])))
