"""streetvision compare: two micro bundles on the same images, paired differences B - A, refusals."""

import csv
import json
import re
import shutil

import numpy as np
import pytest
from scipy import stats

from streetvision.cli import main
from streetvision.errors import ConfigError
from streetvision.eval.compare import COMPARE_FIGURES, COMPARED, compare, write_comparison
from streetvision.eval.evaluate import CONDITIONS
from streetvision.metrics.classification import metrics_from_decisions
from streetvision.eval.predictions import COLUMNS, read_predictions
from streetvision.validator.prior import prior_weights


@pytest.fixture(scope="module")
def micro_bundle_b(tmp_path_factory):
    """A second micro model: the same recipe trained with another seed."""
    from rich.console import Console

    from streetvision.config import load_config
    from streetvision.pipeline.artifacts import ArtifactSchema
    from streetvision.pipeline.runner import run_pipeline

    cfg = load_config([f"output_root={tmp_path_factory.mktemp('micro_run_b')}", "run_id=b", "model=dinov2_micro",
                       "data.synthetic.n=120", "seed=1", "training.progress_bar=false",
                       "pipeline.phases=[phase1,phase2,phase5,phase6]"])
    run_pipeline(cfg, Console(quiet=True))
    return ArtifactSchema.from_config(cfg).bundle_dir


@pytest.fixture(scope="module")
def two_evaluations(evaluated, micro_bundle_b, eval_images, tmp_path_factory):
    """Evaluation directories of bundle A (the session's micro bundle) and bundle B on the same 40 images."""
    from streetvision.eval.run_evaluation import evaluate_to_dir

    dir_b = tmp_path_factory.mktemp("eval_b") / "report"
    evaluate_to_dir(micro_bundle_b, eval_images, dir_b, seed=0, n_resamples=100, data_description="test",
                    stream_steps=0)
    return evaluated[3][-1].parent, dir_b


@pytest.fixture(scope="module")
def compared(two_evaluations, tmp_path_factory):
    result = compare(*two_evaluations, n_resamples=300, seed=0)
    return result, write_comparison(result, tmp_path_factory.mktemp("compare"))


def test_paired_differences_are_b_minus_a_with_scipys_paired_bca(compared, two_evaluations):
    result, _ = compared
    pred_a, pred_b = (read_predictions(d / "predictions.csv") for d in two_evaluations)
    prior = result["deploy_prior_roadwork"]

    def diff(key):
        def statistic(y, da, db):
            weights = prior_weights(y, prior) if key.endswith("_deploy") else None
            base = key.removesuffix("_deploy")
            return (metrics_from_decisions(y, db, weights)[base] - metrics_from_decisions(y, da, weights)[base])
        return statistic

    for name in CONDITIONS:
        y, da, db = pred_a[name].labels, pred_a[name].decision, pred_b[name].decision
        row = result["conditions"][name]
        for key in COMPARED:
            got = row["differences"][key]
            summary_a, summary_b = result["a"]["summary"][name], result["b"]["summary"][name]
            assert got["estimate"] == pytest.approx(summary_b[key] - summary_a[key], abs=1e-12)
            if got["method"] != "BCa":
                continue
            ref = stats.bootstrap((y, da, db), diff(key), paired=True, vectorized=False, n_resamples=300,
                                  method="BCa", rng=np.random.default_rng(0)).confidence_interval
            assert (got["low"], got["high"]) == pytest.approx((ref.low, ref.high), abs=1e-10), (name, key)
        assert row["verdict"] == ("B" if row["differences"]["reward"]["low"] > 0 else
                                  "A" if row["differences"]["reward"]["high"] < 0 else "neither")
        assert sum(row["agreement"].values()) == len(y)
    head = result["headline"]
    assert head["estimate"] == result["conditions"]["validator_mix"]["differences"]["reward_deploy"]["estimate"]
    assert 0.0 <= head["share_above_zero"] <= 1.0


def test_the_comparison_report_is_one_offline_page_with_its_tables_and_figures(compared):
    result, paths = compared
    assert [p.name for p in paths] == ["comparison.json", "report.html"]
    page = paths[-1].read_text()
    for fig in COMPARE_FIGURES:
        assert re.search(rf'<figure id="{fig}"><img alt="{fig}" src="data:image/png;base64,[A-Za-z0-9+/=]{{100,}}"',
                         page), fig
    for anchor in ("verdict", "models", "differences", "agreement", "metrics-a", "metrics-b"):
        assert f'id="{anchor}"' in page
    h = result["headline"]
    assert f"<b>{h['estimate']:.3f}</b> [{h['low']:.3f}, {h['high']:.3f}]" in page
    assert "default-src 'none'" in page
    assert not re.search(r"https?:|<script|<link", re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", page))
    saved = json.loads(paths[0].read_text())
    assert set(saved["conditions"]) == set(CONDITIONS) and saved["images"] == 40


def test_cli_compare_prints_the_differences_and_the_report_path(two_evaluations, tmp_path, capsys):
    assert main(["compare", *map(str, two_evaluations), "--out", str(tmp_path / "cmp"), "--resamples", "50"]) == 0
    out = capsys.readouterr().out
    assert "validator mix at the deployment prior: reward B - A" in out and "favours" in out
    assert (tmp_path / "cmp" / "report.html").is_file()


def test_run_directories_are_read_through_their_evaluation_folder(two_evaluations, tmp_path):
    for run, source in zip(("run_a", "run_b"), two_evaluations):
        shutil.copytree(source, tmp_path / run / "evaluation")
    result = compare(tmp_path / "run_a", tmp_path / "run_b", n_resamples=20)
    assert result["a"]["dir"] == str(tmp_path / "run_a" / "evaluation")


def edited_copy(source, target, edit):
    shutil.copytree(source, target)
    with open(target / "predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    rows = edit(rows)
    with open(target / "predictions.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(COLUMNS))
        writer.writeheader()
        writer.writerows(rows)
    return target


def test_different_images_are_refused_naming_them(two_evaluations, tmp_path, capsys):
    a, b = two_evaluations
    fewer = edited_copy(b, tmp_path / "fewer", lambda rows: [r for r in rows if r["image_index"] != "39"])
    dropped = read_predictions(a / "predictions.csv")["clean"].sample_ids[39]
    with pytest.raises(ConfigError, match=r"not on the same images: A has 40, B has 39; 1 only in A") as exc:
        compare(a, fewer, n_resamples=20)
    assert dropped in exc.value.message and "streetvision evaluate BUNDLE_B" in exc.value.fix
    assert main(["compare", str(a), str(fewer), "--out", str(tmp_path / "cmp")]) == 2
    assert "not on the same images" in capsys.readouterr().err
    assert not (tmp_path / "cmp").exists()


def test_different_challenges_are_refused_with_the_seeds(two_evaluations, tmp_path):
    a, b = two_evaluations

    def other_crop(rows):
        for r in rows:
            if r["condition"] == "level1" and r["image_index"] == "5":
                r["distortion"] = r["distortion"].replace('"level":1', '"level":1,"seed":"other"')
        return rows

    with pytest.raises(ConfigError, match=r"1 images of condition 'level1' under different validator challenges"):
        compare(a, edited_copy(b, tmp_path / "other", other_crop), n_resamples=20)


def test_a_directory_without_predictions_is_refused(two_evaluations, tmp_path):
    with pytest.raises(ConfigError, match="holds no predictions.csv"):
        compare(two_evaluations[0], tmp_path, n_resamples=20)
