import shutil
from collections import Counter

import pytest
from PIL import Image
from rich.console import Console

from streetvision.data.splits import assign_splits, group_duplicates, load_splits
from streetvision.errors import DataError
from streetvision.io import read_json
from streetvision.pipeline.artifacts import ArtifactSchema
from streetvision.pipeline.runner import run_pipeline
from tests.data.corpus import build_corpus

QUIET = Console(quiet=True)


def run_splits(cfg):
    run_pipeline(cfg, QUIET)
    return ArtifactSchema.from_config(cfg)


def test_real_data_splits_are_deterministic_stratified_and_leak_free(make_cfg, real_data):
    arts = [run_splits(make_cfg("pipeline.phases=[splits]", "data=folder", f"data.root={real_data}", run_id=r))
            for r in ("a", "b")]
    first, second = (read_json(a.splits_json) for a in arts)
    assert first["files"] == second["files"] and first["digest"] == second["digest"]
    splits = load_splits(arts[0].splits_json)  # verifies digest and overlap
    assert len(splits.files) == 224
    for split, frac in first["fractions"].items():
        pos = first["counts"][split]["roadwork"]
        assert abs(pos / 49 - frac) < 0.06, (split, pos)
    assert (splits.data_root / splits.rows("test")[0]["path"]).is_file()
    assert not splits.data_root.is_relative_to(arts[0].run_dir)  # used in place, not copied
    assert not read_json(arts[0].splits_json)["data_root"].startswith("/")  # recorded relative


def test_planted_exact_and_near_duplicates_land_in_one_split(make_cfg, real_data, tmp_path):
    root = tmp_path / "data"
    for cls in ("roadwork", "no_roadwork"):
        (root / cls).mkdir(parents=True)
        for src in sorted((real_data / cls).glob("*.jpg"))[:20]:
            (root / cls / src.name).symlink_to(src)
    src = sorted((real_data / "roadwork").glob("*.jpg"))[0]
    shutil.copy(src, root / "roadwork" / "exact_copy.jpg")
    Image.open(src).resize((300, 225)).save(root / "roadwork" / "near_copy.jpg", quality=80)
    art = run_splits(make_cfg("pipeline.phases=[splits]", "data=folder", f"data.root={root}"))
    by_path = {f["path"]: f for f in read_json(art.splits_json)["files"]}
    trio = [by_path[f"roadwork/{name}"] for name in (src.name, "exact_copy.jpg", "near_copy.jpg")]
    assert len({f["split"] for f in trio}) == 1 and len({f["group"] for f in trio}) == 1


def test_bad_files_are_quarantined_in_the_report_and_training_still_runs(make_cfg, tmp_path):
    root = tmp_path / "data"
    expected = build_corpus(root / "roadwork")
    from streetvision.data.synthetic import write_dataset

    write_dataset(tmp_path / "syn", n=120)
    for sub in ("roadwork", "no_roadwork"):
        (root / sub).mkdir(exist_ok=True)
        for p in (tmp_path / "syn" / sub).glob("*.png"):
            p.rename(root / sub / p.name)
    (root / "roadwork" / "notes.txt").write_text("not data")
    art = run_splits(make_cfg("pipeline.phases=[phase1]", "model=dinov2_micro", "training.epochs=1",
                              "training.progress_bar=false", "data=folder", f"data.root={root}",
                              "data.max_bad_fraction=0.2"))
    assert art.manifest("phase1").is_file()
    report = read_json(art.data_report_json)
    reasons = {q["path"]: q["reason"] for q in report["quarantined"]}
    for name, outcome in expected.items():
        if outcome != "ok":
            assert outcome in reasons[f"roadwork/{name}"]
    assert {"path": "roadwork/notes.txt", "reason": "not an image extension"} in report["skipped"]
    files = {f["path"] for f in read_json(art.splits_json)["files"]}
    assert "roadwork/cmyk.jpg" in files and "roadwork/zero.jpg" not in files


def test_too_many_bad_files_stop_with_clear_error(make_cfg, tmp_path):
    root = tmp_path / "data"
    build_corpus(root / "roadwork")
    build_corpus(root / "no_roadwork")
    with pytest.raises(DataError, match="could not be decoded, above data.max_bad_fraction"):
        run_splits(make_cfg("pipeline.phases=[splits]", "data=folder", f"data.root={root}"))


def test_class_with_too_few_images_says_how_many_are_needed():
    labels = [0] * 10 + [1] * 3
    with pytest.raises(DataError, match="Class 'roadwork' has 3 distinct image group.*need at least 4"):
        assign_splits(labels, list(range(13)), {"train": .6, "val_select": .15, "val_calib": .1, "test": .15}, 0,
                      ["no_roadwork", "roadwork"])


def test_group_duplicates_by_content_and_perceptual_hash():
    groups = group_duplicates(["a", "b", "a", "c"], [0b0, 0xFFFF, 0xFFFF0000, 0b111], max_distance=3)
    assert groups[0] == groups[2] == groups[3] and groups[1] != groups[0]


def test_edited_or_leaking_splits_file_is_refused(make_cfg):
    art = run_splits(make_cfg("pipeline.phases=[splits]", "data.synthetic.n=60"))
    raw = read_json(art.splits_json)
    raw["files"][0]["split"] = "test" if raw["files"][0]["split"] != "test" else "train"
    from streetvision.io import atomic_write_json
    atomic_write_json(art.splits_json, raw)
    with pytest.raises(DataError, match="was edited"):
        load_splits(art.splits_json)
    from streetvision.data.splits import files_digest
    dup = dict(raw["files"][1], split="test" if raw["files"][1]["split"] != "test" else "train")
    raw["files"].append(dup)
    raw["digest"] = files_digest(raw["files"])
    atomic_write_json(art.splits_json, raw)
    with pytest.raises(DataError, match="Split leak"):
        load_splits(art.splits_json)


def test_synthetic_splits_are_balanced(make_cfg):
    art = run_splits(make_cfg("pipeline.phases=[splits]", "data.synthetic.n=200"))
    counts = Counter((f["split"], f["label"]) for f in read_json(art.splits_json)["files"])
    assert counts[("train", 0)] == counts[("train", 1)] == 60
