"""The crossfit phase on a micro backbone: out-of-fold logits cover train + val_select + val_calib once each and
never test, folds are stratified and keep duplicate groups whole, phase2 and phase5 fit on them when crossfit is
committed (and on val_select / val_calib otherwise), and a changed crossfit reruns phase2 and phase5."""

import csv
import json
import shutil
from collections import Counter

import pytest
from rich.console import Console

from streetvision.config import load_config
from streetvision.data.splits import load_splits
from streetvision.errors import ConfigError
from streetvision.eval.logits import read_logits
from streetvision.io import StepManifest
from streetvision.metrics.classification import softmax_probs
from streetvision.metrics.policy import Policy
from streetvision.metrics.thresholds import select_threshold
from streetvision.models.temperature import fit_temperature
from streetvision.pipeline.artifacts import ArtifactSchema
from streetvision.pipeline.phases.crossfit import FIT_SPLITS, OOF_SPLIT, fold_assignment
from streetvision.pipeline.runner import phases_to_run, plan, run_pipeline
from streetvision.validator.prior import prior_weights

QUIET = Console(quiet=True)
MICRO = ("model=dinov2_micro", "training.epochs=1", "training.batch_size=8", "training.progress_bar=false",
         "phase2.n_thresholds=500")
PLANTED = 4  # exact copies of train images, each beside its original


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """48 synthetic scenes as a folder dataset, plus exact copies of a few images (same duplicate group)."""
    from streetvision.data.synthetic import write_dataset

    root = tmp_path_factory.mktemp("photos")
    rows = write_dataset(root, n=48, size=64)
    for k, (path, _) in enumerate(rows[:PLANTED]):
        shutil.copy(path, path.with_name(f"copy{k}.png"))
    return root


@pytest.fixture(scope="module")
def run(photos, tmp_path_factory):
    """One run directory, built in three commands: phase1 + phase2 + phase5 without crossfit, then crossfit (3
    folds) added, then crossfit alone with 2 folds. Returns (config factory, artifacts, outcomes, JSON snapshots)."""
    out = tmp_path_factory.mktemp("outputs")

    def cfg(*overrides):
        return load_config([f"output_root={out}", "run_id=cf", "data=folder", f"data.root={photos}", *MICRO,
                            *overrides])

    art = ArtifactSchema.from_config(cfg())
    outcomes, snapshots = {}, {}
    for name, overrides in (("without", ["pipeline.phases=[phase1,phase2,phase5]"]),
                            ("with", ["pipeline.phases=[crossfit,phase1,phase2,phase5]", "crossfit.folds=3"])):
        outcomes[name] = {o.name: o.status for o in run_pipeline(cfg(*overrides), QUIET)}
        snapshots[name] = {"thresholds": json.loads(art.thresholds_json.read_text()),
                           "calibration": json.loads(art.calibration_metrics_json.read_text()),
                           "scrc": json.loads(art.scrcparams_json.read_text())}
    snapshots["oof_3_folds"] = art.crossfit_logits_csv.read_text()
    return cfg, art, outcomes, snapshots


def fit_rows(art):
    splits = load_splits(art.splits_json)
    return splits, [f for f in splits.files if f["split"] in FIT_SPLITS]


def test_out_of_fold_logits_cover_train_and_val_once_each_and_never_test(run):
    _, art, _, _ = run
    splits, rows = fit_rows(art)
    oof = read_logits(art.crossfit_logits_csv)
    assert oof.sample_ids == sorted(f["path"] for f in rows)  # each once, in splits.json's order
    assert oof.labels.tolist() == [f["label"] for f in sorted(rows, key=lambda f: f["path"])]
    assert not {f["path"] for f in splits.rows("test")} & set(oof.sample_ids) and splits.rows("test")
    assert oof.logits.shape == (len(rows), 2) and oof.class_names == splits.class_names
    metrics = json.loads(art.metrics_json("crossfit").read_text())
    assert [f["train_images"] + f["held_out_images"] for f in metrics["per_fold"]] == [len(rows)] * 3
    assert StepManifest.load(art.manifest("crossfit")).verify(art.run_dir) == []


def test_folds_are_stratified_and_duplicate_groups_never_straddle_folds(run):
    _, art, _, _ = run
    with open(art.crossfit_folds_csv, newline="") as handle:
        folds = list(csv.DictReader(handle))
    by_group: dict[str, set[str]] = {}
    for row in folds:
        by_group.setdefault(row["group"], set()).add(row["fold"])
    planted = [g for g, n in Counter(r["group"] for r in folds).items() if n > 1]
    assert len(planted) >= PLANTED  # each copy grouped with its original (none of them in test, with this seed)
    assert all(len(f) == 1 for f in by_group.values())
    for label in ("0", "1"):
        counts = Counter(r["fold"] for r in folds if r["label"] == label)
        assert sorted(counts) == ["0", "1", "2"] and max(counts.values()) - min(counts.values()) <= 2, counts


def test_the_fold_assignment_is_seeded(run):
    _, art, _, _ = run
    splits = load_splits(art.splits_json)
    first = fold_assignment(splits, 3, 0)
    assert fold_assignment(splits, 3, 0) == first and fold_assignment(splits, 3, 1) != first


def test_phase2_and_phase5_fit_on_val_select_and_val_calib_without_crossfit(run):
    _, art, outcomes, snapshots = run
    assert outcomes["without"] == {"splits": "ran", "phase1": "ran", "phase2": "ran", "phase5": "ran"}
    splits = load_splits(art.splits_json)
    thresholds, calibration = snapshots["without"]["thresholds"], snapshots["without"]["calibration"]
    assert thresholds["split"] == "val_select"
    assert thresholds["metrics_at_best_data_prior"]["n"] == len(splits.rows("val_select"))
    assert calibration["fitted_on"] == "val_calib"
    assert calibration["pre_calibration"]["n"] == len(splits.rows("val_calib"))
    assert snapshots["without"]["scrc"]["scrc_params"]["threshold_source"].startswith("phase2 (val_select)")


def test_phase2_and_phase5_fit_on_the_out_of_fold_logits_when_crossfit_is_committed(run):
    _, art, outcomes, snapshots = run
    assert list(outcomes["with"].items()) == [("phase1", "up to date"), ("crossfit", "ran"), ("phase2", "ran"),
                                              ("phase5", "ran")]  # crossfit after phase1: it needs its kept epoch
    _, rows = fit_rows(art)
    oof = read_logits(art.crossfit_logits_csv)
    thresholds, calibration, scrc = (snapshots["with"][k] for k in ("thresholds", "calibration", "scrc"))
    assert thresholds["split"] == OOF_SPLIT and thresholds["metrics_at_best_data_prior"]["n"] == len(rows)
    best, _ = select_threshold(oof.labels, softmax_probs(oof.logits), "mcc", 500, 0.05,
                               prior_weights(oof.labels, 0.5))
    assert thresholds["thresholds"]["best"] == best
    assert calibration["fitted_on"] == OOF_SPLIT
    assert calibration["pre_calibration"]["n"] == len(rows)
    assert scrc["scrc_params"]["temperature"] == fit_temperature(oof.logits, oof.labels)
    assert scrc["scrc_params"]["threshold_source"].startswith(f"phase2 ({OOF_SPLIT})")
    assert f"{OOF_SPLIT}_coverage" in scrc["scrc_params"]["selective"]
    assert Policy.from_json(thresholds).decision_threshold == best  # the policy readers read both files as before
    assert Policy.from_json(scrc).temperature == scrc["scrc_params"]["temperature"]


def test_a_changed_crossfit_reruns_phase2_and_phase5_and_not_phase1(run):
    cfg, art, _, snapshots = run
    downstream = ["pipeline.phases=[phase1,phase2,phase5]"]
    assert phases_to_run(cfg(*downstream), art, plan(cfg(*downstream), art)) == []
    changed = ["pipeline.phases=[crossfit,phase1,phase2,phase5]", "crossfit.folds=2"]
    assert [s.name for s in phases_to_run(cfg(*changed), art, plan(cfg(*changed), art))] == [
        "crossfit", "phase2", "phase5"]  # in one command: downstream of a phase that runs
    assert [(o.name, o.status) for o in run_pipeline(cfg("pipeline.phases=[crossfit]", "crossfit.folds=2"),
                                                      QUIET)] == [("crossfit", "ran")]
    assert art.crossfit_logits_csv.read_text() != snapshots["oof_3_folds"]
    # in a later command: their recorded inputs (crossfit's outputs) changed
    assert [s.name for s in phases_to_run(cfg(*downstream), art, plan(cfg(*downstream), art))] == [
        "phase2", "phase5"]


def curve_epochs(path) -> list[int]:
    with open(path, newline="") as handle:
        return [int(row["epoch"]) for row in csv.DictReader(handle)]


@pytest.mark.parametrize("finetune", ["lora", "frozen"])
def test_fold_models_stop_after_the_epoch_phase1_kept_on_phase1s_schedule(make_cfg, finetune):
    """Each fold model trains phase1's schedule (same budget, so the same learning rates epoch by epoch) and stops
    after the epoch phase1 kept on val_select, whichever it is (stopping before the budget's end: the next test);
    model.finetune=frozen: the head on cached embeddings alike."""
    cfg = make_cfg(*MICRO, "data.synthetic.n=40", "data.synthetic.image_size=64", f"model.finetune={finetune}",
                   "training.epochs=4", "phase1.frozen_epochs=4", "crossfit.folds=2",
                   "pipeline.phases=[phase1,crossfit]")
    art = ArtifactSchema.from_config(cfg)
    run_pipeline(cfg, QUIET)
    kept = json.loads(art.metrics_json("phase1").read_text())["best_epoch"]
    metrics = json.loads(art.metrics_json("crossfit").read_text())
    assert metrics["finetune"] == finetune and metrics["phase1_kept_epoch"] == kept
    assert [f["kept_epoch"] for f in metrics["per_fold"]] == [kept, kept]
    assert [f["trained_epochs"] for f in metrics["per_fold"]] == [kept + 1] * 2
    assert [f["epochs"] for f in metrics["per_fold"]] == [4, 4]  # the schedule's length: phase1's budget
    assert all(curve_epochs(art.crossfit_curve_csv(k)) == list(range(kept + 1)) for k in range(2))
    assert len(read_logits(art.crossfit_logits_csv).sample_ids) == metrics["images"] == len(fit_rows(art)[1])


def test_a_fold_stopping_early_follows_the_full_schedules_learning_rates(make_cfg, tmp_path):
    """Stopping after epoch e trains the first e + 1 epochs of the full schedule: the same learning rate at each
    step as the full run (not a schedule squeezed into e + 1 epochs)."""
    from streetvision.models.devices import resolve_devices
    from streetvision.pipeline.phases.phase1 import FitTarget, build_model, train_model

    cfg = make_cfg(*MICRO, "data.synthetic.n=24", "data.synthetic.image_size=64", "training.epochs=3",
                   "pipeline.phases=[splits]")
    run_pipeline(cfg, QUIET)
    splits = load_splits(ArtifactSchema.from_config(cfg).splits_json)
    curves, infos = {}, {}
    for stop in (None, 0):
        target = FitTarget(tmp_path / f"curve{stop}.csv", tmp_path, tmp_path / "cache", val_split=None,
                           stop_epoch=stop)
        _, infos[stop] = train_model(cfg, build_model(cfg, cfg.model.backbone, splits.class_names), splits,
                                     resolve_devices(cfg.hardware), target)
        with open(target.curve_csv, newline="") as handle:
            curves[stop] = [(int(r["epoch"]), float(r["lr"])) for r in csv.DictReader(handle)]
    assert (infos[None]["epochs"], infos[None]["trained_epochs"]) == (3, 3) and len(curves[None]) == 3
    assert (infos[0]["epochs"], infos[0]["trained_epochs"], infos[0]["best_epoch"]) == (3, 1, 0)
    assert curves[0] == curves[None][:1]  # epoch 0 ends at the full schedule's learning rate
    assert curves[None][0][1] != curves[None][-1][1]  # the schedule does change the rate


def test_too_many_folds_or_fewer_than_two_are_clear_config_errors(make_cfg):
    with pytest.raises(ConfigError, match=r"crossfit.folds.*must be >= 2"):
        make_cfg("crossfit.folds=1")
    cfg = make_cfg(*MICRO, "data.synthetic.n=24", "data.synthetic.image_size=64", "crossfit.folds=12",
                   "pipeline.phases=[phase1,crossfit]")
    with pytest.raises(ConfigError, match=r"crossfit.folds=12: not every fold can hold every class") as exc:
        run_pipeline(cfg, QUIET)
    assert "at most the number of distinct images of the smallest class" in exc.value.fix
