"""benchmarks/real_recipe.py's fold assignment (no training): on a small folder with planted exact and near
duplicates, the splits phase's grouping finds them, whole groups stay in one fold in every repeat, labels are
stratified across folds, and the assignment is seeded."""

import sys
from collections import Counter

import numpy as np
import pytest

from tests.benchmarks.conftest import benchmark_script
from PIL import Image



@pytest.fixture(scope="module")
def real_recipe():
    with benchmark_script("real_recipe") as module:
        yield module


def scene(seed: int) -> Image.Image:
    """A smooth random 96 px image (8 x 8 random colours, bilinear): distinct perceptual hashes per seed."""
    cells = np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    return Image.fromarray(cells).resize((96, 96), Image.BILINEAR)


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory):
    """18 no_roadwork and 9 roadwork originals; planted: 3 exact copies, 3 near duplicates (brightened, JPEG)
    and one triple, all within a class. Returns (root, planted sets of relative paths)."""
    root = tmp_path_factory.mktemp("photos")
    planted = []
    for label, name, n in ((0, "no_roadwork", 18), (1, "roadwork", 9)):
        (root / name).mkdir()
        for i in range(n):
            scene(1000 * label + i).save(root / name / f"img{i:02d}.png")
        for i in (0, 1, 2)[: 3 - label]:  # exact copies
            (root / name / f"copy{i:02d}.png").write_bytes((root / name / f"img{i:02d}.png").read_bytes())
            planted.append({f"{name}/img{i:02d}.png", f"{name}/copy{i:02d}.png"})
        for i in (3, 4, 5)[: 3 - label]:  # near duplicates: a little brighter, re-encoded as JPEG
            near = Image.eval(scene(1000 * label + i), lambda v: min(255, v + 6))
            near.save(root / name / f"near{i:02d}.jpg", quality=85)
            planted.append({f"{name}/img{i:02d}.png", f"{name}/near{i:02d}.jpg"})
    # a triple: the original, an exact copy and a near copy
    (root / "roadwork" / "trip_a.png").write_bytes((root / "roadwork" / "img08.png").read_bytes())
    Image.eval(scene(1008), lambda v: max(0, v - 6)).save(root / "roadwork" / "trip_b.jpg", quality=85)
    planted.append({"roadwork/img08.png", "roadwork/trip_a.png", "roadwork/trip_b.jpg"})
    return root, planted


def test_planted_duplicates_share_a_group_and_distinct_images_do_not(real_recipe, photo_folder):
    root, planted = photo_folder
    files = real_recipe.scan_groups(root)
    group = {f["path"]: f["group"] for f in files}
    assert len(files) == 27 + 5 + 5 + 2
    for members in planted:
        assert len({group[p] for p in members}) == 1, members
    assert len(set(group.values())) == 27  # every original is its own group


@pytest.mark.parametrize("k", [2, 3, 5])
def test_groups_never_straddle_folds_and_labels_are_stratified(real_recipe, photo_folder, k):
    root, _ = photo_folder
    files = real_recipe.scan_groups(root)
    labels = [f["label"] for f in files]
    groups = [f["group"] for f in files]
    sizes = Counter(groups)
    assignments = [real_recipe.assign_folds(labels, groups, k, [0, r]) for r in range(2)]
    for folds in assignments:
        assert set(folds) == set(range(k))
        for g in set(groups):  # a duplicate group lies in exactly one fold
            assert len({fo for fo, gg in zip(folds, groups) if gg == g}) == 1
        for label in (0, 1):
            counts = [sum(1 for fo, y in zip(folds, labels) if fo == f and y == label) for f in range(k)]
            largest = max(sizes[g] for g, y in zip(groups, labels) if y == label)
            assert min(counts) >= 1 and max(counts) - min(counts) <= largest, (label, counts)
            assert sum(counts) == labels.count(label)
    assert assignments[0] != assignments[1]  # each repeat has its own folds
    assert real_recipe.assign_folds(labels, groups, k, [0, 0]) == assignments[0]  # seeded


def test_a_class_with_fewer_groups_than_folds_is_refused(real_recipe):
    with pytest.raises(ValueError, match="label 1 has 2 duplicate group"):
        real_recipe.assign_folds([0, 0, 0, 1, 1, 1], [0, 1, 2, 3, 3, 4], 3, 0)


def test_the_fold_tree_links_every_training_photo_and_copies_nothing(real_recipe, photo_folder, tmp_path):
    root, _ = photo_folder
    rel = ["no_roadwork/img00.png", "roadwork/img01.png"]
    tree = real_recipe.link_tree(tmp_path / "tree", root, rel)
    linked = sorted(p.relative_to(tree).as_posix() for p in tree.rglob("*.png"))
    assert linked == sorted(rel)
    assert all((tree / r).is_symlink() and (tree / r).resolve() == (root / r).resolve() for r in rel)


def test_missing_data_exits_zero_with_a_message(real_recipe, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["real_recipe.py", "--data", str(tmp_path / "absent"), "--quick"])
    assert real_recipe.main() == 0
    assert "no photo set at" in capsys.readouterr().out


def test_every_recipe_composes_into_a_valid_config(real_recipe, tmp_path):
    """Each recipe's overrides (the shared backbone filled in) on top of the fold-run's pipeline overrides load and
    validate; the self-supervised recipes start from the shared backbone, and only ssl_synthetic_real pre-trains
    per fold-run (on the train split: never the held-out fold, which is not in the fold-run's data at all); the
    add-on recipes fine-tune the shared backbone too."""
    from streetvision.config import load_config

    shared = load_config([f"output_root={tmp_path}", *real_recipe.SHARED_PRETRAIN])
    assert list(shared.pipeline.phases) == ["pretrain"] and shared.pretrain.images.source == "synthetic"
    for name, recipe in real_recipe.RECIPES.items():
        overrides = [o.replace(real_recipe.PRETRAINED, str(tmp_path / "backbone")) for o in recipe]
        cfg = load_config([f"output_root={tmp_path}", f"data.root={tmp_path}", *real_recipe.PIPELINE, *overrides])
        assert cfg.training.optimizer_steps == (0 if name in ("preset", "validator_aug", "cls_mean") else 300), name
        assert (cfg.model.backbone == str(tmp_path / "backbone")) == name.startswith(("ssl_", "addon_")), name
        assert ("pretrain" in cfg.pipeline.phases) == (name == "ssl_synthetic_real"), name
        assert "evaluation" not in cfg.pipeline.phases and "phase6" in cfg.pipeline.phases
        if name == "ssl_synthetic_real":
            assert cfg.pretrain.images.source == "train_split" and cfg.pretrain.objective == "masked"


def _results(folds, rows, assignment=None):
    return {"data": {"photos": 10}, "design": {"folds": folds, "repeats": 1, "seeds": {"base": 0},
                                               "recipes": {r["recipe"]: [] for r in rows}},
            "fold_assignment": {"0": assignment or {"a.png": 0}}, "fold_runs": rows, "measured_at": "t",
            "notes": "n", "machine": {}, "versions": {}, "partial": False}


def _row(recipe, fold, value):
    return {"recipe": recipe, "repeat": 0, "fold": fold, "wall_s": 1.0, "reused_phases": [],
            **{m: value for m in real_recipe_headline()}, "clean_reward": value, "mix_reward": value}


def real_recipe_headline():
    with benchmark_script("real_recipe") as module:
        return module.HEADLINE


def test_merge_pairs_fold_runs_across_files_and_refuses_other_folds(real_recipe, tmp_path, monkeypatch):
    import json

    monkeypatch.setattr(real_recipe, "RESULTS", tmp_path)
    a = tmp_path / "a.json"
    b = tmp_path / "b.json"
    a.write_text(json.dumps(_results(2, [_row("base", 0, 0.5), _row("base", 1, 0.7)])))
    b.write_text(json.dumps(_results(2, [_row("new", 0, 0.6), _row("new", 1, 0.9), _row("base", 0, 0.0)])))
    assert real_recipe.merge([a, b], ["base", "new"], "merged", 200) == 0
    out = json.loads((tmp_path / "merged.json").read_text())
    assert len(out["fold_runs"]) == 4  # base's fold 0 from the first file, not the duplicate in the second
    diff = out["aggregate"]["new"]["vs_base"]["mix_mcc"]
    assert diff["n"] == 2 and abs(diff["mean_diff"] - 0.15) < 1e-9
    b.write_text(json.dumps(_results(2, [_row("new", 0, 0.6)], assignment={"a.png": 1})))
    with pytest.raises(SystemExit, match="other photos, seed or folds"):
        real_recipe.merge([a, b], None, "merged", 200)
