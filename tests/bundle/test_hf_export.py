"""The Hugging Face export, loaded exactly as the NATIX base miner loads it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from PIL import Image

from streetvision import Predictor
from streetvision.bundle.hf_export import (check_hf_parity, miner_pipeline, named_parity_images, parity_images,
                                          pipeline_scores)
from streetvision.bundle.hf_format import (CHECKSUMS_FILE, DINOV2_FIELDS, HF_FILES, check_hf_folder,
                                          checksums_document)
from streetvision.bundle.verify import verify_bundle
from streetvision.errors import ConfigError, IntegrityError

HF_KEYS = {"model_type", "architectures", "id2label", "label2id", *DINOV2_FIELDS}
PROCESSOR_KEYS = {"do_resize", "size", "resample", "do_center_crop", "crop_size", "do_rescale", "rescale_factor",
                  "do_normalize", "image_mean", "image_std", "do_convert_rgb"}


def test_bundle_export_and_miner_pipeline_return_one_score_on_validator_images(exportable_run):
    bundle, hf = exportable_run / "export" / "bundle", exportable_run / "export" / "hf"
    named = named_parity_images(bundle)
    images = parity_images(bundle)
    assert len(images) == 32 and {img.size for img in images} == {(224, 224)}
    assert {name.rsplit("level", 1)[1][0] for name, _ in named} == {"0", "1", "2", "3"}
    bundle_scores = Predictor.from_bundle(bundle).scores(images)
    export_scores = Predictor.from_pretrained(hf).scores(images)
    miner_scores = pipeline_scores(hf, images)  # the miner's own call: feature_extractor=..., use_fast=True
    slow_scores = pipeline_scores(hf, images, use_fast=False)
    for got in (export_scores, miner_scores, slow_scores):
        assert np.max(np.abs(got - bundle_scores)) <= 1e-4
        assert np.array_equal(got > 0.5, bundle_scores > 0.5)


def test_the_export_writes_only_fields_every_miner_environment_reads(exportable_run):
    hf = exportable_run / "export" / "hf"
    config = json.loads((hf / "config.json").read_text())
    processor = json.loads((hf / "preprocessor_config.json").read_text())
    assert set(config) <= HF_KEYS and set(processor) == PROCESSOR_KEYS  # no image_processor_type, dtype, ...
    assert config["id2label"] == {"0": "None", "1": "Roadwork"}
    assert config["architectures"] == ["Dinov2ForImageClassification"] and "auto_map" not in config
    assert set(HF_FILES) == {p.name for p in hf.iterdir()}
    assert type(miner_pipeline(hf).image_processor).__name__.startswith("BitImageProcessor")
    assert "load alike" in check_hf_folder(hf)


def test_exported_files_get_the_mode_the_umask_gives(exportable_run, tmp_path):
    from streetvision.bundle.hf_export import export_hf

    previous = os.umask(0o022)
    try:
        out = export_hf(exportable_run / "export" / "bundle", tmp_path / "hf")
    finally:
        os.umask(previous)
    assert {p.name: p.stat().st_mode & 0o777 for p in out.iterdir()} == {name: 0o644 for name in HF_FILES}


@pytest.mark.parametrize("size", [(300, 200), (180, 260), (57, 90)])
def test_from_pretrained_on_the_export_preprocesses_non_square_photos_as_the_pipeline(exportable_run, size):
    hf = exportable_run / "export" / "hf"
    rng = np.random.default_rng(sum(size))
    image = Image.fromarray((rng.random((size[1], size[0], 3)) * 255).astype(np.uint8))
    got = Predictor.from_pretrained(hf).scores([image])
    assert np.abs(got - pipeline_scores(hf, [image])).max() <= 1e-5


@pytest.mark.parametrize("key, value, message", [
    ("image_processor_type", "BitImageProcessor", "looks for 'BitImageProcessorFast'"),
    ("auto_map", {"AutoImageProcessor": "x.Y"}, "another class"),
])
def test_a_field_a_miner_environment_reads_otherwise_fails_verify_naming_it(exportable_run, tmp_path, key, value,
                                                                             message):
    export = tmp_path / "export"
    shutil.copytree(exportable_run / "export", export)
    processor = json.loads((export / "hf" / "preprocessor_config.json").read_text())
    (export / "hf" / "preprocessor_config.json").write_text(json.dumps({**processor, key: value}))
    with pytest.raises(IntegrityError, match=message) as err:
        check_hf_folder(export / "hf")
    assert "transformers" in str(err.value) and key in str(err.value)
    bad = {c.name: c for c in verify_bundle(export / "bundle")}["hugging face export (miner pipeline)"]
    assert not bad.ok and key in bad.detail
    alone = verify_bundle(export / "hf")  # the folder on its own
    assert [(c.name, c.ok) for c in alone] == [("hugging face folder (miner environments)", False)]
    assert key in alone[0].detail


def test_verify_takes_an_export_folder_on_its_own(exportable_run):
    checks = verify_bundle(exportable_run / "export" / "hf")
    assert [(c.name, c.ok) for c in checks] == [("hugging face folder (miner environments)", True),
                                                 ("load (miner pipeline)", True)]


def test_verify_checks_the_hf_export_and_catches_an_edited_classifier(exportable_run, tmp_path):
    checks = {c.name: c for c in verify_bundle(exportable_run / "export" / "bundle")}
    assert checks["hugging face export (miner pipeline)"].ok
    export = tmp_path / "export"
    shutil.copytree(exportable_run / "export", export)
    config = json.loads((export / "hf" / "config.json").read_text())
    config["id2label"] = {"0": "Roadwork", "1": "None"}  # swapped labels: the miner would answer the wrong class
    (export / "hf" / "config.json").write_text(json.dumps(config))
    bad = {c.name: c for c in verify_bundle(export / "bundle")}["hugging face export (miner pipeline)"]
    assert not bad.ok and "id2label" in bad.detail


def test_an_edited_exported_classifier_fails_parity_naming_the_environment_and_the_image(exportable_run, tmp_path):
    from safetensors.torch import load_file, save_file

    export = tmp_path / "export"
    shutil.copytree(exportable_run / "export", export)
    weights = load_file(export / "hf" / "model.safetensors")
    weights["classifier.bias"] = weights["classifier.bias"] + torch.tensor([-3.0, 3.0])
    save_file(weights, export / "hf" / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(IntegrityError, match="model.safetensors' does not match its SHA-256"):
        check_hf_parity(export / "bundle", export / "hf")
    (export / "hf" / CHECKSUMS_FILE).write_text(json.dumps(checksums_document(export / "hf")))  # re-hashed too
    with pytest.raises(IntegrityError, match=r"disagrees with the bundle under transformers \d") as err:
        check_hf_parity(export / "bundle", export / "hf")
    assert "worst image probes/parity_" in str(err.value) and "decisions differ" in str(err.value)


def test_a_non_exportable_pooling_gets_a_clear_error(micro_bundle, tmp_path):
    from streetvision.bundle.hf_export import export_hf

    with pytest.raises(ConfigError, match="model.pooling=family .here 'cls_mean'.*and model.head=linear"):
        export_hf(micro_bundle, tmp_path / "hf")
    assert not (micro_bundle.parent / "hf").exists()  # phase6 wrote no export for the cls pooling


def test_export_command_writes_the_hf_folder_and_a_bad_version_is_not_saved(exportable_run, tmp_path):
    run = exportable_run  # rebuilds the bundle in place: same model, same checks, so later users are fine
    cli = [sys.executable, "-m", "streetvision.cli", "export", str(run)]
    bad = subprocess.run([*cli, "phase6.model_card.version=1.0"], capture_output=True, text=True)
    assert bad.returncode == 2 and "is not X.Y.Z" in bad.stderr
    ok = subprocess.run([*cli, "--format", "hf", "--out", str(tmp_path / "hf")], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr  # the failed override above was not saved into config.yaml
    assert check_hf_parity(run / "export" / "bundle", tmp_path / "hf").startswith("32 images")
