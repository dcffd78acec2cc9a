import json
import re

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, matthews_corrcoef

from streetvision import Predictor
from streetvision.eval.bootstrap import bootstrap_ci
from streetvision.metrics.classification import metrics_from_decisions
from streetvision.eval.report import FIGURES, GALLERY


def test_constant_predictor_interval_has_zero_width():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    ci = bootstrap_ci(lambda rows: metrics_from_decisions(y[rows], np.ones(len(rows)))["mcc"], len(y), 500)
    assert ci["low"] == ci["high"] == ci["estimate"] == 0.0


def test_interval_narrows_as_the_sample_grows():
    rng = np.random.default_rng(1)

    def width(n):
        y = rng.integers(0, 2, n)
        pred = np.where(rng.random(n) < 0.8, y, 1 - y)
        ci = bootstrap_ci(lambda rows: metrics_from_decisions(y[rows], pred[rows])["accuracy"], n, 500, seed=2)
        return ci["high"] - ci["low"]

    assert width(2000) < width(500) < width(100)


def test_reward_equals_scikit_learn_on_rounded_scores(micro_bundle, evaluated):
    samples, summary, _, _ = evaluated
    predictor = Predictor.from_bundle(micro_bundle)
    from PIL import Image

    images = [Image.open(p).convert("RGB") for p, _ in samples]
    scores = predictor.scores(images)
    y = np.array([label for _, label in samples])
    rounded = np.round(scores).astype(int)
    expected = (0.5 * max(matthews_corrcoef(y, rounded), 0) + 0.5 * accuracy_score(y, rounded)) ** 3
    assert summary["clean"]["reward"] == pytest.approx(expected, abs=1e-12)


def test_level_zero_is_what_the_validator_sends_at_level_zero(micro_bundle, evaluated):
    samples, summary, _, _ = evaluated
    from PIL import Image

    from streetvision.validator.challenges import base, wire

    predictor = Predictor.from_bundle(micro_bundle)
    images = [Image.open(p).convert("RGB") for p, _ in samples]
    scores = predictor.scores([wire(base(im)) for im in images])
    y = np.array([label for _, label in samples])
    assert summary["level0"]["accuracy"] == pytest.approx(float(np.mean((scores > 0.5) == y)), abs=1e-12)


def test_stream_summary_is_recomputable_from_its_steps(evaluated):
    _, summary, _, paths = evaluated
    import csv

    rows = list(csv.DictReader(open(next(p for p in paths if p.name == "stream_steps.csv"))))
    stream = summary["stream"]
    assert len(rows) == stream["steps"] == 1000
    assert np.mean([float(r["reward"]) for r in rows]) == pytest.approx(stream["mean_reward"])
    assert stream["mean_reward_ci"]["low"] <= stream["mean_reward"] <= stream["mean_reward_ci"]["high"]
    labels = np.array([int(r["label"]) for r in rows])
    assert 0.45 < labels.mean() < 0.55  # the validator's 50/50 draw


def test_report_has_every_figure_and_no_network_references(evaluated):
    _, _, _, paths = evaluated
    names = {p.name for p in paths}
    assert names == {"predictions.csv", "metrics_summary.json", "bootstrap_ci.json", "stream_steps.csv", "report.html"}
    assert paths[-1].name == "report.html"
    page = paths[-1].read_text()
    for fig in FIGURES:
        assert re.search(rf'<figure id="{fig}"><img alt="{fig}" src="data:image/png;base64,[A-Za-z0-9+/=]{{100,}}"',
                         page), fig
    assert f'<section id="{GALLERY}">' in page
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    without_images = re.sub(r'data:image/(png|jpeg);base64,[A-Za-z0-9+/=]+', "", page)
    assert not re.search(r"https?:|//[a-z]|<script|<link|@import|url\(", without_images)
    assert all(src.startswith(("data:", "#")) for src in re.findall(r'(?:src|href)="([^"]*)"', page))
    ci = json.loads(next(p for p in paths if p.name == "bootstrap_ci.json").read_text())
    assert {"clean", "level0", "level1", "level2", "level3", "validator_mix"} == set(ci)
    assert ci["validator_mix"]["reward"]["low"] <= ci["validator_mix"]["reward"]["high"]
