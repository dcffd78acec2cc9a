"""The report's figures, each a function of the per-image predictions (:mod:`streetvision.eval.predictions`) and
the evaluation's facts (class names, policy), returning a matplotlib Figure (no pyplot state, so tests can inspect
the artists and the report embeds them as PNG)."""

from __future__ import annotations

import base64
import io

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_curve

from streetvision.metrics.calibration import N_BINS, calibration_metrics, reliability
from streetvision.metrics.classification import auroc, metrics_from_decisions
from streetvision.eval.predictions import ConditionPredictions
from streetvision.metrics.selective import risk_coverage_curve
from streetvision.metrics.thresholds import sweep

OPERATING_POINT = dict(marker="o", ms=8, mec="k", mew=1.2, ls="none")
SPARSE_BIN = 10  # reliability bins with fewer images are drawn pale: their accuracy is noise


def png_base64(fig: Figure, dpi: int = 90) -> str:
    """The figure as a base64 PNG (deterministic for the same data and library versions)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return base64.b64encode(buf.getvalue()).decode()


def color(i: int) -> str:
    """The i-th colour of the cycle (a condition keeps its colour across figures)."""
    return f"C{i}"


def has_both_classes(pred: ConditionPredictions) -> bool:
    """ROC and PR need both classes."""
    return len(np.unique(pred.labels)) == 2


def _reliability_panel(ax, hist_ax, labels: np.ndarray, probs: np.ndarray, title: str) -> None:
    bins = reliability(labels, probs)
    ece = calibration_metrics(labels, probs)["ece"]
    width = 1.0 / N_BINS
    full = [b for b in bins if b["count"]]
    for b in full:
        sparse = b["count"] < SPARSE_BIN
        ax.bar(b["lower"], b["accuracy"], width=width, align="edge", color="C0", alpha=0.3 if sparse else 0.75,
               edgecolor="k", hatch="//" if sparse else None)
        ax.text(b["lower"] + width / 2, min(b["accuracy"], 1.0) + 0.015, f"{b['count']}", ha="center",
                va="bottom", fontsize=7)
    ax.plot([0, 1], [0, 1], "k--", lw=1)
    ax.plot([b["confidence"] for b in full], [b["accuracy"] for b in full], "o", color="C3", ms=4)
    ax.set(title=f"{title}\nECE {ece:.4f}", ylim=(0, 1.12), xlim=(0.45, 1.0))
    hist_ax.bar([b["lower"] for b in bins], [b["count"] for b in bins], width=width, align="edge", color="C7",
                edgecolor="k")
    hist_ax.set(xlabel="top-label confidence", xlim=(0.45, 1.0))


def reliability_figure(pred: ConditionPredictions, temperature: float) -> Figure:
    """Reliability before and after temperature scaling (clean images): per-bin accuracy with the bin's image
    count above each bar (pale, hatched bars hold < SPARSE_BIN images), and the histogram of confidences."""
    fig = Figure(figsize=(10, 6.4), layout="constrained")
    axes = fig.subplots(2, 2, sharex="col", gridspec_kw={"height_ratios": [3, 1.2]})
    _reliability_panel(axes[0, 0], axes[1, 0], pred.labels, pred.probability_uncalibrated,
                       "before calibration (T = 1)")
    _reliability_panel(axes[0, 1], axes[1, 1], pred.labels, pred.probability,
                       f"after temperature scaling (T = {temperature:.3f})")
    axes[0, 0].set_ylabel("accuracy of the bin")
    axes[1, 0].set_ylabel("images")
    handles = [Line2D([], [], color="k", ls="--", label="perfect calibration"),
               Line2D([], [], color="C3", marker="o", ls="none", label="bin mean confidence"),
               Line2D([], [], color="C0", lw=8, alpha=0.3, label=f"bin with < {SPARSE_BIN} images")]
    axes[0, 0].legend(handles=handles, loc="lower right", fontsize=8)
    return fig


def reliability_by_condition_figure(predictions: dict[str, ConditionPredictions]) -> Figure:
    """Reliability of the calibrated probability in every condition, bin counts above the bars."""
    names = list(predictions)
    cols = 3
    rows = -(-len(names) // cols)
    fig = Figure(figsize=(12, 4.2 * rows), layout="constrained")
    grid = fig.subfigures(rows, cols, squeeze=False)
    for k, name in enumerate(names):
        ax, hist_ax = grid[k // cols, k % cols].subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
        _reliability_panel(ax, hist_ax, predictions[name].labels, predictions[name].probability, name)
        if k % cols == 0:
            ax.set_ylabel("accuracy")
            hist_ax.set_ylabel("images")
    for k in range(len(names), rows * cols):
        grid[k // cols, k % cols].set_visible(False)
    return fig


def operating_point(pred: ConditionPredictions) -> dict:
    """The validator's reading of the scores as a point: FPR, TPR (recall), precision."""
    m = metrics_from_decisions(pred.labels, pred.decision)
    return {"fpr": m["fpr"], "tpr": m["recall"], "precision": m["precision"]}


def roc_pr_figure(predictions: dict[str, ConditionPredictions], positive_class: str) -> Figure:
    """ROC and precision-recall curves of the calibrated probability per condition, AUC / AP in the legend and
    the operating point (the decision the validator reads) marked on each curve."""
    fig = Figure(figsize=(12, 5), layout="constrained")
    roc_ax, pr_ax = fig.subplots(1, 2)
    for i, (name, pred) in enumerate(predictions.items()):
        if not has_both_classes(pred):
            continue
        fpr, tpr, _ = roc_curve(pred.labels, pred.probability)
        roc_ax.plot(fpr, tpr, color=color(i), lw=1.5, label=f"{name}  AUC {auroc(pred.labels, pred.probability):.3f}")
        precision, recall, _ = precision_recall_curve(pred.labels, pred.probability)
        ap = average_precision_score(pred.labels, pred.probability)
        pr_ax.plot(recall, precision, color=color(i), lw=1.5, label=f"{name}  AP {ap:.3f}")
        op = operating_point(pred)
        roc_ax.plot(op["fpr"], op["tpr"], color=color(i), **OPERATING_POINT)
        pr_ax.plot(op["tpr"], op["precision"], color=color(i), **OPERATING_POINT)
    roc_ax.plot([0, 1], [0, 1], "k:", lw=1)
    marker = Line2D([], [], color="w", **OPERATING_POINT, label="operating point")
    for ax in (roc_ax, pr_ax):
        handles, _ = ax.get_legend_handles_labels()
        ax.legend(handles=[*handles, marker], fontsize=8, loc="lower right" if ax is roc_ax else "lower left")
    roc_ax.set(xlabel="false positive rate", ylabel="true positive rate", title=f"ROC ({positive_class} positive)",
               xlim=(-0.01, 1.01), ylim=(-0.01, 1.01))
    pr_ax.set(xlabel=f"recall ({positive_class})", ylabel="precision", title="precision-recall",
              xlim=(-0.01, 1.01), ylim=(-0.01, 1.01))
    return fig


def threshold_figure(predictions: dict[str, ConditionPredictions], threshold: float,
                     conditions: tuple[str, ...] = ("clean", "validator_mix")) -> Figure:
    """MCC and the validator reward against the threshold on the calibrated probability; the chosen threshold and
    the operating point (the metrics at the decisions actually taken) marked."""
    shown = [c for c in conditions if c in predictions]
    fig = Figure(figsize=(6 * len(shown), 4.2), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(shown), sharey=True))
    for ax, name in zip(axes, shown):
        pred = predictions[name]
        s = sweep(pred.labels, pred.probability, 1001)
        m = metrics_from_decisions(pred.labels, pred.decision)
        ax.plot(s.thresholds, s.mcc, color="C0", label="MCC")
        ax.plot(s.thresholds, s.reward, color="C1", label="reward (0.5 MCC + 0.5 acc)^3")
        ax.axvline(threshold, color="k", ls="--", lw=1, label=f"chosen threshold {threshold:.3f}")
        ax.plot(threshold, m["mcc"], color="C0", **OPERATING_POINT)
        ax.plot(threshold, m["reward"], color="C1", **OPERATING_POINT, label="operating point")
        ax.set(xlabel="threshold on calibrated P(roadwork)", title=name, xlim=(0, 1))
        ax.legend(fontsize=8, loc="best")
    axes[0].set_ylabel("value")
    return fig


def risk_coverage_figure(predictions: dict[str, ConditionPredictions], target_risk: float | None) -> Figure:
    """Selective risk when accepting the k most confident images, per condition; the accept/defer policy's
    operating point (its coverage and risk) marked, and its target risk."""
    fig = Figure(figsize=(8, 4.8), layout="constrained")
    ax = fig.subplots()
    for i, (name, pred) in enumerate(predictions.items()):
        if not len(pred):
            continue
        coverage, risk, aurc = risk_coverage_curve(pred.confidence(), ~pred.correct)
        ax.plot(coverage, risk, color=color(i), lw=1.5, label=f"{name}  AURC {aurc:.3f}")
        if pred.accepted is not None:
            k = int(pred.accepted.sum())
            op_risk = float((~pred.correct[pred.accepted]).mean()) if k else 0.0
            ax.plot(k / len(pred), op_risk, color=color(i), **OPERATING_POINT)
    if target_risk is not None:
        ax.axhline(target_risk, color="C3", ls="--", lw=1, label=f"target risk {target_risk:g}")
    if any(p.accepted is not None for p in predictions.values()):
        ax.plot([], [], color="w", **OPERATING_POINT, label="operating point (accept/defer policy)")
    ax.set(xlabel="coverage (share of images accepted)", ylabel="selective risk (error rate among accepted)",
           xlim=(0, 1.01), title="risk-coverage")
    ax.legend(fontsize=8, loc="upper left")
    return fig


def confusion_counts(pred: ConditionPredictions) -> np.ndarray:
    """[[tn, fp], [fn, tp]] of the validator's reading."""
    m = metrics_from_decisions(pred.labels, pred.decision)
    return np.array([[m["tn"], m["fp"]], [m["fn"], m["tp"]]])


def confusion_figure(predictions: dict[str, ConditionPredictions], class_names: list[str]) -> Figure:
    """Raw counts (top row) and rates normalised per true class (bottom row) for every condition."""
    names = list(predictions)
    fig = Figure(figsize=(2.6 * len(names) + 1.5, 6.4), layout="constrained")
    axes = fig.subplots(2, len(names), squeeze=False)
    for j, name in enumerate(names):
        counts = confusion_counts(predictions[name])
        totals = counts.sum(axis=1, keepdims=True)
        rates = np.divide(counts, totals, out=np.zeros((2, 2)), where=totals > 0)
        for row, (grid, fmt, vmax) in enumerate(((counts, "{:d}", max(int(counts.max()), 1)), (rates, "{:.0%}", 1))):
            ax = axes[row, j]
            ax.imshow(grid, cmap="Blues", vmin=0, vmax=vmax)
            for (r, c), v in np.ndenumerate(grid):
                ax.text(c, r, fmt.format(int(v) if row == 0 else v), ha="center", va="center", fontsize=11,
                        color="white" if v > 0.6 * vmax else "black")
            ax.set_xticks([0, 1], class_names, fontsize=8)
            ax.set_yticks([0, 1], class_names, fontsize=8, rotation=90, va="center")
            ax.tick_params(labelleft=j == 0)
            ax.set_xlabel("predicted", fontsize=9)
            if j == 0:
                ax.set_ylabel("true (counts)" if row == 0 else "true (share of row)", fontsize=9)
            if row == 0:
                ax.set_title(name, fontsize=10)
    return fig


def reward_by_condition_figure(summary: dict, intervals: dict, conditions: tuple[str, ...]) -> Figure:
    """The validator reward per condition at the data's prior and at the deployment prior, with intervals."""
    fig = Figure(figsize=(9, 4.4), layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(conditions))
    for offset, key, label in ((-0.2, "reward", "at the data's class prior"),
                               (0.2, "reward_deploy", "at the deployment prior")):
        est = np.array([summary[c][key] for c in conditions])
        low = np.array([intervals[c][key]["low"] for c in conditions])
        high = np.array([intervals[c][key]["high"] for c in conditions])
        ax.bar(x + offset, est, width=0.4, yerr=[est - low, high - est], capsize=3, label=label)
    ax.set_xticks(x, conditions, rotation=20)
    ax.set(ylabel="(0.5 MCC + 0.5 accuracy)^3", ylim=(0, 1.05), title="validator reward by condition (95% intervals)")
    ax.legend(fontsize=8, loc="lower left")
    return fig


def stream_figure(stream: dict) -> Figure:
    """Per-step reward distribution of the simulated validator stream and its running mean."""
    rewards = np.array([float(row["reward"]) for row in stream["steps"]])
    s = stream["summary"]
    fig = Figure(figsize=(11, 4), layout="constrained")
    axes = fig.subplots(1, 2)
    axes[0].hist(rewards, bins=40, color="C0")
    for q, style in (("p5", ":"), ("p50", "--"), ("p95", ":")):
        axes[0].axvline(s[q], color="k", linestyle=style, label=f"{q} {s[q]:.3f}")
    axes[0].set(xlabel="reward of one challenge", ylabel="challenges", title="per-step reward")
    axes[0].legend(fontsize=8)
    steps = np.arange(1, len(rewards) + 1)
    axes[1].plot(steps, rewards, ".", ms=2, alpha=0.4, label="per step")
    axes[1].plot(steps, np.cumsum(rewards) / steps, "C3", label="running mean")
    axes[1].set(xlabel="challenge", ylabel="reward", ylim=(0, 1), title=f"stream of {len(rewards)} challenges")
    axes[1].legend(fontsize=8)
    return fig


def learning_curves_figure(curves: dict) -> Figure:
    """phase1's per-epoch losses and val_select MCC (training_curve.csv rows), and phase4's per-step loss."""
    rows, ssl = curves.get("phase1", []), curves.get("phase4", [])
    fig = Figure(figsize=(13 if ssl else 9, 3.8), layout="constrained")
    axes = fig.subplots(1, 3 if ssl else 2)
    epochs = [int(r["epoch"]) for r in rows]
    for key in ("train_loss", "val_loss"):
        axes[0].plot(epochs, [float(r[key]) for r in rows], marker="o", label=key)
    axes[0].set(xlabel="epoch", ylabel="loss", title="phase1 loss")
    axes[0].legend()
    axes[1].plot(epochs, [float(r["val_mcc"]) for r in rows], marker="o", color="tab:green")
    axes[1].set(xlabel="epoch", ylabel="MCC", title="phase1 val_select MCC")
    if ssl:
        axes[2].plot(range(1, len(ssl) + 1), ssl, color="tab:purple")
        axes[2].set(xlabel="step", ylabel="loss", title="phase4 self-supervised loss")
    return fig


# ------------------------------------------------------------------------------------------ comparison
def reward_comparison_figure(result: dict, conditions: list[str], key: str = "reward_deploy") -> Figure:
    """Each model's reward per condition (deployment prior) with its interval."""
    fig = Figure(figsize=(9, 4.4), layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(conditions))
    for offset, model in ((-0.2, "a"), (0.2, "b")):
        est = np.array([result[model]["summary"][c][key] for c in conditions])
        low = np.array([result[model]["intervals"][c][key]["low"] for c in conditions])
        high = np.array([result[model]["intervals"][c][key]["high"] for c in conditions])
        ax.bar(x + offset, est, width=0.4, yerr=[est - low, high - est], capsize=3, label=model.upper(),
               color="C0" if model == "a" else "C1")
    ax.set_xticks(x, conditions, rotation=20)
    ax.set(ylabel="(0.5 MCC + 0.5 accuracy)^3", ylim=(0, 1.05), title="reward at the deployment prior")
    ax.legend(fontsize=9, loc="lower left")
    return fig


def paired_differences_figure(result: dict, conditions: list[str], metrics: tuple[str, ...]) -> Figure:
    """Forest plot of B - A per condition and metric with the paired intervals."""
    fig = Figure(figsize=(3.2 * len(metrics) + 1, 0.5 * len(conditions) + 1.8), layout="constrained")
    axes = fig.subplots(1, len(metrics), sharey=True)
    y = np.arange(len(conditions))[::-1]
    for ax, key in zip(np.atleast_1d(axes), metrics):
        diffs = [result["conditions"][c]["differences"][key] for c in conditions]
        est = np.array([d["estimate"] for d in diffs])
        low, high = np.array([d["low"] for d in diffs]), np.array([d["high"] for d in diffs])
        colors = ["C2" if lo > 0 else "C3" if hi < 0 else "C7" for lo, hi in zip(low, high)]
        ax.hlines(y, low, high, colors=colors, lw=2)
        ax.scatter(est, y, c=colors, zorder=3, edgecolors="k")
        ax.axvline(0, color="k", ls="--", lw=1)
        ax.set(title=f"B - A: {key}", xlabel="difference")
    np.atleast_1d(axes)[0].set_yticks(y, conditions)
    return fig


def roc_comparison_figure(pred_a: dict[str, ConditionPredictions], pred_b: dict[str, ConditionPredictions],
                          conditions: list[str]) -> Figure:
    """ROC of A (solid) and B (dashed) per condition, AUC in the legend, operating points marked."""
    cols = 3
    rows = -(-len(conditions) // cols)
    fig = Figure(figsize=(12, 3.9 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for k, name in enumerate(conditions):
        ax = axes[k // cols, k % cols]
        for model, preds, style in (("A", pred_a, "-"), ("B", pred_b, "--")):
            pred = preds[name]
            if not has_both_classes(pred):
                continue
            fpr, tpr, _ = roc_curve(pred.labels, pred.probability)
            c = "C0" if model == "A" else "C1"
            ax.plot(fpr, tpr, style, color=c, label=f"{model}  AUC {auroc(pred.labels, pred.probability):.3f}")
            op = operating_point(pred)
            ax.plot(op["fpr"], op["tpr"], color=c, **OPERATING_POINT)
        ax.plot([0, 1], [0, 1], "k:", lw=1)
        ax.set(title=name, xlim=(-0.01, 1.01), ylim=(-0.01, 1.01), xlabel="false positive rate")
        if k % cols == 0:
            ax.set_ylabel("true positive rate")
        ax.legend(fontsize=8, loc="lower right")
    for k in range(len(conditions), rows * cols):
        axes[k // cols, k % cols].set_visible(False)
    return fig
