"""Two models on the same images: which one would the validator pay more, and how sure is that.

``streetvision compare A B --out DIR`` reads ``predictions.csv`` of two evaluations (evaluation directories, or run
directories holding ``evaluation/``), refuses unless both scored the same files under the same validator
challenges (content hash, label, level and distortion parameters per row), and reports per condition each model's
metrics with BCa intervals and the paired differences B - A of reward, MCC and accuracy: the images are resampled
once for both models, so the interval reflects how differently they answer the same photos, not how hard the
photos are. ``share_above_zero`` is the share of resamples in which B beats A.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from streetvision.errors import ConfigError
from streetvision.eval import figures
from streetvision.eval.bootstrap import bootstrap_intervals
from streetvision.eval.evaluate import CONDITIONS, summarise, threshold_metrics_along_last_axis
from streetvision.eval.predictions import PREDICTIONS_CSV, ConditionPredictions, read_predictions
from streetvision.eval.report import metric_tables, template_environment
from streetvision.io import atomic_write_json, atomic_write_text, read_json

COMPARED = ("reward", "mcc", "accuracy", "reward_deploy")
HEADLINE_CONDITION, HEADLINE_METRIC = "validator_mix", "reward_deploy"  # the validator's draw: mixed levels, 50/50
COMPARE_FIGURES = ("reward_comparison", "paired_differences", "roc_comparison")
FIX = ("evaluate both bundles on the same images with the same seed, e.g. streetvision evaluate BUNDLE_A --folder "
       "DIR --out eval_a; streetvision evaluate BUNDLE_B --folder DIR --out eval_b; streetvision compare eval_a "
       "eval_b --out compare")


def evaluation_dir(path: Path) -> Path:
    """The evaluation directory behind ``path``: itself when it holds predictions.csv, else its ``evaluation/``."""
    path = Path(path)
    for candidate in (path, path / "evaluation"):
        if (candidate / PREDICTIONS_CSV).is_file() and (candidate / "metrics_summary.json").is_file():
            return candidate
    raise ConfigError(f"'{path}' holds no {PREDICTIONS_CSV}: it is neither an evaluation directory nor a run "
                      f"directory with evaluation/{PREDICTIONS_CSV}.",
                      "evaluate it first (streetvision evaluate BUNDLE ... --out DIR, or the evaluation phase: "
                      "streetvision run pipeline.phases=[evaluation] run_id=RUN).")


def _examples(items: list[str], k: int = 3) -> str:
    return ", ".join(f"'{x}'" for x in items[:k]) + (" ..." if len(items) > k else "")


def check_same_images(a: dict[str, ConditionPredictions], b: dict[str, ConditionPredictions],
                      meta_a: dict, meta_b: dict) -> None:
    """ConfigError naming the difference unless A and B hold the same rows: conditions, files (content hash, or
    sample id where no hash was recorded), labels and validator challenges."""
    def identity(p: ConditionPredictions) -> list[str]:
        return [h or s for h, s in zip(p.image_sha256, p.sample_ids)]

    if set(a) != set(b):
        raise ConfigError(f"The two evaluations cover different conditions (A: {sorted(a)}, B: {sorted(b)}).", FIX)
    clean_a, clean_b = a["clean"], b["clean"]
    ids_a, ids_b = identity(clean_a), identity(clean_b)
    if sorted(ids_a) != sorted(ids_b):
        set_a, set_b = set(ids_a), set(ids_b)
        only_a = [s for s, i in zip(clean_a.sample_ids, ids_a) if i not in set_b]
        only_b = [s for s, i in zip(clean_b.sample_ids, ids_b) if i not in set_a]
        raise ConfigError(f"The two evaluations are not on the same images: A has {len(ids_a)}, B has {len(ids_b)}; "
                          f"{len(only_a)} only in A ({_examples(only_a)}), {len(only_b)} only in B "
                          f"({_examples(only_b)}). A paired comparison needs every image scored by both models.", FIX)
    if ids_a != ids_b:
        raise ConfigError("The two evaluations hold the same images in a different order, so the validator "
                          "challenges (seeded per image position) differ.", FIX)
    for name in a:
        pa, pb = a[name], b[name]
        wrong_label = [s for s, la, lb in zip(pa.sample_ids, pa.labels, pb.labels) if la != lb]
        if wrong_label:
            raise ConfigError(f"The two evaluations label {len(wrong_label)} images differently "
                              f"({_examples(wrong_label)}).", FIX)
        differ = [s for s, la, lb, da, db in zip(pa.sample_ids, pa.levels, pb.levels, pa.distortions, pb.distortions)
                  if la != lb or da != db]
        if differ:
            raise ConfigError(f"The two evaluations saw {len(differ)} images of condition '{name}' under different "
                              f"validator challenges ({_examples(differ)}; evaluation seeds: A {meta_a.get('seed')}, "
                              f"B {meta_b.get('seed')}).", FIX)


def paired_differences(a: ConditionPredictions, b: ConditionPredictions, n_resamples: int, seed: int,
                       prior: float) -> dict[str, dict]:
    """B - A of each COMPARED metric with paired BCa intervals (images resampled once for both models)."""
    def statistic(y, decision_a, decision_b):
        ma = threshold_metrics_along_last_axis(y, decision_a, prior)
        mb = threshold_metrics_along_last_axis(y, decision_b, prior)
        return np.stack([mb[k] - ma[k] for k in COMPARED])

    return bootstrap_intervals([a.labels, a.decision, b.decision], statistic, COMPARED, n_resamples, seed,
                               share_above_zero=True)


def verdict(diff: dict) -> str:
    """Which model the interval favours: 'B', 'A' or 'neither' (the interval includes 0)."""
    if diff["low"] > 0:
        return "B"
    if diff["high"] < 0:
        return "A"
    return "neither"


def agreement(a: ConditionPredictions, b: ConditionPredictions) -> dict[str, int]:
    """How often each model is right where the other is wrong."""
    return {"both_right": int((a.correct & b.correct).sum()), "only_a_right": int((a.correct & ~b.correct).sum()),
            "only_b_right": int((~a.correct & b.correct).sum()), "both_wrong": int((~a.correct & ~b.correct).sum())}


def compare(path_a: Path, path_b: Path, n_resamples: int = 1000, seed: int = 0) -> dict:
    """Everything the comparison report shows (see module docstring)."""
    dir_a, dir_b = evaluation_dir(path_a), evaluation_dir(path_b)
    saved_a, saved_b = read_json(dir_a / "metrics_summary.json"), read_json(dir_b / "metrics_summary.json")
    meta_a, meta_b = saved_a["meta"], saved_b["meta"]
    pred_a, pred_b = read_predictions(dir_a / PREDICTIONS_CSV), read_predictions(dir_b / PREDICTIONS_CSV)
    check_same_images(pred_a, pred_b, meta_a, meta_b)
    prior = float(meta_a.get("deploy_prior_roadwork", 0.5))
    summary_a, intervals_a = summarise(pred_a, n_resamples, seed, prior)
    summary_b, intervals_b = summarise(pred_b, n_resamples, seed, prior)
    conditions = [c for c in CONDITIONS if c in pred_a]
    rows = {}
    for name in conditions:
        diffs = paired_differences(pred_a[name], pred_b[name], n_resamples, seed, prior)
        rows[name] = {"differences": diffs, "verdict": verdict(diffs["reward"]),
                      "agreement": agreement(pred_a[name], pred_b[name])}
    head = rows[HEADLINE_CONDITION]["differences"][HEADLINE_METRIC]
    return {
        "a": {"dir": str(dir_a), "meta": meta_a, "summary": summary_a, "intervals": intervals_a,
              "stream": saved_a.get("stream")},
        "b": {"dir": str(dir_b), "meta": meta_b, "summary": summary_b, "intervals": intervals_b,
              "stream": saved_b.get("stream")},
        "images": len(pred_a["clean"]), "n_resamples": n_resamples, "seed": seed, "deploy_prior_roadwork": prior,
        "conditions": rows,
        "headline": {"condition": HEADLINE_CONDITION, "metric": HEADLINE_METRIC, **head, "verdict": verdict(head)},
        "_predictions": (pred_a, pred_b),
    }


def _figures(result: dict) -> dict[str, object]:
    pred_a, pred_b = result["_predictions"]
    conditions = [c for c in CONDITIONS if c in pred_a]
    return {
        "reward_comparison": figures.reward_comparison_figure(result, conditions),
        "paired_differences": figures.paired_differences_figure(result, conditions, COMPARED),
        "roc_comparison": figures.roc_comparison_figure(pred_a, pred_b, conditions),
    }


CAPTIONS = {
    "reward_comparison": "Validator reward per condition for A and B (deployment prior), 95% BCa intervals.",
    "paired_differences": "Paired differences B - A per condition with 95% paired BCa intervals; right of the "
                          "dashed line B is better.",
    "roc_comparison": "ROC curves of A (solid) and B (dashed) per condition, AUC in the legend, operating points "
                      "marked.",
}


def write_comparison(result: dict, out_dir: Path) -> list[Path]:
    """comparison.json and report.html (one self-contained page) in ``out_dir``; return their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    conditions = [c for c in CONDITIONS if c in result["conditions"]]
    tables = {}
    for key in ("a", "b"):
        tables[key], _ = metric_tables(result[key]["summary"], result[key]["intervals"], conditions)
    page = template_environment().get_template("compare.html.j2").render(
        result=result, conditions=conditions, compared=COMPARED, tables=tables,
        figures=[{"id": k, "caption": CAPTIONS[k], "png": figures.png_base64(f)} for k, f in _figures(result).items()])
    saved = {k: v for k, v in result.items() if not k.startswith("_")}
    atomic_write_json(out_dir / "comparison.json", saved)
    atomic_write_text(out_dir / "report.html", page)
    return [out_dir / "comparison.json", out_dir / "report.html"]
