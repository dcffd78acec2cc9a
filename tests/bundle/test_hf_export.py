"""The Hugging Face export, loaded exactly as the NATIX base miner loads it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from streetvision import Predictor
from streetvision.bundle.hf_export import check_hf_parity, parity_images, pipeline_scores
from streetvision.bundle.hf_format import folded_score
from streetvision.bundle.verify import verify_bundle
from streetvision.errors import ConfigError


def test_folded_score_crosses_half_at_the_threshold():
    p = np.array([0.1, 0.3, 0.3 + 1e-9, 0.9])
    s = folded_score(p, 0.3)
    assert s[1] == pytest.approx(0.5) and s[0] < 0.5 < s[2] and np.all(np.diff(s) > 0)


def test_miner_pipeline_matches_the_bundle_on_clean_and_distorted_images(exportable_run):
    bundle, hf = exportable_run / "export" / "bundle", exportable_run / "export" / "hf"
    images = parity_images(bundle)
    assert len(images) >= 32
    predictor = Predictor.from_bundle(bundle)
    preds = predictor.predict_batch(images)
    expected = folded_score(np.array([p.probability for p in preds]), predictor.policy.decision_threshold)
    got = pipeline_scores(hf, images)  # transformers.pipeline("image-classification"), score of "Roadwork"
    assert np.max(np.abs(got - expected)) <= 1e-4
    assert np.array_equal(got > 0.5, np.array([p.decision for p in preds], dtype=bool))
    config = json.loads((hf / "config.json").read_text())
    assert config["id2label"] == {"0": "None", "1": "Roadwork"}
    assert config["architectures"] == ["Dinov2ForImageClassification"] and "auto_map" not in config
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "model_card.json", "README.md"} <= {
        p.name for p in hf.iterdir()}


def test_verify_checks_the_hf_export_and_catches_an_edited_classifier(exportable_run, tmp_path):
    checks = {c.name: c for c in verify_bundle(exportable_run / "export" / "bundle")}
    assert checks["hugging face export (miner pipeline)"].ok
    export = tmp_path / "export"
    shutil.copytree(exportable_run / "export", export)
    config = json.loads((export / "hf" / "config.json").read_text())
    config["id2label"] = {"0": "Roadwork", "1": "None"}  # swapped labels: the miner would answer the wrong class
    (export / "hf" / "config.json").write_text(json.dumps(config))
    bad = {c.name: c for c in verify_bundle(export / "bundle")}["hugging face export (miner pipeline)"]
    assert not bad.ok and "disagrees with the bundle" in bad.detail


def test_a_non_exportable_pooling_gets_a_clear_error(micro_bundle, tmp_path):
    from streetvision.bundle.hf_export import export_hf

    with pytest.raises(ConfigError, match="model.pooling=cls_mean and model.head=linear"):
        export_hf(micro_bundle, tmp_path / "hf")
    assert not (micro_bundle.parent / "hf").exists()  # phase6 wrote no export for the default pooling


def test_export_command_writes_the_hf_folder_and_a_bad_version_is_not_saved(exportable_run, tmp_path):
    run = exportable_run  # rebuilds the bundle in place: same model, same checks, so later users are fine
    cli = [sys.executable, "-m", "streetvision.cli", "export", str(run)]
    bad = subprocess.run([*cli, "phase6.model_card.version=1.0"], capture_output=True, text=True)
    assert bad.returncode == 2 and "is not X.Y.Z" in bad.stderr
    ok = subprocess.run([*cli, "--format", "hf", "--out", str(tmp_path / "hf")], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr  # the failed override above was not saved into config.yaml
    assert check_hf_parity(run / "export" / "bundle", tmp_path / "hf").startswith("32 images")
