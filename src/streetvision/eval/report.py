"""The evaluation report: metrics_summary.json, bootstrap_ci.json and one self-contained HTML file whose figures
are matplotlib PNGs embedded as data URIs (no network needed to view it)."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import precision_recall_curve, roc_curve  # noqa: E402

from streetvision.bundle.predictor import Predictor  # noqa: E402
from streetvision.eval.calibration import reliability  # noqa: E402
from streetvision.eval.evaluate import CONDITIONS, ConditionOutputs  # noqa: E402
from streetvision.eval.metrics import softmax_probs, validator_decisions  # noqa: E402
from streetvision.eval.score import validator_score  # noqa: E402
from streetvision.eval.selective import decided_confidence, risk_coverage_curve  # noqa: E402
from streetvision.eval.thresholds import sweep  # noqa: E402
from streetvision.io import atomic_write_csv, atomic_write_json, atomic_write_text  # noqa: E402

FIGURES = ("reliability", "roc_pr", "threshold_curves", "risk_coverage", "confusion", "reward_by_level",
           "confident_mistakes", "stream")  # "stream" when a stream ran; "learning_curves" when curves are given


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _reliability(out: ConditionOutputs, t: float) -> str:
    fig, axes = plt.subplots(1, 2, figsize=(9, 4), sharey=True)
    for ax, temp, title in ((axes[0], 1.0, "before calibration (T = 1)"), (axes[1], t, f"after (T = {t:.2f})")):
        bins = [b for b in reliability(out.labels, softmax_probs(out.logits, temp)) if b["count"]]
        ax.bar([b["lower"] for b in bins], [b["accuracy"] for b in bins], width=1 / 15, align="edge", alpha=0.7,
               edgecolor="k", label="accuracy")
        ax.plot([0, 1], [0, 1], "k--", label="perfect calibration")
        ax.scatter([b["confidence"] for b in bins], [b["accuracy"] for b in bins], c="C3", s=12, label="bin mean")
        ax.set(xlabel="top-label confidence", title=title, xlim=(0, 1), ylim=(0, 1))
    axes[0].set_ylabel("accuracy")
    axes[0].legend(loc="upper left", fontsize=8)
    return _png(fig)


def _roc_pr(y: np.ndarray, p: np.ndarray) -> str:
    fig, axes = plt.subplots(1, 2, figsize=(9, 4))
    if len(np.unique(y)) == 2:
        fpr, tpr, _ = roc_curve(y, p)
        axes[0].plot(fpr, tpr)
        prec, rec, _ = precision_recall_curve(y, p)
        axes[1].plot(rec, prec)
    axes[0].plot([0, 1], [0, 1], "k--")
    axes[0].set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (clean)")
    axes[1].set(xlabel="recall", ylabel="precision", title="precision-recall (clean)")
    return _png(fig)


def _threshold_curves(y: np.ndarray, p: np.ndarray, threshold: float) -> str:
    s = sweep(y, p, 1001)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(s.thresholds, s.mcc, label="MCC")
    ax.plot(s.thresholds, s.reward, label="validator reward")
    ax.axvline(threshold, color="k", ls="--", label=f"chosen threshold {threshold:.3f}")
    ax.set(xlabel="threshold on calibrated P(roadwork)", ylabel="value", title="MCC and reward vs threshold (clean)")
    ax.legend()
    return _png(fig)


def _risk_coverage(y: np.ndarray, p: np.ndarray, threshold: float, target: float | None) -> str:
    decisions, conf = decided_confidence(p, threshold)
    cov, risk, aurc = risk_coverage_curve(conf, decisions != y)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(cov, risk, label=f"AURC {aurc:.3f}")
    if target is not None:
        ax.axhline(target, color="C3", ls="--", label=f"target risk {target}")
    ax.set(xlabel="coverage", ylabel="selective risk", title="risk-coverage (clean)")
    ax.legend()
    return _png(fig)


def _confusion(summary: dict) -> str:
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.6))
    for ax, name in zip(axes, ("clean", "validator_mix")):
        m = summary[name]
        grid = np.array([[m["tn"], m["fp"]], [m["fn"], m["tp"]]])
        ax.imshow(grid, cmap="Blues")
        for (i, j), v in np.ndenumerate(grid):
            ax.text(j, i, str(v), ha="center", va="center", fontsize=12)
        ax.set(xticks=[0, 1], yticks=[0, 1], xticklabels=["no_roadwork", "roadwork"],
               yticklabels=["no_roadwork", "roadwork"], xlabel="predicted", ylabel="true", title=name)
    return _png(fig)


def _reward_by_level(summary: dict, intervals: dict) -> str:
    names = [c for c in CONDITIONS]
    est = [summary[c]["reward"] for c in names]
    lo = [est[i] - intervals[c]["reward"]["low"] for i, c in enumerate(names)]
    hi = [intervals[c]["reward"]["high"] - est[i] for i, c in enumerate(names)]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.bar(names, est, yerr=[lo, hi], capsize=4, color=["C0"] + ["C1"] * 4 + ["C2"])
    ax.set(ylabel="(0.5 MCC + 0.5 accuracy) ^ 3", title="validator reward by condition (95% bootstrap CI)")
    ax.tick_params(axis="x", rotation=30)
    return _png(fig)


def _stream(stream: dict) -> str:
    rewards = np.array([row["reward"] for row in stream["steps"]])
    s = stream["summary"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
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
    return _png(fig)


def _mistakes(out: ConditionOutputs, scores: np.ndarray, k: int = 12) -> str:
    wrong = np.flatnonzero(validator_decisions(scores) != out.labels)
    wrong = wrong[np.argsort(-np.abs(scores[wrong] - 0.5))][:k]
    cols = 6
    rows = max(1, int(np.ceil(len(wrong) / cols)))
    fig, axes = plt.subplots(rows, cols, figsize=(2 * cols, 2.2 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, i in zip(axes.ravel(), wrong):
        ax.imshow(out.images[i].resize((112, 112)))
        ax.set_title(f"true {'roadwork' if out.labels[i] else 'none'}\nscore {scores[i]:.2f}", fontsize=8)
    if not len(wrong):
        axes[0, 0].text(0, 0.5, "no mistakes", fontsize=12)
    return _png(fig)


def _learning_curves(curves: dict) -> str:
    """phase1's per-epoch losses and val_select MCC (training_curve.csv rows), and phase4's per-step loss."""
    rows, ssl = curves.get("phase1", []), curves.get("phase4", [])
    fig, axes = plt.subplots(1, 3 if ssl else 2, figsize=(13 if ssl else 9, 3.6))
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
    return _png(fig)


def _table(summary: dict, intervals: dict) -> str:
    keys = ("mcc", "accuracy", "reward", "fnr", "fpr", "auroc", "ece", "brier", "coverage", "selective_risk")
    head = "".join(f"<th>{k}</th>" for k in keys)
    body = []
    for name in CONDITIONS:
        cells = []
        for k in keys:
            v, ci = summary[name].get(k), intervals[name].get(k)
            cells.append("<td>-</td>" if v is None else
                         f"<td>{v:.3f}" + (f"<br><small>[{ci['low']:.3f}, {ci['high']:.3f}]</small>" if ci else "")
                         + "</td>")
        body.append(f"<tr><th>{html.escape(name)}</th>{''.join(cells)}</tr>")
    return f"<table><tr><th>condition</th>{head}</tr>{''.join(body)}</table>"


def _stream_table(stream: dict | None) -> str:
    if not stream:
        return ""
    s = stream["summary"]
    ci = s["mean_reward_ci"]
    cells = {"steps": s["steps"], "mean reward": f"{s['mean_reward']:.3f} [{ci['low']:.3f}, {ci['high']:.3f}]",
             "p5 / p50 / p95": f"{s['p5']:.3f} / {s['p50']:.3f} / {s['p95']:.3f}",
             "MCC / accuracy": f"{s['mcc']:.3f} / {s['accuracy']:.3f}", "interval": ci["method"]}
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in cells.items())
    return f"<h2>Simulated validator stream</h2><table>{rows}</table>"


def write_report(out_dir: Path, predictor: Predictor, outputs: dict[str, ConditionOutputs], summary: dict,
                 intervals: dict, meta: dict, stream: dict | None = None, curves: dict | None = None) -> list[Path]:
    """Write metrics_summary.json, bootstrap_ci.json, stream_steps.csv (when a stream ran) and report.html into
    ``out_dir``; return the paths. ``curves`` (the run's learning curves: ``phase1`` curve rows, ``phase4`` loss
    list) adds their plot."""
    policy = predictor.policy
    clean = outputs["clean"]
    p_clean = softmax_probs(clean.logits, policy.temperature)
    target = meta.get("target_risk")
    figures = {
        "reliability": _reliability(clean, policy.temperature),
        "roc_pr": _roc_pr(clean.labels, p_clean),
        "threshold_curves": _threshold_curves(clean.labels, p_clean, policy.decision_threshold),
        "risk_coverage": _risk_coverage(clean.labels, p_clean, policy.decision_threshold, target),
        "confusion": _confusion(summary),
        "reward_by_level": _reward_by_level(summary, intervals),
        "confident_mistakes": _mistakes(clean, validator_score(p_clean, policy.decision_threshold)),
    }
    if stream:
        figures["stream"] = _stream(stream)
    if curves and curves.get("phase1"):
        figures["learning_curves"] = _learning_curves(curves)
    captions = {
        "reliability": "Reliability diagram before and after temperature scaling",
        "roc_pr": "ROC and precision-recall curves", "threshold_curves": "MCC and reward against threshold",
        "risk_coverage": "Risk-coverage curve of the accept/defer policy", "confusion": "Confusion matrices",
        "reward_by_level": "Validator reward per challenge level", "confident_mistakes": "Most confident mistakes",
        "stream": "Simulated validator stream: labels 50/50 (deploy prior), levels as published, reward "
                  "(0.5 MCC(last 100) + 0.5 accuracy(last 10))^3 per challenge",
        "learning_curves": "Learning curves of this run's training phases",
    }
    sections = "".join(f'<figure id="{k}"><img alt="{k}" src="data:image/png;base64,{v}"><figcaption>'
                       f"{captions[k]}</figcaption></figure>" for k, v in figures.items())
    facts = "".join(f"<li><b>{html.escape(str(k))}</b>: {html.escape(str(v))}</li>" for k, v in meta.items())
    page = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>StreetVision evaluation</title><style>"
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse;font-size:13px}"
        "td,th{border:1px solid #ccc;padding:4px 6px;text-align:right}figure{margin:1.5em 0}img{max-width:100%}"
        "</style></head><body><h1>StreetVision evaluation</h1><ul>" + facts + "</ul><h2>Metrics (95% bootstrap "
        "intervals)</h2>" + _table(summary, intervals) + _stream_table(stream) + "<h2>Figures</h2>" + sections + "</body></html>")
    out_dir.mkdir(parents=True, exist_ok=True)
    conditions = {name: summary[name] for name in CONDITIONS}
    atomic_write_json(out_dir / "metrics_summary.json",
                      {"meta": meta, "conditions": conditions, "stream": stream["summary"] if stream else None})
    atomic_write_json(out_dir / "bootstrap_ci.json", intervals)
    paths = [out_dir / "metrics_summary.json", out_dir / "bootstrap_ci.json"]
    if stream:
        paths.append(out_dir / "stream_steps.csv")
        atomic_write_csv(paths[-1], list(stream["steps"][0]), [list(r.values()) for r in stream["steps"]])
    atomic_write_text(out_dir / "report.html", page)
    return [*paths, out_dir / "report.html"]
