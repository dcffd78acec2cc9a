"""The csv and hf sources end in the same splits machinery as the folder source."""

import csv

import pytest
from rich.console import Console

from streetvision.data.synthetic import write_dataset
from streetvision.io import read_json
from streetvision.pipeline.artifacts import ArtifactSchema
from streetvision.pipeline.runner import run_pipeline


def splits_of(cfg):
    run_pipeline(cfg, Console(quiet=True))
    return read_json(ArtifactSchema.from_config(cfg).splits_json)


def test_csv_source_with_relative_paths_and_named_or_numeric_labels(make_cfg, tmp_path):
    rows = write_dataset(tmp_path / "imgs", n=40)
    manifest = tmp_path / "labels.csv"
    with open(manifest, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label"])
        for i, (path, label) in enumerate(rows):
            writer.writerow([path.relative_to(tmp_path).as_posix(), label if i % 2 else
                             ["no_roadwork", "roadwork"][label]])
    splits = splits_of(make_cfg("pipeline.phases=[splits]", "data=csv", f"data.csv_path={manifest}"))
    assert len(splits["files"]) == 40
    assert sum(f["label"] for f in splits["files"]) == 20


def test_hf_dataset_saved_to_disk(make_cfg, tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = write_dataset(tmp_path / "imgs", n=40)
    features = datasets.Features({"image": datasets.Image(),
                                  "label": datasets.ClassLabel(names=["no_roadwork", "roadwork"])})
    ds = datasets.Dataset.from_dict({"image": [str(p) for p, _ in rows], "label": [y for _, y in rows]},
                                    features=features)
    ds.save_to_disk(str(tmp_path / "hf"))
    splits = splits_of(make_cfg("pipeline.phases=[splits]", "data=hf", f"data.hf.path={tmp_path / 'hf'}"))
    assert len(splits["files"]) == 40 and sum(f["label"] for f in splits["files"]) == 20


def test_missing_folder_root_is_a_config_error(make_cfg):
    from streetvision.errors import ConfigError

    with pytest.raises(ConfigError, match="data.source=folder needs 'data.root'"):
        make_cfg("pipeline.phases=[splits]", "data=folder")
