import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from rich.console import Console

from streetvision.data.splits import assign_splits, files_digest, group_duplicates, load_splits, write_splits
from streetvision.errors import DataError
from streetvision.io import read_json
from streetvision.pipeline.artifacts import ArtifactSchema
from streetvision.pipeline.runner import run_pipeline
from tests.data.corpus import build_corpus

FRACTIONS = {"train": 0.6, "val_select": 0.15, "val_calib": 0.1, "test": 0.15}
NAMES = ["no_roadwork", "roadwork"]

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


def synthetic_folder(root, n, seed=0):
    """A folder dataset (one sub-folder per class) of n procedurally drawn scenes: no ../shared needed."""
    from streetvision.data.synthetic import write_dataset

    write_dataset(root, n=n, seed=seed, size=96)
    return root


def test_the_same_content_under_two_paths_in_two_splits_is_refused_as_a_leak(tmp_path):
    root = synthetic_folder(tmp_path / "data", 8)
    src = sorted((root / "roadwork").glob("*.png"))[0]
    shutil.copy(src, root / "roadwork" / "renamed_copy.png")
    from streetvision.io import sha256_file

    files = [{"path": p.relative_to(root).as_posix(), "label": int(p.parent.name == "roadwork"), "split": "train",
              "sha256": sha256_file(p), "group": i} for i, p in enumerate(sorted(root.rglob("*.png")))]
    by_path = {f["path"]: f for f in files}
    by_path["roadwork/renamed_copy.png"]["split"] = "test"  # same bytes as src, another path, another split
    assert by_path["roadwork/renamed_copy.png"]["sha256"] == by_path[f"roadwork/{src.name}"]["sha256"]
    splits_json = tmp_path / "run" / "splits.json"
    write_splits(splits_json, "../data", files, NAMES, FRACTIONS, 0)
    with pytest.raises(DataError, match=r"Split leak .*sha256 .* is in both '(train|test)' and '(train|test)'"):
        load_splits(splits_json)
    by_path["roadwork/renamed_copy.png"]["split"] = "train"  # the same copy inside one split is no leak
    write_splits(splits_json, "../data", files, NAMES, FRACTIONS, 0)
    loaded = load_splits(splits_json)
    assert loaded.data_root == root.resolve() and len(loaded.rows("train")) == len(files)
    assert all(p.is_file() for p in loaded.paths("train"))


def test_planted_copies_of_synthetic_scenes_land_in_one_split_and_the_result_loads(make_cfg, tmp_path):
    root = synthetic_folder(tmp_path / "data", 40)
    src = sorted((root / "roadwork").glob("*.png"))[3]
    shutil.copy(src, root / "roadwork" / "exact_copy.png")
    Image.open(src).resize((120, 120)).save(root / "roadwork" / "near_copy.png")
    art = run_splits(make_cfg("pipeline.phases=[splits]", "data=folder", f"data.root={root}"))
    splits = load_splits(art.splits_json)  # verifies the digest and that no path or content is in two splits
    by_path = {f["path"]: f for f in splits.files}
    trio = [by_path[f"roadwork/{name}"] for name in (src.name, "exact_copy.png", "near_copy.png")]
    assert len({f["split"] for f in trio}) == 1 and len({f["group"] for f in trio}) == 1
    assert len(splits.files) == 42
    splits_per_sha = {}
    for f in splits.files:
        splits_per_sha.setdefault(f["sha256"], set()).add(f["split"])
    assert all(len(s) == 1 for s in splits_per_sha.values())


@pytest.mark.parametrize("n", range(5, 61))
def test_split_sizes_at_small_n_are_within_one_image_of_their_fraction(n):
    labels = [0] * n + [1] * (n + 3)  # unequal classes: each is stratified on its own
    assigned = assign_splits(labels, list(range(len(labels))), FRACTIONS, 0, NAMES)
    assert "" not in assigned
    for label, total in ((0, n), (1, n + 3)):
        counts = Counter(s for s, y in zip(assigned, labels) if y == label)
        assert sum(counts.values()) == total
        for split, fraction in FRACTIONS.items():
            assert abs(counts[split] - fraction * total) <= 1, (split, counts, total)


def test_split_sizes_at_48_images_are_the_nearest_counts():
    labels = [0] * 24 + [1] * 24
    counts = Counter(zip(assign_splits(labels, list(range(48)), FRACTIONS, 3, NAMES), labels))
    for label in (0, 1):
        assert [counts[(s, label)] for s in FRACTIONS] == [14, 4, 2, 4]  # 14.4, 3.6, 2.4, 3.6 per class


def test_duplicate_groups_are_never_split_and_every_split_gets_each_class():
    labels = [i % 2 for i in range(60)]
    groups = [i // 4 * 2 + i % 2 for i in range(60)]  # groups of 2 same-label files
    assigned = assign_splits(labels, groups, FRACTIONS, 1, NAMES)
    for g in set(groups):
        assert len({s for s, gg in zip(assigned, groups) if gg == g}) == 1
    assert {(s, y) for s, y in zip(assigned, labels)} == {(s, y) for s in FRACTIONS for y in (0, 1)}
    assert assigned == assign_splits(labels, groups, FRACTIONS, 1, NAMES)  # seeded
    assert assigned != assign_splits(labels, groups, FRACTIONS, 2, NAMES)


def test_a_zero_fraction_split_gets_nothing_and_a_group_takes_its_majority_label():
    labels = [1, 1, 0] + [0] * 10 + [1] * 10
    groups = [0, 0, 0] + list(range(1, 21))
    fractions = {"train": 0.7, "val_select": 0.3, "val_calib": 0.0, "test": 0.0}
    assigned = assign_splits(labels, groups, fractions, 0, NAMES)
    assert set(assigned) == {"train", "val_select"} and len(set(assigned[:3])) == 1
    stratum = [1] * 3 + labels[3:]  # group 0 (two roadwork, one not) is stratified as roadwork: 13 images
    counts = Counter(zip(assigned, stratum))
    assert (counts[("train", 0)], counts[("val_select", 0)]) == (7, 3)
    assert (counts[("train", 1)], counts[("val_select", 1)]) == (9, 4)  # 9.1 and 3.9


# -- the pieces of the splits phase, one by one (fast: no runner) ---------------------------------------------------

def scanned(name, label, sha, phash=0):
    from streetvision.data.sources import Sample
    from streetvision.data.splits import ScannedFile

    return ScannedFile(Sample(Path("/data") / name, label), sha, phash, 8, 8)


def test_scan_hashes_good_files_and_quarantines_bad_ones_with_path_label_and_reason(tmp_path):
    import imagehash

    from streetvision.data.sources import Sample
    from streetvision.data.splits import scan
    from streetvision.io import sha256_file

    root = synthetic_folder(tmp_path / "data", 2)
    good = sorted(root.rglob("*.png"))
    big = root / "roadwork" / "big.png"
    Image.new("RGB", (700, 500), (200, 120, 40)).save(big)
    (root / "no_roadwork" / "empty.png").write_bytes(b"")
    samples = [Sample(p, int(p.parent.name == "roadwork")) for p in [*good, big, root / "no_roadwork" / "empty.png"]]
    result = scan(samples, root, max_pixels=600 * 500)
    assert [f.sample.path for f in result.ok] == good
    assert all(f.sha256 == sha256_file(f.sample.path) for f in result.ok)
    thumb = Image.open(good[0]).convert("RGB")
    thumb.thumbnail((256, 256))
    assert result.ok[0].phash == int(str(imagehash.phash(thumb)), 16) and result.ok[0].width == 96
    assert result.quarantined == [
        {"path": "roadwork/big.png", "label": 1, "reason": "decompression bomb: more than 300000 pixels"},
        {"path": "no_roadwork/empty.png", "label": 0, "reason": "zero-byte file"}]
    assert len(scan(samples[-2:-1], root, max_pixels=10**8).ok) == 1  # the limit is the one passed in


def test_every_copy_of_an_image_under_two_labels_is_quarantined_naming_the_others():
    from streetvision.data.splits import ScanResult, quarantine_label_conflicts

    ok = [scanned("no_roadwork/a.png", 0, "X"), scanned("roadwork/b.png", 1, "X"), scanned("roadwork/c.png", 1, "X"),
          scanned("roadwork/d.png", 1, "Y"), scanned("no_roadwork/e.png", 0, "Z"), scanned("no_roadwork/f.png", 0, "Z")]
    result = ScanResult(ok=list(ok))
    conflicts = quarantine_label_conflicts(result, Path("/data"), NAMES)
    assert conflicts is result.conflicts
    assert conflicts == [
        {"path": "no_roadwork/a.png", "label": 0, "reason": "conflicting labels: the same image is also "
                                                            "roadwork/b.png (roadwork), roadwork/c.png (roadwork)"},
        {"path": "roadwork/b.png", "label": 1, "reason": "conflicting labels: the same image is also "
                                                         "no_roadwork/a.png (no_roadwork), roadwork/c.png (roadwork)"},
        {"path": "roadwork/c.png", "label": 1, "reason": "conflicting labels: the same image is also "
                                                         "no_roadwork/a.png (no_roadwork), roadwork/b.png (roadwork)"}]
    assert result.ok == ok[3:]  # same-label copies (e, f) are duplicates, not conflicts
    clean = ScanResult(ok=list(ok[3:]))
    assert quarantine_label_conflicts(clean, Path("/data"), NAMES) == [] and clean.ok == ok[3:]


def test_quality_checks_name_the_problem_and_the_fix():
    from streetvision.data.splits import ScanResult, check_quality

    with pytest.raises(DataError) as exc:
        check_quality(0, ScanResult(), NAMES, 0.05)
    assert (exc.value.message, exc.value.fix) == ("The data source contains no image files.",
                                                  "check data.source and its path.")
    check_quality(1, ScanResult(ok=[scanned("a.png", 0, "A")]), ["only"], 0.05)  # one file, one class: fine
    ok = [scanned("no_roadwork/a.png", 0, "A"), scanned("roadwork/b.png", 1, "B")]
    bad = [{"path": f"roadwork/x{i}.png", "label": 1, "reason": r} for i, r in
           enumerate(["corrupt: header", "zero-byte file", "corrupt: data", "unreadable: denied"])]
    check_quality(100, ScanResult(ok=ok, quarantined=bad[:1]), NAMES, 0.05)  # 1 % bad
    check_quality(20, ScanResult(ok=ok, quarantined=bad[:1]), NAMES, 0.05)  # exactly at the limit: allowed
    with pytest.raises(DataError) as exc:
        check_quality(16, ScanResult(ok=ok, quarantined=bad), NAMES, 0.2)
    assert exc.value.message == (
        "4 of 16 files (25%) could not be decoded, above data.max_bad_fraction=0.2, e.g. roadwork/x0.png, "
        "roadwork/x1.png, roadwork/x2.png. Reasons: corrupt; unreadable; zero-byte file.")
    assert exc.value.fix == ("fix or remove the files listed in data/data_report.json, or raise "
                             "data.max_bad_fraction.")
    with pytest.raises(DataError) as exc:
        check_quality(2, ScanResult(ok=[ok[0], scanned("no_roadwork/c.png", 0, "C")]), NAMES, 0.05)
    assert (exc.value.message, exc.value.fix) == ("Class 'roadwork' has no usable images.",
                                                  "add images of class 'roadwork'.")


def test_too_few_groups_names_the_class_the_splits_and_the_fix():
    with pytest.raises(DataError) as exc:
        assign_splits([0] * 9 + [1] * 3, list(range(12)), FRACTIONS, 0, NAMES)
    assert exc.value.message == ("Class 'roadwork' has 3 distinct image group(s) (after merging duplicates); the 4 "
                                 "requested splits (train, val_select, val_calib, test) need at least 4.")
    assert exc.value.fix == ("add distinct images of class 'roadwork' (each requested split needs one of every class; "
                             "near duplicates count once, see data.near_duplicate_distance).")


@pytest.mark.parametrize(("max_distance", "expected"), [(0, [0, 0, 1]), (1, [0, 0, 0]), (-1, [0, 1, 2])])
def test_near_duplicate_grouping_at_the_distance_boundary(max_distance, expected):
    assert group_duplicates(["a", "b", "c"], [0b1010, 0b1010, 0b1011], max_distance) == expected


def test_grouping_two_files_and_one_file():
    assert group_duplicates(["a", "b"], [5, 5], 0) == [0, 0]
    assert group_duplicates(["a"], [5], 4) == [0]
    assert group_duplicates(["a", "b", "a"], [0, 2**64 - 1, 2**63], -1) == [0, 1, 0]  # exact copies always


def test_written_splits_record_counts_fractions_seed_and_load_back_verified(tmp_path):
    files = [{"path": f"{c}/{i}.png", "label": k, "split": s, "sha256": f"{c}{i}", "group": i}
             for k, c in enumerate(NAMES) for i, s in enumerate(["train", "train", "test", "val_calib"])]
    files.append({"path": "roadwork/9.png", "label": 1, "split": "train", "sha256": "r9", "group": 9})
    path = tmp_path / "splits.json"
    write_splits(path, "../data", list(reversed(files)), NAMES, FRACTIONS, 11)
    raw = read_json(path)
    assert raw["version"] == 1 and raw["seed"] == 11 and raw["fractions"] == FRACTIONS and raw["data_root"] == "../data"
    assert raw["counts"] == {"train": {"no_roadwork": 2, "roadwork": 3}, "val_select": {"no_roadwork": 0, "roadwork": 0},
                             "val_calib": {"no_roadwork": 1, "roadwork": 1}, "test": {"no_roadwork": 1, "roadwork": 1}}
    assert [f["path"] for f in raw["files"]] == sorted(f["path"] for f in files)
    loaded = load_splits(path)
    assert loaded.class_names == NAMES and loaded.digest == raw["digest"] == files_digest(raw["files"])
    assert loaded.labels("test") == [0, 1] and loaded.rows("val_select") == [] and len(loaded.rows("train")) == 5
    with pytest.raises(ValueError, match="unknown split 'dev'; choose one of"):
        loaded.rows("dev")


def test_load_errors_name_the_file_and_the_fix(tmp_path):
    with pytest.raises(DataError) as exc:
        load_splits(tmp_path / "splits.json")
    assert exc.value.message == f"'{tmp_path / 'splits.json'}' does not exist."
    assert exc.value.fix.startswith("create it with the splits phase: streetvision run pipeline.phases=[splits] (the")
    assert exc.value.fix.endswith("phases that need it add it automatically).")
    files = [{"path": "a.png", "label": 0, "split": "train", "sha256": "A" * 64, "group": 0},
             {"path": "b.png", "label": 0, "split": "test", "sha256": "A" * 64, "group": 1}]
    write_splits(tmp_path / "splits.json", ".", files, NAMES, FRACTIONS, 0)
    with pytest.raises(DataError) as exc:
        load_splits(tmp_path / "splits.json")
    assert exc.value.message == (f"Split leak in '{tmp_path / 'splits.json'}': sha256 {'A' * 40} is in both 'train' "
                                 f"and 'test'.")
    assert exc.value.fix == "regenerate splits.json; do not edit it by hand."
    raw = read_json(tmp_path / "splits.json")
    raw["digest"] = "0" * 64
    (tmp_path / "splits.json").write_text(json.dumps(raw))
    with pytest.raises(DataError) as exc:
        load_splits(tmp_path / "splits.json")
    assert exc.value.fix == "regenerate it: streetvision run pipeline.phases=[splits] pipeline.force=true."


def test_exactly_one_group_per_split_is_enough():
    assigned = assign_splits([0] * 4 + [1] * 4, list(range(8)), FRACTIONS, 0, NAMES)
    assert sorted(assigned[:4]) == sorted(assigned[4:]) == sorted(FRACTIONS)


def test_a_near_duplicate_further_down_the_list_joins_the_right_group():
    assert group_duplicates(["a", "b", "c"], [0, 0xFF, 0], 0) == [0, 1, 0]


def _pairwise_groups(phashes: list[int], max_distance: int) -> list[int]:
    """The rule by definition: union every pair within the distance (the previous, quadratic implementation)."""
    n = len(phashes)
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    for i in range(n):
        for j in range(i + 1, n):
            if bin(phashes[i] ^ phashes[j]).count("1") <= max_distance:
                parent[max(find(i), find(j))] = min(find(i), find(j))
    roots = [find(i) for i in range(n)]
    remap = {r: k for k, r in enumerate(dict.fromkeys(roots))}
    return [remap[r] for r in roots]


def _planted(seed: int) -> list[int]:
    """Varied hashes, bursts of near-identical frames around a few bases, and chains drifting one bit per frame."""
    rng = np.random.default_rng(seed)

    def flip(h: int, k: int) -> int:
        for bit in rng.choice(64, size=k, replace=False):
            h ^= 1 << int(bit)
        return h

    hashes = [int(h) for h in rng.integers(0, 2**63, size=150, dtype=np.int64)]
    for base in rng.integers(0, 2**63, size=4, dtype=np.int64):
        hashes += [flip(int(base), int(rng.integers(0, 4))) for _ in range(40)]
    for base in rng.integers(0, 2**63, size=3, dtype=np.int64):
        chain = [int(base)]
        for _ in range(15):
            chain.append(flip(chain[-1], 1))
        hashes += chain
    return [hashes[i] for i in rng.permutation(len(hashes))]


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("max_distance", [0, 2, 4, 9])
def test_near_duplicate_groups_equal_the_pairwise_rule_on_planted_bursts(seed, max_distance):
    hashes = _planted(seed)
    assert group_duplicates([str(i) for i in range(len(hashes))], hashes, max_distance) == \
        _pairwise_groups(hashes, max_distance)


def test_scanning_in_worker_processes_gives_the_same_result(tmp_path, monkeypatch):
    from streetvision.data import splits as splits_module
    from streetvision.data.sources import Sample

    build_corpus(tmp_path / "d")  # good, corrupt, truncated, bomb, ... files
    samples = [Sample(p, i % 2) for i, p in enumerate(sorted((tmp_path / "d").rglob("*"))) if p.is_file()]
    serial = splits_module.scan(samples, tmp_path / "d", 50_000_000)
    monkeypatch.setattr(splits_module, "PARALLEL_FROM", 1)
    parallel = splits_module.scan(samples, tmp_path / "d", 50_000_000, workers=2)
    assert parallel.ok == serial.ok and parallel.quarantined == serial.quarantined
    assert serial.ok and serial.quarantined  # the corpus has both
