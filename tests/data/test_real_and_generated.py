"""Real and generated sources: tagged listings, splits stratified by class x source, per-kind metrics and the
validator's real/generated mix, and a stream that draws a kind per challenge as the validator does."""

import json

import numpy as np
import pytest
from rich.console import Console

from streetvision.data.synthetic import write_dataset
from streetvision.errors import ConfigError, DataError
from streetvision.eval.evaluate import source_metrics, source_mix_weights
from streetvision.eval.predictions import from_logits
from streetvision.metrics.policy import SCRC, Policy
from streetvision.io import read_json
from streetvision.pipeline.artifacts import ArtifactSchema
from streetvision.pipeline.runner import run_pipeline
from streetvision.validator.stream import simulate

SPLITS_ONLY = ("pipeline.phases=[splits]",)


def _two_sources(make_cfg, tmp_path, n_real=80, n_gen=40, *extra):
    write_dataset(tmp_path / "real", n=n_real, seed=1)
    write_dataset(tmp_path / "gen", n=n_gen, seed=2, domain="target")
    return make_cfg(*SPLITS_ONLY, "data=folder", f"data.root={tmp_path / 'real'}",
                    f"data.sources=[{{name: sdxl, kind: generated, root: '{tmp_path / 'gen'}'}}]", *extra)


def test_splits_tag_each_file_with_its_source_and_stratify_by_class_and_source(make_cfg, tmp_path):
    cfg = _two_sources(make_cfg, tmp_path)
    run_pipeline(cfg, Console(quiet=True))
    art = ArtifactSchema.from_config(cfg)
    splits = read_json(art.splits_json)
    assert splits["sources"] == {"real": "real", "sdxl": "generated"}
    rows = splits["files"]
    assert {r["source"] for r in rows} == {"real", "sdxl"}
    assert all(r["path"].startswith(("real/", "gen/")) for r in rows)  # relative to the common folder
    assert all((r["source"] == "sdxl") == r["path"].startswith("gen/") for r in rows)
    for split, fraction in splits["fractions"].items():
        for source in ("real", "sdxl"):
            for label in (0, 1):
                stratum = [r for r in rows if r["source"] == source and r["label"] == label]
                share = sum(r["split"] == split for r in stratum) / len(stratum)
                assert abs(share - fraction) <= 2.5 / len(stratum) + 0.02, (split, source, label)
    report = read_json(art.data_report_json)
    assert report["sources"]["sdxl"]["kind"] == "generated"
    assert sum(report["sources"]["sdxl"]["usable"].values()) == sum(r["source"] == "sdxl" for r in rows)
    from streetvision.data.splits import load_splits

    loaded = load_splits(art.splits_json)
    test_kinds = loaded.kinds("test")
    assert set(test_kinds) == {"real", "generated"} and len(test_kinds) == len(loaded.paths("test"))


def test_a_source_without_a_class_is_reported_per_source(make_cfg, tmp_path, capsys):
    write_dataset(tmp_path / "real", n=80, seed=1)
    write_dataset(tmp_path / "gen", n=20, seed=2)
    for f in (tmp_path / "gen" / "roadwork").iterdir():
        f.unlink()
    cfg = make_cfg(*SPLITS_ONLY, "data=folder", f"data.root={tmp_path / 'real'}",
                   f"data.sources=[{{kind: generated, root: '{tmp_path / 'gen'}'}}]")
    console = Console(file=open(tmp_path / "log.txt", "w"), width=200)
    run_pipeline(cfg, console)
    console.file.close()
    log = (tmp_path / "log.txt").read_text()
    assert "source 'generated' (generated) has no usable image of class(es) ['roadwork']" in log
    report = read_json(ArtifactSchema.from_config(cfg).data_report_json)
    assert report["sources"]["generated"]["usable"]["roadwork"] == 0


@pytest.mark.parametrize("sources, message", [
    ("[{kind: fake, root: /tmp}]", r"kind 'fake', source 'folder'; kind must be one of real, generated"),
    ("[{kind: real, root: /tmp}]", r"2 data sources are named 'real'"),
    ("[{kind: generated, root: /does/not/exist}]", r"data.sources\[0\].root='/does/not/exist' does not exist"),
])
def test_bad_sources_stop_before_a_run_directory_is_made(make_cfg, tmp_path, sources, message):
    write_dataset(tmp_path / "real", n=8, seed=1)
    cfg = make_cfg(*SPLITS_ONLY, "data=folder", f"data.root={tmp_path / 'real'}", f"data.sources={sources}")
    with pytest.raises(ConfigError, match=message):
        run_pipeline(cfg, Console(quiet=True))
    assert not ArtifactSchema.from_config(cfg).run_dir.exists()


def _condition(labels, kinds, correct_kind):
    """A condition whose decisions are right on ``correct_kind`` images and wrong on the others."""
    labels = np.asarray(labels)
    right = np.asarray(kinds) == correct_kind
    decided = np.where(right, labels, 1 - labels)
    logits = np.stack([np.zeros(len(labels)), np.where(decided == 1, 3.0, -3.0)], 1)
    n = len(labels)
    return from_logits(logits, labels, np.full(n, -1), [{}] * n, [f"{i}.png" for i in range(n)], [""] * n,
                       Policy(SCRC, 1.0, 0.5))


def test_per_kind_metrics_and_the_validators_source_mix():
    # 12 real (3 roadwork), 4 generated (2 roadwork); the model is right on real images, wrong on generated ones
    labels = np.array([1] * 3 + [0] * 9 + [1, 1, 0, 0])
    kinds = np.array(["real"] * 12 + ["generated"] * 4)
    out = source_metrics({"clean": _condition(labels, kinds, "real")}, kinds)
    assert out["by_kind"]["real"]["clean"]["accuracy"] == 1.0
    assert out["by_kind"]["generated"]["clean"]["accuracy"] == 0.0
    mix = out["validator_source_mix"]["clean"]
    assert mix["accuracy"] == pytest.approx(0.5)  # half the draws are real (right), half generated (wrong)
    weights = source_mix_weights(labels, kinds)
    for kind in ("real", "generated"):
        for label in (0, 1):
            cell = (kinds == kind) & (labels == label)
            assert weights[cell].sum() == pytest.approx(0.25 * len(labels))
    assert source_mix_weights(labels[:12], kinds[:12]) is None  # no generated image: no mix


def test_the_stream_draws_generated_images_half_the_time_and_is_unchanged_without_them():
    labels = np.array([0, 1] * 10)
    kinds = ["real"] * 12 + ["generated"] * 8
    images = list(range(20))

    def score(batch):
        return np.full(len(batch), 0.5)

    from streetvision.validator import stream

    real_challenge = stream.challenge
    stream.challenge = lambda img, rng, level_probs: (img, 0, {})  # the draw of images, not the distortions
    try:
        mixed = simulate(score, images, labels, 400, seed=3, kinds=kinds, n_resamples=10)
        plain = simulate(score, images, labels, 400, seed=3, n_resamples=10)
        one_kind = simulate(score, images, labels, 400, seed=3, kinds=["real"] * 20, n_resamples=10)
        with pytest.raises(DataError, match="no generated images of class 1"):
            simulate(score, images, labels, 10, kinds=["real"] * 18 + ["generated", "generated"][:1] + ["real"])
    finally:
        stream.challenge = real_challenge
    drawn = [row["kind"] for row in mixed["steps"]]
    assert 0.4 < drawn.count("generated") / len(drawn) < 0.6
    assert all(kinds[row["image"]] == row["kind"] and labels[row["image"]] == row["label"] for row in mixed["steps"])
    assert set(mixed["summary"]["mean_reward_by_kind"]) == {"real", "generated"}
    assert plain["steps"] == one_kind["steps"] and "kind" not in plain["steps"][0]


def test_evaluation_reports_each_kind_and_the_source_mix(micro_bundle, tmp_path):
    from streetvision.eval.run_evaluation import evaluate_to_dir

    rows = write_dataset(tmp_path / "real", n=12, seed=1) + write_dataset(tmp_path / "gen", n=8, seed=2)
    kinds = ["real"] * 12 + ["generated"] * 8
    summary, _, paths = evaluate_to_dir(micro_bundle, rows, tmp_path / "out", seed=0, n_resamples=20,
                                        data_description="two kinds", stream_steps=40, kinds=kinds)
    sources = summary["sources"]
    assert set(sources["by_kind"]) == {"real", "generated"}
    assert sources["by_kind"]["generated"]["clean"]["n"] == 8
    assert set(sources["validator_source_mix"]) == set(summary) - {"sources", "stream"}
    assert sources["validator_source_mix"]["clean"]["n"] == pytest.approx(20)
    assert set(summary["stream"]["mean_reward_by_kind"]) == {"real", "generated"}
    written = json.loads((tmp_path / "out" / "metrics_summary.json").read_text())
    assert written["sources"]["by_kind"]["real"]["clean"]["n"] == 12
    html = (tmp_path / "out" / "report.html").read_text()
    assert "Real and generated images" in html and "mean reward real / generated" in html
    from streetvision.eval.report import report_from_dir

    assert "Real and generated images" in report_from_dir(tmp_path / "out")
