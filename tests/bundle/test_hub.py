"""Loading from the Hub (Predictor.from_pretrained) and publishing (streetvision publish).

The Hub is unreachable from the test machines: ``fake_hub`` replaces only ``huggingface_hub``'s HTTP transport, so
its own create_repo / upload_folder / snapshot_download code, the real folders, transformers loading and the
miner's pipeline all run for real.
"""

from __future__ import annotations

import json
import shutil

import huggingface_hub
import numpy as np
import pytest
from huggingface_hub import HfApi, constants, snapshot_download

from streetvision import Predictor
from streetvision.bundle.hf_export import parity_images, pipeline_scores
from streetvision.bundle.hf_format import HF_FILES
from streetvision.io.outputs import OUTPUT_MARKER
from streetvision.cli import main
from streetvision.errors import ConfigError, IntegrityError
from streetvision.io import sha256_file
from tests.bundle.fake_hub import fake_hub, no_network

HOTKEY = "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty"  # the public development address "Alice"
needs_client_factory = pytest.mark.skipif(not hasattr(huggingface_hub, "set_client_factory"),
                                          reason="huggingface_hub < 1.0 has no set_client_factory")


@pytest.fixture
def hub_env(tmp_path, monkeypatch):
    """An empty Hugging Face cache and home of this test's own, a (fake) token, online mode."""
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf_cache"))
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "hf_home" / "token"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_TOKEN", "hf_not_a_real_token")
    return tmp_path


def publish_cli(run, *extra: str) -> list[str]:
    return ["publish", str(run), "--repo-id", "my-org/roadwork", "--hotkey", HOTKEY, *extra]


# -- Predictor.from_pretrained -------------------------------------------------------------------------------------
def test_a_local_hf_folder_scores_like_the_miner_pipeline_and_decides_like_the_bundle(exportable_run):
    hf, bundle = exportable_run / "export" / "hf", exportable_run / "export" / "bundle"
    images = parity_images(bundle)
    predictor = Predictor.from_pretrained(hf)
    scores = predictor.scores(images)
    assert np.max(np.abs(scores - pipeline_scores(hf, images))) <= 1e-4
    decisions = [p.decision for p in Predictor.from_bundle(bundle).predict_batch(images)]
    assert [p.decision for p in predictor.predict_batch(images)] == decisions
    assert isinstance(predictor(images[0]), float) and predictor(images[0]) == pytest.approx(scores[0])
    assert predictor.index["class_names"] == ["None", "Roadwork"]
    assert (predictor.policy.temperature, predictor.policy.decision_threshold) == (1.0, 0.5)
    with pytest.raises(ConfigError, match="backend='torch'"):
        Predictor.from_pretrained(hf, backend="onnx")


def test_a_local_bundle_loads_as_from_bundle_does(exportable_run):
    bundle = exportable_run / "export" / "bundle"
    images = parity_images(bundle, n_per_level=2)
    assert Predictor.from_pretrained(bundle, backend="onnx").predict_batch(images) == \
        Predictor.from_bundle(bundle, backend="onnx").predict_batch(images)


def test_swapped_labels_and_a_bicubic_processor_are_refused(exportable_run, tmp_path):
    hf = shutil.copytree(exportable_run / "export" / "hf", tmp_path / "hf")
    config = json.loads((hf / "config.json").read_text())
    (hf / "config.json").write_text(json.dumps({**config, "id2label": {"0": "None", "1": "Cones"}}))
    with pytest.raises(IntegrityError, match="'Roadwork'"):
        Predictor.from_pretrained(hf)
    (hf / "config.json").write_text(json.dumps(config))
    processor = json.loads((hf / "preprocessor_config.json").read_text())
    (hf / "preprocessor_config.json").write_text(json.dumps({**processor, "resample": 3}))
    with pytest.raises(IntegrityError, match="resample 3"):
        Predictor.from_pretrained(hf)


def test_neither_a_folder_nor_a_repo_id_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="neither a folder nor a Hugging Face repo id"):
        Predictor.from_pretrained(str(tmp_path / "missing" / "bundle"))
    with pytest.raises(ConfigError, match="only with a Hub repo id"):
        Predictor.from_pretrained(tmp_path, revision="main")


@needs_client_factory
def test_a_hub_repo_resolves_offline_from_the_local_cache(exportable_run, hub_env, monkeypatch):
    export = exportable_run / "export"
    with fake_hub() as hub:  # publish both formats, then download them once: huggingface_hub fills its cache
        api = HfApi()
        for name, folder in (("org/roadwork-hf", export / "hf"), ("org/roadwork-bundle", export / "bundle")):
            api.create_repo(name, exist_ok=True)
            api.upload_folder(repo_id=name, folder_path=str(folder))
            snapshot_download(name, ignore_patterns=[".gitattributes"])
        commit = hub.repos["org/roadwork-hf"].sha()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    images = parity_images(export / "bundle", n_per_level=2)
    with no_network():
        from_hub = Predictor.from_pretrained("org/roadwork-hf")
        pinned = Predictor.from_pretrained("org/roadwork-hf", revision=commit)
        bundle = Predictor.from_pretrained("org/roadwork-bundle", backend="onnx")
        with pytest.raises(ConfigError, match="'org/never-published'.*check the network"):
            Predictor.from_pretrained("org/never-published")
    expected = Predictor.from_pretrained(export / "hf").scores(images)
    assert np.array_equal(from_hub.scores(images), expected) and np.array_equal(pinned.scores(images), expected)
    assert str(from_hub.bundle_dir).startswith(str(hub_env / "hf_cache"))
    assert bundle.predict_batch(images) == Predictor.from_bundle(export / "bundle", backend="onnx").predict_batch(images)


# -- streetvision publish -----------------------------------------------------------------------------------------
def test_dry_run_writes_exactly_the_tree_to_upload_and_lists_it(exportable_run, hub_env, tmp_path, capsys):
    out = tmp_path / "tree"
    assert main(publish_cli(exportable_run, "--version", "1.2.3", "--dry-run", str(out))) == 0
    printed = capsys.readouterr().out
    files = sorted(p.name for p in out.rglob("*") if p.is_file() and p.name != OUTPUT_MARKER)
    assert files == sorted(HF_FILES) and json.loads((out / OUTPUT_MARKER).read_text())["files"] == files
    for name in files:
        assert f"{sha256_file(out / name)}  {(out / name).stat().st_size:>12,d}  {name}" in printed
    card = json.loads((out / "model_card.json").read_text())
    assert card["submitted_by"] == HOTKEY and card["version"] == "1.2.3" and card["model_name"]
    assert isinstance(card["submission_time"], int) and card["submission_time"] > 1_700_000_000
    assert "nothing was uploaded" in printed
    assert np.max(np.abs(Predictor.from_pretrained(out).scores(parity_images(exportable_run / "export" / "bundle"))
                         - pipeline_scores(exportable_run / "export" / "hf", parity_images(
                             exportable_run / "export" / "bundle")))) <= 1e-4


@needs_client_factory
def test_publish_uploads_the_tree_in_one_commit(exportable_run, hub_env, tmp_path, capsys):
    assert main(publish_cli(exportable_run, "--dry-run", str(tmp_path / "tree"))) == 0
    with fake_hub() as hub:
        HfApi().create_repo("my-org/roadwork")
        HfApi().upload_file(repo_id="my-org/roadwork", path_or_fileobj=b"stale", path_in_repo="pytorch_model.bin")
        hub.requests.clear()
        assert main(publish_cli(exportable_run, "--private", "--version", "2.0.0")) == 0
    repo = hub.repos["my-org/roadwork"]
    assert len(hub.commit_posts()) == 1 and len(repo.commits) == 2  # the stale file's commit, then ours
    assert sorted(repo.files) == sorted(HF_FILES)  # the older file is deleted in the same commit
    for name in ("config.json", "model.safetensors", "preprocessor_config.json"):
        assert repo.files[name] == (tmp_path / "tree" / name).read_bytes()  # what the dry run showed
    card = json.loads(repo.files["model_card.json"])
    assert (card["submitted_by"], card["version"]) == (HOTKEY, "2.0.0")
    assert [m for m, p in hub.requests if p == "/api/repos/create"] == ["POST"]
    assert "my-org/roadwork" in capsys.readouterr().out


@pytest.mark.parametrize(("args", "code", "message"), [
    (["--hotkey", ""], 2, "is not a hotkey address"),
    (["--hotkey", "default"], 2, "not the hotkey's name"),
    (["--repo-id", "roadwork"], 2, "is not a Hugging Face repo id"),
    (["--repo-id", "my-org/road--work"], 2, "is not a Hugging Face repo id"),
    (["--version", "1.0"], 2, "is not X.Y.Z"),
])
@needs_client_factory
def test_bad_arguments_are_refused_before_any_request(exportable_run, hub_env, capsys, args, code, message):
    with fake_hub() as hub:
        assert main([*publish_cli(exportable_run), *args]) == code
    assert message in capsys.readouterr().err and hub.requests == []


@needs_client_factory
def test_no_token_is_refused_before_any_request(exportable_run, hub_env, monkeypatch, capsys):
    monkeypatch.delenv("HF_TOKEN")
    with fake_hub() as hub:
        assert main(publish_cli(exportable_run)) == 2
    assert "No Hugging Face token" in capsys.readouterr().err and hub.requests == []


@needs_client_factory
def test_a_bundle_failing_verify_is_not_uploaded(exportable_run, hub_env, tmp_path, capsys):
    bundle = shutil.copytree(exportable_run / "export" / "bundle", tmp_path / "bundle")
    policy = json.loads((bundle / "scrcparams.json").read_text())
    policy["scrc_params"]["decision_threshold"] = 0.01
    (bundle / "scrcparams.json").write_text(json.dumps(policy))
    with fake_hub() as hub:
        assert main(publish_cli(bundle)) == 1
    err = capsys.readouterr().err
    assert "fails verify" in err and "scrcparams.json" in err and hub.requests == []


@needs_client_factory
def test_no_network_is_a_clear_error_and_commits_nothing(exportable_run, hub_env, capsys):
    with no_network():
        assert main(publish_cli(exportable_run)) == 1
    err = capsys.readouterr().err
    assert "hub error" in err and "'my-org/roadwork'" in err and "no commit was made" in err
