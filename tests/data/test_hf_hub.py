"""data=hf with a Hub dataset id, read offline from a Hugging Face hub cache written here (no network)."""

import hashlib
import os
import subprocess
import sys
import types
from pathlib import Path

import huggingface_hub.constants as constants
import pytest
from huggingface_hub.utils import _http

import streetvision
from streetvision.data.synthetic import write_dataset
from streetvision.errors import ConfigError, DataError
from streetvision.io import read_json
from streetvision.pipeline.artifacts import ArtifactSchema
from tests.bundle.fake_hub import no_network
from tests.data.test_sources import splits_of

datasets = pytest.importorskip("datasets")

REPO = "owner/name"
COMMIT_A, COMMIT_B = "a" * 40, "b" * 40
HUB_ARGS = ("pipeline.phases=[splits]", "data=hf", f"data.hf.path={REPO}")


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An empty, offline hub cache under a temp HF_HOME; returns its ``hub/`` folder. datasets and huggingface_hub
    read these variables when imported, so the values they hold are patched too."""
    home = tmp_path / "hf_home"
    env = {"HF_HOME": home, "HF_HUB_CACHE": home / "hub", "HF_DATASETS_CACHE": home / "datasets",
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    for name, value in env.items():
        monkeypatch.setenv(name, str(value))  # for the CLI's subprocess
    monkeypatch.setattr(constants, "HF_HOME", str(home))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", home / "datasets")
    return home / "hub"


def publish(hub, tmp_path, commit, n, ref="main"):
    """Dataset repo REPO at ``commit`` in the hub cache layout (a parquet shard of ``n`` PNG scenes with ClassLabel
    labels, ``refs/<ref>`` naming the commit), as ``hf download`` leaves it; returns the PNG bytes' sha256s."""
    rows = write_dataset(tmp_path / f"scenes_{n}", n=n, size=64)
    features = datasets.Features({"image": datasets.Image(),
                                  "label": datasets.ClassLabel(names=["no_roadwork", "roadwork"])})
    ds = datasets.Dataset.from_dict({"image": [str(p) for p, _ in rows], "label": [y for _, y in rows]},
                                    features=features)
    repo = hub / "datasets--owner--name"
    shard = repo / "snapshots" / commit / "data" / "train-00000-of-00001.parquet"
    shard.parent.mkdir(parents=True)
    ds.to_parquet(str(shard))  # embeds the image bytes
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / ref).write_text(commit)
    return sorted(hashlib.sha256(p.read_bytes()).hexdigest() for p, _ in rows)


def rows_of(splits):
    return [(f["path"], f["label"], f["split"], f["sha256"]) for f in splits["files"]]


def test_a_hub_id_is_read_offline_from_the_hub_cache_and_streaming_gives_the_same_rows(make_cfg, hub, tmp_path):
    shas = publish(hub, tmp_path, COMMIT_A, n=16)
    splits = splits_of(make_cfg(*HUB_ARGS))
    assert sorted(f["sha256"] for f in splits["files"]) == shas  # each PNG, byte for byte
    assert sum(f["label"] for f in splits["files"]) == 8
    assert all(f["path"].startswith(["no_roadwork/", "roadwork/"][f["label"]]) for f in splits["files"])
    assert {f["split"] for f in splits["files"]} == {"train", "val_select", "val_calib", "test"}
    streamed = splits_of(make_cfg(*HUB_ARGS, "data.hf.streaming=true", run_id="s"))
    assert rows_of(streamed) == rows_of(splits)
    pinned = splits_of(make_cfg(*HUB_ARGS, f"data.hf.revision={COMMIT_A}", "data.hf.split=train", run_id="p"))
    assert rows_of(pinned) == rows_of(splits)


def test_a_new_commit_of_the_dataset_reruns_splits(make_cfg, hub, tmp_path):
    publish(hub, tmp_path, COMMIT_A, n=16)
    cfg = make_cfg(*HUB_ARGS)
    assert len(splits_of(cfg)["files"]) == 16
    images = ArtifactSchema.from_config(cfg).phase_dir("splits") / "hf_images"
    first = {p: p.stat().st_mtime_ns for p in images.rglob("*.img")}
    publish(hub, tmp_path, COMMIT_B, n=20)  # main moves to a commit with 4 more rows
    assert len(splits_of(cfg)["files"]) == 20
    assert all(p.stat().st_mtime_ns == t for p, t in first.items())  # the images already written are kept
    report = read_json(ArtifactSchema.from_config(cfg).data_report_json)
    assert report["found"] == {"no_roadwork": 10, "roadwork": 10}


def test_a_dataset_missing_from_the_cache_is_one_clear_error(make_cfg, hub, tmp_path):
    with pytest.raises(ConfigError) as err:
        splits_of(make_cfg("pipeline.phases=[splits]", "data=hf", "data.hf.path=owner/missing"))
    text = str(err.value)
    assert "'owner/missing' (revision main) is not in the local cache" in text and str(hub) in text
    assert "offline mode" in text and "hf download owner/missing --repo-type dataset" in text
    publish(hub, tmp_path, COMMIT_A, n=16)
    with pytest.raises(ConfigError, match=f"revision v9.*holds its revision.*main -> {COMMIT_A}.*--revision v9"):
        splits_of(make_cfg(*HUB_ARGS, "data.hf.revision=v9", run_id="v9"))
    with pytest.raises(DataError, match=r"has no split 'validation'; splits: \['train'\]"):
        splits_of(make_cfg(*HUB_ARGS, "data.hf.split=validation", run_id="sp"))
    with pytest.raises(DataError, match=r"no column 'img'; columns: \['image', 'label'\]"):
        splits_of(make_cfg(*HUB_ARGS, "data.hf.image_column=img", run_id="col"))


def test_the_cli_reports_a_dataset_missing_from_the_cache_without_traceback(hub, tmp_path):
    src = Path(streetvision.__file__).resolve().parents[1]  # this checkout's code, whatever the cwd
    proc = subprocess.run([sys.executable, "-m", "streetvision.cli", "run", "pipeline.phases=[splits]", "data=hf",
                           "data.hf.path=owner/missing"], capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(src)})
    assert proc.returncode == 2, proc.stderr
    text = " ".join(proc.stderr.split())
    assert "config error: Hugging Face dataset 'owner/missing'" in text and "not in the local cache" in text
    assert "hf download owner/missing --repo-type dataset" in text
    assert "Traceback" not in proc.stderr + proc.stdout


@pytest.mark.parametrize(("value", "expected"), [
    ("./nope", "does not exist"), ("/no/such/dir", "does not exist"), ("nope.parquet", "does not exist"),
    ("own er/name", "no Hub dataset id"), ("owner/na--me", "no Hub dataset id"),
])
def test_a_missing_local_path_or_a_malformed_id_stops_before_any_work(make_cfg, hub, tmp_path, value, expected):
    with pytest.raises(ConfigError, match=expected):
        splits_of(make_cfg("pipeline.phases=[splits]", "data=hf", f"data.hf.path={value}"))
    assert not (tmp_path / "outputs").exists()


@pytest.mark.parametrize("streaming", [False, True])
def test_with_the_offline_variables_unset_and_no_network_the_cache_is_read(make_cfg, hub, tmp_path, monkeypatch,
                                                                            streaming):
    shas = publish(hub, tmp_path, COMMIT_A, n=16)
    for module, name in ((constants, "HF_HUB_OFFLINE"), (datasets.config, "HF_HUB_OFFLINE"),
                         (datasets.config, "HF_DATASETS_OFFLINE")):
        monkeypatch.setattr(module, name, False)
    monkeypatch.setattr(_http, "time", types.SimpleNamespace(sleep=lambda seconds: None))  # retry without waiting
    with no_network():
        splits = splits_of(make_cfg(*HUB_ARGS, f"data.hf.streaming={str(streaming).lower()}"))
    assert sorted(f["sha256"] for f in splits["files"]) == shas
