"""Which training recipe generalises on real street photos? Repeated stratified group cross-validation on
``../shared/data/roadwork_real`` (issue 17).

Folds: every photo is decoded and hashed once with the splits phase's own functions (``streetvision.data.splits``:
``scan``, ``quarantine_label_conflicts``, ``group_duplicates`` at ``data.near_duplicate_distance``), so exact and
near duplicates form one group; whole groups go to K folds (``streetvision.data.splits.assign_folds``, which the
crossfit phase uses too), stratified by label (each group in its majority label's stratum, largest first, to the
fold with the fewest images of that label; ties by a seeded order), once per repeat with its own seed. A fold's
images are never in two folds, so no duplicate straddles train and test.

Fold-run: the held-out fold is the test set and is never shown to the pipeline. The other folds are linked
(symlinks, nothing copied) into a temporary one-folder-per-class tree and run through the real pipeline
(``streetvision.pipeline.runner.run_pipeline``, like ``phase1_recipe.py``): ``data=folder``, the splits phase splits
them (groups intact) into train / val_select at the pipeline's default 0.6 : 0.15 ratio, then phase1, phase2
(threshold on val_select at ``deploy.prior_roadwork=0.5``) and phase6 (the bundle). No val_calib and no phase5:
temperature scaling is monotone and phase5 only re-expresses phase2's threshold on calibrated probabilities, so it
changes none of the metrics below (AUROC, and decisions at the threshold), and on ~180 photos the ~10 % it would
hold out is better spent on training. One model per fold-run, selected and thresholded on its own val_select, as
a user training on their own photos would deploy it; except in ``small_data_crossfit``, which adds the crossfit
phase (``crossfit.folds`` models by the same recipe on folds of the fold-run's train + val_select, each stopped after
the epoch phase1 kept), so phase2 sweeps the threshold on those out-of-fold logits instead of val_select. When
``steps300`` (the same training) is in the same invocation, ``small_data_crossfit`` starts from a copy of its run
directory (``SHARES_RUN``; a copy, not the directory itself: a committed crossfit would change steps300's threshold
on a resumed run): phase1 is up to date and reused, so the two differ only in the threshold (paired exactly; AUROC
identical), and the crossfit fold-run's ``wall_s`` adds the reused phases' seconds from the steps300 run.

Each bundle is then scored through the Predictor on the held-out fold (``streetvision.eval.evaluate``, as the
evaluation phase does): ``clean`` and ``validator_mix`` (each image through ``streetvision.validator.challenges`` at a
level 0-3 drawn with the validator's probabilities, JPEG wire included, seeded per image; the same draws for every
recipe of a fold-run), AUROC, MCC and accuracy at the 50/50 deployment prior. Aggregates per recipe over fold-runs:
mean, SD, a percentile bootstrap interval of the mean, and the paired difference to the first recipe (same folds,
same seeds, same challenges). Fold-runs share training images, so these intervals are optimistic (Nadeau & Bengio
2003); the corrected resampled-t interval of each difference is reported beside the bootstrap one.

    .venv/bin/python benchmarks/real_recipe.py --quick          # 2 folds x 1 repeat, 1 recipe, micro model, 1 epoch
    .venv/bin/python benchmarks/real_recipe.py --recipes steps300 small_data_crossfit   # is the OOF threshold better?
    .venv/bin/python benchmarks/real_recipe.py --recipes steps300 ssl_synthetic ssl_synthetic_real  # does SSL help?
    .venv/bin/python benchmarks/real_recipe.py                  # 5 folds x 2 repeats x every recipe (~1.5 h, 2 cores)
    .venv/bin/python benchmarks/real_recipe.py --recipes preset validator_aug cls_mean steps300 --workdir runs_cv
    .venv/bin/python benchmarks/real_recipe.py --recipes steps300_validator_aug family_convnextv2_atto \
        family_resnet18 family_efficientnet_b0 --folds 5 --repeats 1 --name real_recipe_families --workdir runs_fam

Backbone families: ``family_<preset>`` is ``steps300_validator_aug`` with ``model=<preset>`` (vit_tiny, deit_tiny,
swin_tiny, siglip_tiny, convnextv2_atto, resnet18, efficientnet_b0: random-weight CPU presets at 112 px, pooled as
each family's *ForImageClassification pools); ``steps300_validator_aug`` (dinov2_tiny, max pooling) is the paired
baseline when listed first.

Cost on 2 cores, measured (median wall time of one fold-run, pipeline + evaluation, in the first pass of the run
behind benchmarks/results/real_recipe.json, whose final pass resumed every training): preset 12 s, validator_aug
17 s, cls_mean 13 s, steps300 117 s, small_data_crossfit 162 s (steps300's phase1 reused, fold models up to its kept
epoch), steps300_validator_aug 162 s, ssl_synthetic 109 s and ssl_synthetic_real 185 s, after one shared
pre-training of 148 s: about 86 minutes for all 8 recipes x 10 fold-runs. ``--max-fold-runs 1`` is a timing probe;
``--workdir`` makes a run resumable.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine_facts, print_table  # noqa: E402

from streetvision.config import CHOICES, DataConfig  # noqa: E402
from streetvision.data.sources import list_folder  # noqa: E402
from streetvision.data.splits import assign_folds, group_duplicates, quarantine_label_conflicts, scan  # noqa: E402
from streetvision.io import atomic_write_json  # noqa: E402
from streetvision.io.manifest import library_versions, utc_now  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "roadwork_real"
RESULTS = Path(__file__).resolve().parent / "results"
CLASS_NAMES = ["no_roadwork", "roadwork"]
PRIOR = 0.5  # deploy.prior_roadwork: the validator draws roadwork / no roadwork 50/50

# Named recipes: Hydra overrides on top of the default preset (model=dinov2_tiny: from random weights, max
# pooling, 5 epochs, no augmentation). The default preset was sized on 3,200 synthetic scenes: 1,920 train images
# / 32 = 60 steps x 5 epochs = 300 optimizer steps; on ~140 training photos the same preset takes ~25 steps.
# steps300 is the training=small_data preset: the preset's 300 steps (training.optimizer_steps) whatever the data
# size, without early stopping (the default preset never stops early either: patience 5 of 5 epochs); the best
# val_select epoch is still kept.
# small_data_crossfit: steps300 plus the crossfit phase, so the threshold comes from out-of-fold logits of train +
# val_select (crossfit.folds models by the same recipe) instead of val_select alone.
STEPS = ["training=small_data"]
PHASES = ["phase1", "phase2", "phase6"]
RECIPES: dict[str, list[str]] = {
    "preset": [],
    "validator_aug": ["training.augment=validator"],
    "cls_mean": ["model.pooling=cls_mean"],
    "steps300": STEPS,
    "steps300_validator_aug": [*STEPS, "training.augment=validator"],
    "small_data_crossfit": [*STEPS, f"pipeline.phases=[{','.join(['crossfit', *PHASES])}]"],
}
# Self-supervised pre-training, then steps300's fine-tuning (part 1's objective: masked image modelling, which beat
# DINO in its diagnostics). ``{pretrained}`` is one backbone pre-trained once per invocation (SHARED_PRETRAIN, in
# --workdir/.../runs/shared_pretrain) on 1,500 unlabelled synthetic source scenes: no real photo, so every fold-run
# may start from it without leaking. ssl_synthetic fine-tunes it directly; ssl_synthetic_real first continues the
# same self-supervision on the fold-run's own training photos (the pretrain phase on the train split, labels unused;
# never the held-out fold), as a miner would on their unlabelled photos.
SSL = ["pretrain.objective=masked", "pretrain.batch_size=32", "pretrain.lr=5e-4", "pretrain.mask_ratio=0.5"]
SHARED_PRETRAIN = [*SSL, "pipeline.phases=[pretrain]", "pretrain.images.source=synthetic", "pretrain.images.n=1500",
                   "pretrain.max_steps=400", "training.progress_bar=false"]
PRETRAINED = "{pretrained}"
RECIPES.update({
    "ssl_synthetic": [*STEPS, f"model.backbone={PRETRAINED}"],
    "ssl_synthetic_real": [*STEPS, f"model.backbone={PRETRAINED}", *SSL, "pretrain.images.source=train_split",
                           "pretrain.max_steps=200", f"pipeline.phases=[{','.join(['pretrain', *PHASES])}]"],
})
# One recipe per backbone family: steps300_validator_aug with another family's CPU preset (configs/model/: random
# weights, 112 px, pooling=family, the tiny DINOv2 preset's training keys). steps300_validator_aug itself is
# the dinov2_tiny member (max pooling) and the paired baseline: put it first.
FAMILY_PRESETS = ("vit_tiny", "deit_tiny", "swin_tiny", "siglip_tiny", "convnextv2_atto", "resnet18",
                  "efficientnet_b0")
RECIPES.update({f"family_{preset}": [*STEPS, "training.augment=validator", f"model={preset}"]
                for preset in FAMILY_PRESETS})
# The seed's add-ons (benchmarks/addons.py): fine-tuning the shared self-supervised backbone (ssl_synthetic's start)
# with validator augmentation, by each PEFT adapter (model.finetune=lora), by model.adapter=auto, and fully with
# AdamW or PROFIT. addon_lora and addon_full_adamw are the baselines of the paired differences.
ADDON_ADAPTERS = ("lora", "dora", "lokr", "loha", "adalora", "doran", "auto")
ADDON_BASE = [*STEPS, "training.augment=validator", f"model.backbone={PRETRAINED}"]
RECIPES.update({f"addon_{a}": [*ADDON_BASE, "model.finetune=lora", f"model.adapter={a}"] for a in ADDON_ADAPTERS})
RECIPES.update({f"addon_full_{o}": [*ADDON_BASE, f"training.optimizer={o}"] for o in ("adamw", "profit")})
# The dashcam camera effects (training.camera, data/camera.py) on the real photos: family_<preset>_camera adds every
# effect at the default training.camera_prob to that family's recipe (pair it with family_<preset>).
CAMERA = f"training.camera=[{','.join(CHOICES['training.camera'])}]"
RECIPES.update({f"family_{preset}_camera": [*RECIPES[f"family_{preset}"], CAMERA] for preset in FAMILY_PRESETS})
DEFAULT_RECIPES = [r for r in RECIPES if not r.startswith(("family_", "addon_"))]  # no --recipes: the 8-recipe study
# recipe -> the recipe whose run directory it starts from (copied) when both run (the same phase1 config).
SHARES_RUN = {"small_data_crossfit": "steps300"}
# Every fold-run: the fold's training images through splits -> phase1 -> phase2 -> phase6.
PIPELINE = ["data=folder", "data.splits.train=0.8", "data.splits.val_select=0.2", "data.splits.val_calib=0",
            "data.splits.test=0", f"pipeline.phases=[{','.join(PHASES)}]", "phase1.score_splits=[val_select]",
            "phase6.onnx=false", f"deploy.prior_roadwork={PRIOR}", "training.progress_bar=false"]
# A smoke run: the micro model for one epoch whatever the recipe's step budget, 2 crossfit folds.
QUICK = ["model=dinov2_micro", "training.epochs=1", "training.optimizer_steps=0", "crossfit.folds=2",
         "pretrain.max_steps=2", "pretrain.images.n=16"]
CONDITIONS = {"clean": "clean", "validator_mix": "mix"}
METRICS = {"auroc": "auroc", "mcc_deploy": "mcc", "accuracy_deploy": "acc"}  # evaluate.condition_metrics keys
HEADLINE = [f"{short}_{m}" for short in CONDITIONS.values() for m in METRICS.values()]


# ---------------------------------------------------------------- folds


def scan_groups(root: Path, max_distance: int | None = None) -> list[dict[str, Any]]:
    """Every usable photo under ``root`` (one folder per class) as ``{path, label, sha256, group}``: decoded and
    hashed by the splits phase's ``scan``, label conflicts dropped as it drops them, duplicate groups from its
    ``group_duplicates`` (at ``data.near_duplicate_distance`` unless ``max_distance`` is given)."""
    defaults = DataConfig()
    distance = defaults.near_duplicate_distance if max_distance is None else max_distance
    listing = list_folder(root, CLASS_NAMES)
    result = scan(listing.samples, listing.root, defaults.max_image_pixels)
    quarantine_label_conflicts(result, listing.root, CLASS_NAMES)
    groups = group_duplicates([f.sha256 for f in result.ok], [f.phash for f in result.ok], distance)
    return [{"path": Path(f.sample.path).relative_to(listing.root).as_posix(), "label": int(f.sample.label),
             "sha256": f.sha256, "group": int(g)} for f, g in zip(result.ok, groups)]


def link_tree(dest: Path, root: Path, rel_paths: list[str]) -> Path:
    """A one-folder-per-class tree of symlinks to ``root / rel`` (nothing copied); returns ``dest``."""
    for rel in rel_paths:
        link = dest / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink():  # a kept --workdir: the same fold again
            link.unlink()
        link.symlink_to((root / rel).resolve())
    for name in CLASS_NAMES:
        (dest / name).mkdir(parents=True, exist_ok=True)
    return dest


# ---------------------------------------------------------------- one fold-run


def run_dir(workdir: Path, run_id: str) -> Path:
    """The pipeline's run directory for ``run_id`` under ``workdir``."""
    from streetvision.config import load_config
    from streetvision.pipeline.artifacts import ArtifactSchema

    return ArtifactSchema.from_config(load_config([f"output_root={workdir}", f"run_id={run_id}"])).run_dir


def copy_run(workdir: Path, source_id: str, run_id: str) -> None:
    """Start ``run_id`` from a copy of ``source_id``'s run directory (its committed phases stay up to date: the
    manifests hold paths relative to the run directory); kept as is when it exists (a resumed --workdir)."""
    src, dst = run_dir(workdir, source_id), run_dir(workdir, run_id)
    if not dst.exists():
        shutil.copytree(src, dst, symlinks=True)


def shared_pretrain(workdir: Path, extra: list[str], seed: int) -> Path:
    """The self-supervised recipes' starting backbone: the pretrain phase once on synthetic scenes (no real photo;
    up to date on a resumed --workdir); returns its backbone directory."""
    from rich.console import Console

    from streetvision.config import load_config
    from streetvision.pipeline.artifacts import ArtifactSchema
    from streetvision.pipeline.runner import run_pipeline

    cfg = load_config([f"output_root={workdir}", "run_id=shared_pretrain", f"seed={seed}", *SHARED_PRETRAIN,
                       *extra])
    start = time.perf_counter()
    run_pipeline(cfg, Console(quiet=True))
    print(f"shared self-supervised backbone ({' '.join(SHARED_PRETRAIN)}): {time.perf_counter() - start:.0f}s",
          flush=True)
    return ArtifactSchema.from_config(cfg).pretrain_backbone_dir


def evaluate_bundle(bundle: Path, images: list, labels: np.ndarray, paths: list[Path], seed: int) -> dict[str, float]:
    """AUROC, MCC and accuracy at the 50/50 prior of a bundle on held-out images, clean and under the validator
    mix (the evaluation phase's code: Predictor, validator challenges seeded per image)."""
    from streetvision import Predictor
    from streetvision.eval.evaluate import condition_metrics, predict_conditions

    predictions, _ = predict_conditions(Predictor.from_bundle(bundle), images, labels, seed, paths)
    out: dict[str, float] = {}
    for condition, short in CONDITIONS.items():
        m = condition_metrics(predictions[condition], PRIOR)
        for key, name in METRICS.items():
            out[f"{short}_{name}"] = float(m[key])
        out[f"{short}_reward"] = float(m["reward_deploy"])
    return out


def fold_run(workdir: Path, run_id: str, data_root: Path, recipe: list[str], extra: list[str], seed: int,
             test: tuple[list, np.ndarray, list[Path]], test_sha: set[str], keep: bool) -> dict[str, Any]:
    """One recipe on one fold: the pipeline on the fold's training tree (``seed`` for training and the inner
    split), then the bundle on the held-out fold (``seed`` for the challenges); the run directory is removed
    unless ``keep``."""
    from rich.console import Console

    from streetvision.config import load_config
    from streetvision.data.splits import load_splits
    from streetvision.io import read_json
    from streetvision.metrics.policy import THRESHOLD, Policy, threshold_split
    from streetvision.pipeline.artifacts import ArtifactSchema
    from streetvision.pipeline.runner import run_pipeline

    cfg = load_config([f"output_root={workdir}", f"run_id={run_id}", f"seed={seed}", f"data.root={data_root}",
                       f"data.split_seed={seed}", *PIPELINE, *recipe, *extra])
    start = time.perf_counter()
    outcomes = run_pipeline(cfg, Console(quiet=True))
    art = ArtifactSchema.from_config(cfg)
    splits = load_splits(art.splits_json)
    leaked = test_sha & {f["sha256"] for f in splits.files}
    if leaked:
        raise RuntimeError(f"{len(leaked)} held-out image(s) reached the pipeline of {run_id}")
    images, labels, paths = test
    metrics = evaluate_bundle(art.bundle_dir, images, labels, paths, seed)
    wall = time.perf_counter() - start
    p1 = read_json(art.metrics_json("phase1"))
    threshold = Policy.from_file(art.thresholds_json, THRESHOLD).decision_threshold
    fitted_on = threshold_split(art.thresholds_json)  # val_select, or crossfit_oof (small_data_crossfit)
    n_fit = read_json(art.thresholds_json)["metrics_at_best_data_prior"]["n"]
    n_train, n_val = len(splits.rows("train")), len(splits.rows("val_select"))
    if not keep:
        shutil.rmtree(art.run_dir, ignore_errors=True)
    return {**metrics, "wall_s": wall, "train_s": p1["train_seconds"], "epochs": p1.get("epochs"),
            "optimizer_steps": p1.get("optimizer_steps"), "best_epoch": p1["best_epoch"],
            "threshold": threshold, "threshold_split": fitted_on, "threshold_images": n_fit,
            "n_train": n_train, "n_val_select": n_val,
            "val_select_mcc": p1["splits"]["val_select"]["mcc"],
            "phase_s": {o.name: round(o.seconds, 2) for o in outcomes}, "evaluation_s": wall - sum(
                o.seconds for o in outcomes), "reused_phases": [o.name for o in outcomes if o.status != "ran"]}


# ---------------------------------------------------------------- aggregation


def bootstrap_mean_ci(values: list[float], n_resamples: int, seed: Any) -> tuple[float, float]:
    """95 % percentile bootstrap interval of the mean (values resampled with replacement)."""
    x = np.asarray(values, dtype=float)
    if len(x) < 2:
        return float(x.mean()), float(x.mean())
    idx = np.random.default_rng(seed).integers(0, len(x), size=(n_resamples, len(x)))
    means = x[idx].mean(axis=1)
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def corrected_t_ci(diffs: list[float], test_train_ratio: float) -> tuple[float, float]:
    """95 % corrected resampled-t interval of a mean paired difference over CV fold-runs (Nadeau & Bengio 2003):
    the variance is inflated by ``1/J + n_test/n_train`` for the overlap of the training sets."""
    from scipy.stats import t

    x = np.asarray(diffs, dtype=float)
    if len(x) < 2:
        return float(x.mean()), float(x.mean())
    half = t.ppf(0.975, len(x) - 1) * math.sqrt((1 / len(x) + test_train_ratio) * x.var(ddof=1))
    return float(x.mean() - half), float(x.mean() + half)


def aggregate(rows: list[dict[str, Any]], recipes: list[str], n_resamples: int, seed: int,
              test_train_ratio: float) -> dict[str, Any]:
    """Per recipe and metric: mean, SD, bootstrap interval; paired differences to ``recipes[0]`` per fold-run."""
    out: dict[str, Any] = {}
    base = {(r["repeat"], r["fold"]): r for r in rows if r["recipe"] == recipes[0]}
    for k, recipe in enumerate(recipes):
        mine = [r for r in rows if r["recipe"] == recipe]
        if not mine:
            continue
        entry: dict[str, Any] = {"fold_runs": len(mine), "metrics": {}, "vs_" + recipes[0]: {}}
        for j, m in enumerate([*HEADLINE, "clean_reward", "mix_reward", "wall_s"]):
            timed = [r for r in mine if not r.get("reused_phases")]  # a resumed run's wall time is no timing
            vals = [r[m] for r in (timed if m == "wall_s" else mine) if not math.isnan(r[m])]
            if not vals:
                continue
            lo, hi = bootstrap_mean_ci(vals, n_resamples, [seed, k, j])
            entry["metrics"][m] = {"mean": statistics.mean(vals), "sd": statistics.stdev(vals) if len(vals) > 1
                                   else 0.0, "ci95": [lo, hi], "n": len(vals)}
            pairs = [(r[m], base[(r["repeat"], r["fold"])][m]) for r in mine if (r["repeat"], r["fold"]) in base]
            diffs = [a - b for a, b in pairs if not math.isnan(a - b)]
            if k and m != "wall_s" and diffs:
                entry["vs_" + recipes[0]][m] = {
                    "mean_diff": statistics.mean(diffs),
                    "bootstrap_ci95": list(bootstrap_mean_ci(diffs, n_resamples, [seed, k, j, 1])),
                    "corrected_t_ci95": list(corrected_t_ci(diffs, test_train_ratio)),
                    "share_better": sum(d > 0 for d in diffs) / len(diffs), "n": len(diffs)}
        out[recipe] = entry
    return out


def table_rows(agg: dict[str, Any], recipes: list[str]) -> list[dict[str, Any]]:
    """One printable row per recipe: mean [95 % bootstrap interval] of the headline metrics, and wall time."""
    rows = []
    for recipe in recipes:
        if recipe not in agg:
            continue
        metrics = agg[recipe]["metrics"]
        row: dict[str, Any] = {"recipe": recipe, "fold_runs": agg[recipe]["fold_runs"]}
        for m in HEADLINE:
            if m in metrics:
                s = metrics[m]
                row[m] = f"{s['mean']:.3f} [{s['ci95'][0]:.3f}, {s['ci95'][1]:.3f}]"
        row["wall_s"] = f"{metrics['wall_s']['mean']:.0f}" if "wall_s" in metrics else "-"
        diff = agg[recipe].get("vs_" + recipes[0], {}).get("mix_mcc")
        row["d_mix_mcc_vs_" + recipes[0]] = (f"{diff['mean_diff']:+.3f} [{diff['corrected_t_ci95'][0]:+.3f}, "
                                             f"{diff['corrected_t_ci95'][1]:+.3f}]") if diff else "-"
        rows.append(row)
    return rows


# ---------------------------------------------------------------- main


def merge(paths: list[Path], recipes: list[str] | None, name: str, n_resamples: int) -> int:
    """Fold-runs of several results files as one: they must share the photos, the base seed and, for every
    repeat they share, the fold assignment (so the same fold-run is the same training and test images)."""
    from streetvision.io import read_json

    docs = [read_json(p) for p in paths]
    first = docs[0]
    for path, doc in zip(paths[1:], docs[1:]):
        same = doc["data"]["photos"] == first["data"]["photos"] and (
            doc["design"]["seeds"]["base"] == first["design"]["seeds"]["base"]) and (
            doc["design"]["folds"] == first["design"]["folds"])
        shared = set(doc["fold_assignment"]) & set(first["fold_assignment"])
        if not same or any(doc["fold_assignment"][r] != first["fold_assignment"][r] for r in shared):
            raise SystemExit(f"real_recipe --merge: {path} has other photos, seed or folds than {paths[0]}")
    rows: dict[tuple, dict[str, Any]] = {}
    for doc in docs:
        for row in doc["fold_runs"]:
            rows.setdefault((row["recipe"], row["repeat"], row["fold"]), row)
    order = recipes or list(dict.fromkeys(r[0] for r in rows))
    kept = [r for r in rows.values() if r["recipe"] in order]
    k = int(first["design"]["folds"])
    agg = aggregate(kept, order, n_resamples, int(first["design"]["seeds"]["base"]), 1 / (k - 1))
    design = {**first["design"], "recipes": {r: RECIPES.get(r) for r in order},
              "repeats": max(int(d["design"]["repeats"]) for d in docs),
              "merged_from": {p.name: {"measured_at": d["measured_at"], "recipes": sorted(d["design"]["recipes"]),
                                       "repeats": d["design"]["repeats"]} for p, d in zip(paths, docs)}}
    atomic_write_json(RESULTS / f"{name}.json", {
        "benchmark": name, "measured_at": utc_now(), "partial": any(d.get("partial") for d in docs),
        "notes": first["notes"] + " Merged from several invocations (design.merged_from): fold-runs are paired "
                 "by (repeat, fold); a recipe run for fewer repeats has fewer fold-runs and is paired on those.",
        "machine": first["machine"], "versions": first["versions"], "data": first["data"], "design": design,
        "fold_assignment": {r: a for d in docs for r, a in d["fold_assignment"].items()}, "fold_runs": kept,
        "aggregate": agg})
    print_table(table_rows(agg, order))
    print(f"\nwritten: {RESULTS / f'{name}.json'}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA, help="one folder per class (default: %(default)s)")
    parser.add_argument("--recipes", nargs="+", choices=list(RECIPES), default=None,
                        help="default: all but the family_* ones (--quick: preset); the first is the baseline of "
                             "the paired differences")
    parser.add_argument("--folds", type=int, default=None, help="default 5 (--quick: 2)")
    parser.add_argument("--repeats", type=int, default=None, help="default 2 (--quick: 1)")
    parser.add_argument("--seed", type=int, default=0, help="fold assignment, training and challenge seeds")
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke run: 2 folds x 1 repeat, preset recipe, {' '.join(QUICK)}")
    parser.add_argument("--override", nargs="*", default=[], help="extra Hydra overrides for every fold-run")
    parser.add_argument("--max-fold-runs", type=int, default=None,
                        help="stop after this many (repeat, fold) pairs: a timing probe, not a result")
    parser.add_argument("--resamples", type=int, default=10_000, help="bootstrap resamples of the aggregates")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="keep every run here (default: a temp dir); rerunning with the same DIR and arguments "
                             "resumes: the pipeline skips the fold-runs it finished (wall_s then excludes them)")
    parser.add_argument("--name", default=None, help="results/<name>.json (default real_recipe[_quick])")
    parser.add_argument("--merge", nargs="+", type=Path, default=None, metavar="JSON",
                        help="train nothing: merge the fold-runs of these results files (the same photos, seed and "
                             "folds; a fold-run in several files is taken from the first) into results/<name>.json, "
                             "recipes in --recipes order (the first is the paired baseline; default: as found)")
    args = parser.parse_args()
    if args.merge:
        return merge(args.merge, args.recipes, args.name or "real_recipe", args.resamples)
    if not (args.data / CLASS_NAMES[0]).is_dir() or not (args.data / CLASS_NAMES[1]).is_dir():
        print(f"real_recipe: no photo set at {args.data} (needs {CLASS_NAMES[0]}/ and {CLASS_NAMES[1]}/ "
              f"sub-folders); nothing to do. Point --data at one.")
        return 0
    recipes = args.recipes or (["preset"] if args.quick else DEFAULT_RECIPES)
    k = args.folds or (2 if args.quick else 5)
    repeats = args.repeats or (1 if args.quick else 2)
    extra = [*(QUICK if args.quick else []), *args.override]
    name = args.name or ("real_recipe_quick" if args.quick else "real_recipe")
    data = args.data.resolve()

    from streetvision.eval.evaluate import load_samples

    start = time.perf_counter()
    files = scan_groups(data)
    labels = [f["label"] for f in files]
    groups = [f["group"] for f in files]
    n_groups = len(set(groups))
    print(f"{len(files)} photos ({labels.count(1)} roadwork), {n_groups} duplicate groups "
          f"({len(files) - n_groups} photos merged into another's group), scanned in "
          f"{time.perf_counter() - start:.1f}s", flush=True)
    folds = {r: assign_folds(labels, groups, k, [args.seed, r]) for r in range(repeats)}

    rows: list[dict[str, Any]] = []
    own_tmp = args.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="real_recipe_")) if own_tmp else args.workdir.resolve()
    ratio = 1 / (k - 1)  # n_test / n_train of one fold-run

    def write(partial: bool) -> dict[str, Any]:
        agg = aggregate(rows, recipes, args.resamples, args.seed, ratio)
        atomic_write_json(RESULTS / f"{name}.json", {
            "benchmark": name, "measured_at": utc_now(), "partial": partial, "notes": notes(),
            "machine": machine_facts(),
            "versions": library_versions(), "data": {"root": os.path.relpath(data, ROOT), "photos": len(files),
                                                     "roadwork": labels.count(1), "duplicate_groups": n_groups},
            "design": {"folds": k, "repeats": repeats, "recipes": {r: RECIPES[r] for r in recipes},
                       **({"shared_pretrain": SHARED_PRETRAIN, "shared_pretrain_s": shared_s}
                          if shared_s is not None else {}),
                       "pipeline_overrides": PIPELINE, "extra_overrides": extra, "deploy_prior_roadwork": PRIOR,
                       "seeds": {"base": args.seed, "fold_assignment": "default_rng([base, repeat])",
                                 "training_and_challenges": "base * 1000 + repeat * folds + fold (same per recipe)",
                                 "inner_split": "data.split_seed = the same per-fold-run seed",
                                 "bootstrap": f"default_rng([base, recipe index, ...]), {args.resamples} resamples"}},
            "fold_assignment": {str(r): {f["path"]: fold for f, fold in zip(files, folds[r])} for r in folds},
            "fold_runs": rows, "aggregate": agg})
        return agg

    def notes() -> str:
        return (f"{k}-fold x {repeats} stratified group CV on {len(files)} real photos; each fold-run trains "
                "through splits -> phase1 -> phase2 -> phase6 on the other folds (train / val_select 0.8 / 0.2, "
                "threshold at the 50/50 prior on val_select, or on crossfit's out-of-fold logits of train + "
                "val_select in small_data_crossfit) and scores the bundle on the held-out fold through the Predictor: "
                "clean and validator_mix (levels 0-3 as the validator draws them), AUROC / MCC / "
                "accuracy at the 50/50 prior. Intervals: percentile bootstrap of the mean over fold-runs (optimistic: "
                "fold-runs share training photos); d_mix_mcc: paired difference to the first recipe with the "
                "Nadeau-Bengio corrected resampled-t 95% interval. wall_s: one fold-run (pipeline + evaluation) in "
                "one process, on this machine.")

    pairs = [(r, fold) for r in range(repeats) for fold in range(k)][: args.max_fold_runs]
    needs_backbone = [r for r in recipes if any(PRETRAINED in o for o in RECIPES[r])]
    pretrained, shared_s = None, None
    if needs_backbone:
        begin = time.perf_counter()
        pretrained = str(shared_pretrain(workdir, extra, args.seed))
        shared_s = time.perf_counter() - begin  # ~0 on a resumed --workdir
    import lightning.pytorch  # noqa: F401  (sets its loggers' levels on import; quieten them after)

    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # no per-run "GPU available" banners
    try:
        for r, fold in pairs:
            test_rows = [f for f, fo in zip(files, folds[r]) if fo == fold]
            train_rel = [f["path"] for f, fo in zip(files, folds[r]) if fo != fold]
            tree = link_tree(workdir / f"r{r}f{fold}" / "photos", data, train_rel)
            images, test_labels, paths, skipped = load_samples([(data / f["path"], f["label"])
                                                                for f in test_rows])
            assert not skipped, skipped
            test = (images, test_labels, paths)
            test_sha = {f["sha256"] for f in test_rows}
            seed = args.seed * 1000 + r * k + fold
            done: dict[str, dict[str, Any]] = {}
            for k_recipe, recipe in enumerate(recipes):
                shared = SHARES_RUN.get(recipe) if SHARES_RUN.get(recipe) in done else None
                run_id = f"r{r}f{fold}_{recipe}"
                if shared:
                    copy_run(workdir, f"r{r}f{fold}_{shared}", run_id)
                row = {"recipe": recipe, "repeat": r, "fold": fold, "seed": seed, "n_test": len(test_rows),
                       "n_test_roadwork": int(test_labels.sum()), "shares_run_of": shared}
                needed_later = any(SHARES_RUN.get(later) == recipe for later in recipes[k_recipe + 1:])
                overrides = [o.replace(PRETRAINED, pretrained or "") for o in RECIPES[recipe]]
                row.update(fold_run(workdir, run_id, tree, overrides, extra, seed, test, test_sha,
                                    keep=not own_tmp or needed_later))
                if shared:  # the phases reused from the shared run cost what they cost there
                    reused = [p for p in row["reused_phases"] if p in done[shared]["phase_s"]]
                    row["wall_s"] += sum(done[shared]["phase_s"][p] for p in reused)
                    row["reused_phases"] = [*(p for p in row["reused_phases"] if p not in reused),
                                            *done[shared]["reused_phases"]]  # a resumed shared run: no timing
                done[recipe] = row
                rows.append(row)
                print(f"repeat {r} fold {fold} {recipe}: " + "  ".join(
                    f"{m} {row[m]:.3f}" for m in HEADLINE) + f"  ({row['wall_s']:.0f}s, {row['epochs']} epochs,"
                    f" {row['optimizer_steps']} steps)", flush=True)
                write(partial=True)
        agg = write(partial=len(pairs) < repeats * k)
    finally:
        if own_tmp:
            shutil.rmtree(workdir, ignore_errors=True)
    print()
    print_table(table_rows(agg, recipes))
    print(f"\n{notes()}\n\nwritten: {RESULTS / f'{name}.json'}  (total {time.perf_counter() - start:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
