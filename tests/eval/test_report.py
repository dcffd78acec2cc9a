"""predictions.csv is the evidence: every table and figure of the report is present and computed from it."""

import csv
import json
import re
import shutil

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    brier_score_loss,
    matthews_corrcoef,
    precision_score,
    recall_score,
    roc_auc_score,
)

from streetvision.bundle.schema import load_index
from streetvision.eval import figures
from streetvision.eval.evaluate import CONDITIONS
from streetvision.eval.predictions import COLUMNS, read_predictions
from streetvision.eval.report import FIGURES, GALLERY, build_figures, report_from_dir
from streetvision.metrics.score import validator_score
from tests.eval.conftest import EVAL_IMAGES


def read_rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def eval_dir(evaluated):
    return evaluated[3][-1].parent


@pytest.fixture(scope="module")
def meta(eval_dir):
    return json.loads((eval_dir / "metrics_summary.json").read_text())["meta"]


def figure_png(page: str, fig_id: str) -> str:
    match = re.search(rf'<figure id="{fig_id}"><img alt="{fig_id}" src="data:image/png;base64,([A-Za-z0-9+/=]+)"',
                      page)
    assert match, f"figure {fig_id} missing"
    return match.group(1)


def section(page: str, section_id: str) -> str:
    match = re.search(rf'<section id="{section_id}">(.*?)</section>', page, re.S)
    assert match, f"section {section_id} missing"
    return match.group(1)


def metrics_tables(page: str) -> str:
    return page[page.index('<h2 id="metrics">'):page.index('<h2 id="stream-section">')]


def evidence_only(eval_dir, target):
    """A directory holding only the files the report is built from (no report.html, no bootstrap_ci.json)."""
    target.mkdir()
    for name in ("predictions.csv", "metrics_summary.json", "stream_steps.csv"):
        shutil.copy2(eval_dir / name, target / name)
    return target


@pytest.fixture(scope="module")
def rebuilt(eval_dir, tmp_path_factory):
    """The page re-rendered from the evidence files alone."""
    return report_from_dir(evidence_only(eval_dir, tmp_path_factory.mktemp("rebuilt") / "eval"))


@pytest.fixture(scope="module")
def tampered(eval_dir, tmp_path_factory):
    """The page re-rendered after flipping image 0's label in predictions.csv (every condition)."""
    target = evidence_only(eval_dir, tmp_path_factory.mktemp("tampered") / "eval")
    rows = read_rows(target / "predictions.csv")
    for row in rows:
        if row["image_index"] == "0":
            row["label"] = str(1 - int(row["label"]))
            row["correct"] = str(int(row["label"] == row["decision"]))
    with open(target / "predictions.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(COLUMNS))
        writer.writeheader()
        writer.writerows(rows)
    return report_from_dir(target)


def test_predictions_csv_has_one_row_per_image_and_condition_with_its_challenge(eval_dir, meta):
    rows = read_rows(eval_dir / "predictions.csv")
    assert list(rows[0]) == list(COLUMNS)
    assert len(rows) == len(CONDITIONS) * EVAL_IMAGES
    by_condition = {c: [r for r in rows if r["condition"] == c] for c in CONDITIONS}
    for name, part in by_condition.items():
        assert [int(r["image_index"]) for r in part] == list(range(EVAL_IMAGES)), name
        for r in part:
            distortion = json.loads(r["distortion"])
            if name == "clean":
                assert r["level"] == "" and distortion == {}
            else:
                assert int(r["level"]) == distortion["level"] and distortion["wire"] == "jpeg_q75"
                if name != "validator_mix":
                    assert int(r["level"]) == int(name[-1])
                if int(r["level"]) > 0:
                    assert {"rotation_deg", "crop"} <= set(distortion)
            p, p1 = float(r["probability"]), float(r["probability_uncalibrated"])
            gap = np.log(p1) - np.log1p(-p1)  # the logit gap at T = 1, rescaled by the temperature
            assert p == pytest.approx(1 / (1 + np.exp(-gap / meta["temperature"])), abs=1e-9)
            assert float(r["score"]) == pytest.approx(float(validator_score(p, meta["decision_threshold"])), abs=1e-12)
            assert int(r["decision"]) == int(float(r["score"]) > 0.5)
            assert int(r["correct"]) == int(r["decision"] == r["label"])
            confidence = p if r["decision"] == "1" else 1 - p
            lam = meta["selective_threshold"]
            assert r["accepted"] == str(int(lam is not None and confidence >= lam))
    for r_mix in by_condition["validator_mix"]:  # the mix is the level-k row of the same image
        same = by_condition[f"level{r_mix['level']}"][int(r_mix["image_index"])]
        assert (r_mix["probability"], r_mix["distortion"]) == (same["probability"], same["distortion"])
    assert {r["sample_id"].split("/")[0] for r in rows} == {"roadwork", "no_roadwork"}  # relative to data_root


def test_summary_metrics_are_recomputed_from_predictions_csv(eval_dir, meta):
    saved = json.loads((eval_dir / "metrics_summary.json").read_text())["conditions"]
    rows = read_rows(eval_dir / "predictions.csv")
    prior = meta["deploy_prior_roadwork"]
    for name in CONDITIONS:
        part = [r for r in rows if r["condition"] == name]
        y = np.array([int(r["label"]) for r in part])
        d = np.array([int(r["decision"]) for r in part])
        p = np.array([float(r["probability"]) for r in part])
        s = saved[name]
        assert s["mcc"] == pytest.approx(matthews_corrcoef(y, d), abs=1e-12)
        assert s["accuracy"] == pytest.approx(accuracy_score(y, d), abs=1e-12)
        assert s["precision"] == pytest.approx(precision_score(y, d, zero_division=0), abs=1e-12)
        assert s["recall"] == pytest.approx(recall_score(y, d, zero_division=0), abs=1e-12)
        assert s["reward"] == pytest.approx((0.5 * max(s["mcc"], 0) + 0.5 * s["accuracy"]) ** 3, abs=1e-12)
        assert s["auroc"] == pytest.approx(roc_auc_score(y, p), abs=1e-12)
        assert s["brier"] == pytest.approx(brier_score_loss(y, p), abs=1e-12)
        w = np.where(y == 1, prior / y.mean(), (1 - prior) / (1 - y.mean()))
        mcc_w, acc_w = matthews_corrcoef(y, d, sample_weight=w), accuracy_score(y, d, sample_weight=w)
        assert s["mcc_deploy"] == pytest.approx(mcc_w, abs=1e-9)
        assert s["reward_deploy"] == pytest.approx((0.5 * max(mcc_w, 0) + 0.5 * acc_w) ** 3, abs=1e-9)
        conf = np.where(p > 0.5, p, 1 - p)  # ECE: 15 equal bins of the top-label confidence
        correct = (p > 0.5).astype(int) == y
        bins = np.minimum((conf * 15).astype(int), 14)
        ece = sum(abs(correct[bins == b].mean() - conf[bins == b].mean()) * (bins == b).sum()
                  for b in range(15) if (bins == b).any()) / len(y)
        assert s["ece"] == pytest.approx(ece, abs=1e-9)
        accepted = np.array([r["accepted"] == "1" for r in part])
        assert s["coverage"] == pytest.approx(accepted.mean())
        assert s["selective_risk"] == pytest.approx((y != d)[accepted].mean() if accepted.any() else 0.0)


def test_every_interval_records_its_method_and_the_table_marks_percentile_ones(evaluated):
    _, _, intervals, paths = evaluated
    page = paths[-1].read_text()
    ci = json.loads((paths[-1].parent / "bootstrap_ci.json").read_text())
    assert ci == json.loads(json.dumps(intervals))
    for name in CONDITIONS:
        assert len(ci[name]) == 15
        for key, row in ci[name].items():
            assert row["method"] in ("BCa", "percentile") and row["low"] <= row["high"], (name, key)
            if row["method"] == "percentile":
                assert f"{name} {key}: percentile interval, BCa undefined ({row['reason']})" in page


def test_the_whole_page_is_rebuilt_identically_from_the_evidence_files(eval_dir, rebuilt):
    assert rebuilt == (eval_dir / "report.html").read_text()


@pytest.mark.parametrize("fig_id", [f for f in FIGURES if f != "stream"])
def test_each_figure_is_present_and_built_from_predictions_csv(fig_id, eval_dir, rebuilt, tampered):
    original = (eval_dir / "report.html").read_text()
    assert figure_png(original, fig_id) == figure_png(rebuilt, fig_id)
    assert figure_png(tampered, fig_id) != figure_png(original, fig_id)  # one label changed in the CSV


def test_the_stream_figure_is_built_from_stream_steps_csv(eval_dir, rebuilt, tampered):
    original = (eval_dir / "report.html").read_text()
    assert figure_png(original, "stream") == figure_png(rebuilt, "stream") == figure_png(tampered, "stream")


def test_the_metric_tables_and_the_gallery_are_built_from_predictions_csv(eval_dir, rebuilt, tampered):
    original = (eval_dir / "report.html").read_text()
    assert metrics_tables(rebuilt) == metrics_tables(original) != metrics_tables(tampered)
    assert section(rebuilt, GALLERY) == section(original, GALLERY) != section(tampered, GALLERY)


def test_gallery_shows_the_most_confident_false_positives_and_negatives_per_condition(eval_dir, meta):
    page = (eval_dir / "report.html").read_text()
    gallery = section(page, GALLERY)
    rows = read_rows(eval_dir / "predictions.csv")
    blocks = re.split(r"<h3>(\w+)</h3>", gallery)[1:]
    assert [blocks[i] for i in range(0, len(blocks), 2)] == list(CONDITIONS)
    for name, html in zip(blocks[0::2], blocks[1::2]):
        part = [r for r in rows if r["condition"] == name]
        fp = sorted((r for r in part if r["label"] == "0" and r["decision"] == "1"), key=lambda r: -float(r["score"]))
        fn = sorted((r for r in part if r["label"] == "1" and r["decision"] == "0"), key=lambda r: float(r["score"]))
        fp_html, fn_html = html.split("false negatives")
        assert f"false positives (true {meta['class_names'][0]}): {len(fp)}" in fp_html
        assert f"(true {meta['class_names'][1]}): {len(fn)}" in fn_html
        for kind_html, expected in ((fp_html, fp), (fn_html, fn)):
            shown = re.findall(r'<figcaption title="([^"]+)">([^<]+)<br>score ([0-9.]+)</figcaption>', kind_html)
            assert shown == [(r["sample_id"], r["sample_id"].split("/")[-1], f"{float(r['score']):.3f}")
                             for r in expected[:6]]
            assert len(re.findall(r'<img alt="[^"]+" src="data:image/jpeg;base64,', kind_html)) == len(shown)


def test_roc_and_pr_carry_auc_and_ap_from_the_csv_and_mark_the_operating_point(eval_dir):
    predictions = read_predictions(eval_dir / "predictions.csv")
    fig = figures.roc_pr_figure(predictions, "roadwork")
    roc_ax, pr_ax = fig.axes
    roc_labels = [t.get_text() for t in roc_ax.get_legend().get_texts()]
    pr_labels = [t.get_text() for t in pr_ax.get_legend().get_texts()]
    def shown(labels, prefix):  # the legend's 3-decimal value (a tie at the rounding boundary may go either way)
        return float(next(t for t in labels if t.startswith(prefix))[len(prefix):])

    for name, pred in predictions.items():
        assert shown(roc_labels, f"{name}  AUC ") == pytest.approx(roc_auc_score(pred.labels, pred.probability),
                                                                  abs=5e-4 + 1e-9)
        assert shown(pr_labels, f"{name}  AP ") == pytest.approx(average_precision_score(pred.labels, pred.probability),
                                                                abs=5e-4 + 1e-9)
        fp = ((pred.labels == 0) & (pred.decision == 1)).sum() / (pred.labels == 0).sum()
        tp = ((pred.labels == 1) & (pred.decision == 1)).sum() / (pred.labels == 1).sum()
        points = [tuple(np.ravel(line.get_data())) for line in roc_ax.lines if line.get_marker() == "o"]
        assert any(np.allclose(pt, (fp, tp)) for pt in points), name
    assert "operating point" in roc_labels


def test_threshold_and_risk_coverage_plots_mark_the_operating_point(eval_dir, meta):
    predictions = read_predictions(eval_dir / "predictions.csv")
    threshold_fig = figures.threshold_figure(predictions, meta["decision_threshold"])
    for ax in threshold_fig.axes:
        xs = [line.get_xdata()[0] for line in ax.lines if line.get_marker() == "o"]
        assert xs and all(x == pytest.approx(meta["decision_threshold"]) for x in xs)
        assert any(f"chosen threshold {meta['decision_threshold']:.3f}" == t.get_text()
                   for t in ax.get_legend().get_texts())
    rc_ax = figures.risk_coverage_figure(predictions, meta["target_risk"]).axes[0]
    points = [tuple(np.ravel(line.get_data())) for line in rc_ax.lines if line.get_marker() == "o"]
    for pred in predictions.values():
        coverage = pred.accepted.mean()
        risk = (~pred.correct[pred.accepted]).mean() if pred.accepted.any() else 0.0
        assert any(np.allclose(pt, (coverage, risk)) for pt in points)


def test_reliability_bars_are_labelled_with_their_image_counts(eval_dir, meta):
    predictions = read_predictions(eval_dir / "predictions.csv")
    fig = figures.reliability_figure(predictions["clean"], meta["temperature"])
    top_panels = [ax for ax in fig.axes if ax.get_title()]
    assert len(top_panels) == 2
    for ax in top_panels:
        assert sum(int(t.get_text()) for t in ax.texts) == EVAL_IMAGES
    histograms = [ax for ax in fig.axes if ax.get_xlabel() == "top-label confidence"]
    assert [sum(p.get_height() for p in ax.patches) for ax in histograms] == [EVAL_IMAGES, EVAL_IMAGES]


def test_confusion_matrices_are_raw_and_normalised_with_the_bundles_class_names(eval_dir, meta, micro_bundle):
    assert meta["class_names"] == load_index(micro_bundle)["class_names"]
    predictions = read_predictions(eval_dir / "predictions.csv")
    names = ["calm_street", "works_ahead"]  # names come from the caller (the bundle), never hard-coded
    fig = figures.confusion_figure(predictions, names)
    raw, normalised = fig.axes[:len(CONDITIONS)], fig.axes[len(CONDITIONS):]
    for ax_raw, ax_norm, (name, pred) in zip(raw, normalised, predictions.items()):
        tn = int(((pred.labels == 0) & (pred.decision == 0)).sum())
        fp = int(((pred.labels == 0) & (pred.decision == 1)).sum())
        assert [t.get_text() for t in ax_raw.texts][:2] == [str(tn), str(fp)]
        assert [t.get_text() for t in ax_norm.texts][:2] == [f"{tn / (tn + fp):.0%}", f"{fp / (tn + fp):.0%}"]
        assert [t.get_text() for t in ax_raw.get_xticklabels()] == names
        assert ax_raw.get_title() == name


def drawn_ticklabels(axis, limits):
    low, high = sorted(limits)
    span = (high - low) * 1e-9
    return [t for loc, t in zip(axis.get_ticklocs(), axis.get_ticklabels()) if low - span <= loc <= high + span]


def overlapping_labels(fig) -> list[tuple[str, str]]:
    """Pairs of drawn titles, axis labels and tick labels whose boxes overlap each other or another axes' area."""
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    labels, areas = [], []
    for k, ax in enumerate(fig.axes):
        if not ax.get_visible():
            continue
        areas.append((k, ax.get_window_extent(renderer)))
        candidates = [ax.title, ax.xaxis.label, ax.yaxis.label, *drawn_ticklabels(ax.xaxis, ax.get_xlim()),
                      *drawn_ticklabels(ax.yaxis, ax.get_ylim())]
        labels += [(k, t.get_text(), t.get_window_extent(renderer).expanded(0.98, 0.98))
                   for t in candidates if t.get_visible() and t.get_text()]
    pairs = [(a, b) for i, (_, a, box_a) in enumerate(labels) for _, b, box_b in labels[i + 1:]
             if box_a.overlaps(box_b)]
    pairs += [(a, f"axes {j}") for k, a, box in labels for j, area in areas if j != k and box.overlaps(area)]
    return pairs


def test_no_figure_has_overlapping_labels(evaluated, eval_dir, meta):
    _, summary, intervals, _ = evaluated
    predictions = read_predictions(eval_dir / "predictions.csv")
    built = build_figures(predictions, summary, intervals, meta)
    built["confusion_long_names"] = figures.confusion_figure(predictions, ["no_roadwork_at_all", "roadwork_ahead"])
    for fig_id, fig in built.items():
        overlaps = overlapping_labels(fig)
        assert not overlaps, f"{fig_id}: {overlaps[:5]}"


def test_the_overlap_check_catches_the_old_confusion_layout():
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 3.6))
    for ax in fig.subplots(1, 2):  # y tick labels on both panels run into the neighbouring matrix
        ax.imshow(np.eye(2))
        ax.set(xticks=[0, 1], yticks=[0, 1], xticklabels=["no_roadwork", "roadwork"],
               yticklabels=["no_roadwork", "roadwork"], xlabel="predicted", ylabel="true")
    assert overlapping_labels(fig)
