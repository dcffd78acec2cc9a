"""The crossfit phase (small data): out-of-fold logits for phase2's threshold and phase5's temperature.

On a small photo set one val_select of ~30 images and one val_calib of ~20 make the threshold and the temperature
swing from run to run. Here every image of train + val_select + val_calib (never test) is cut into
``crossfit.folds`` stratified folds, whole duplicate groups of the splits phase kept in one fold
(``data.splits.assign_folds``, seeded by ``seed``). For each fold a model is trained by phase1's recipe
(:func:`~streetvision.pipeline.phases.phase1.build_model` / ``train_model``, from the same starting backbone) on the
other folds and scores its held-out fold, so every image gets one logit from a model that never saw it. When this
phase is committed, phase2 sweeps its threshold and phase5 fits its temperature and selective policy on these
``crossfit/logits/oof.csv`` logits (~190 images instead of ~33 / ~23; see :func:`fitting_logits`).

Statistical caveat: the out-of-fold logits come from K fold models, not from the phase1 model that is deployed, so
the threshold and temperature are cross-fitted estimates for it (the usual stacking assumption: a model trained on
all of train behaves like the fold models trained on (K-1)/K of train + val). The selective policy's finite-sample
guarantee (Learn-then-Test, Clopper-Pearson) assumes calibration images exchangeable with deployment images under
the deployed model; here it holds only approximately.

Which weights a fold model keeps: inside a fold there are no validation images left, so each fold model follows
phase1's choice (this phase needs phase1): it trains on phase1's schedule (the same epoch budget, warm-up and cosine
length; ``training.optimizer_steps`` as in ``training=small_data`` counts at the fold's own steps per epoch) and
stops after the epoch phase1 kept on val_select (``best_epoch`` in phase1's metrics.json; the last epoch when phase1
had nothing to select on). Keeping the fold models' last epoch instead was measured to fail: on 180 real photos
phase1 kept epoch 3 of 60 while the fold models trained all 60 and were far more confident, so the out-of-fold
threshold (0.002) did not transfer and the deployed model called every photo roadwork. Fold models are not
checkpointed: an interrupted crossfit trains every fold again.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
from omegaconf import DictConfig

from streetvision.data.sources import path_text
from streetvision.data.splits import HELD_OUT_SPLIT, Splits, assign_folds, fold_splits, load_splits
from streetvision.errors import ConfigError
from streetvision.eval.logits import SplitLogits, read_logits, write_logits
from streetvision.io import atomic_write_csv, atomic_write_json, read_json
from streetvision.metrics.classification import binary_metrics, softmax_probs
from streetvision.models.devices import DevicePlan, resolve_devices
from streetvision.models.training import predict_logits
from streetvision.pipeline.artifacts import ArtifactSchema
from streetvision.pipeline.distributed import global_rank
from streetvision.pipeline.phases.phase1 import BACKBONE_PHASES, FitTarget, backbone_source, build_model, train_model
from streetvision.pipeline.phases.pretrain import backbone_inputs
from streetvision.pipeline.registry import PhaseContext, PhaseResult, phase

FIT_SPLITS = ("train", "val_select", "val_calib")  # cross-fitted; the test split stays untouched
OOF_SPLIT = "crossfit_oof"  # how phase2 and phase5 name the out-of-fold logits in what they record


def fitting_logits(art: ArtifactSchema, committed: frozenset[str], split: str) -> tuple[str, SplitLogits]:
    """(name, logits) that phase2 / phase5 fit on: crossfit's out-of-fold logits when crossfit is committed in
    the run, else phase1's logits of ``split`` (val_select / val_calib)."""
    if "crossfit" in committed:
        return OOF_SPLIT, read_logits(art.crossfit_logits_csv)
    return split, read_logits(art.logits_csv(split))


def fold_assignment(splits: Splits, k: int, seed: int) -> dict[str, int]:
    """Path -> fold for every train / val_select / val_calib file: whole duplicate groups, stratified by class,
    seeded; ConfigError when a class has fewer distinct images than folds."""
    rows = [f for f in splits.files if f["split"] in FIT_SPLITS]
    groups = [f.get("group", f"file:{f['path']}") for f in rows]  # no recorded groups: every file is its own
    labels = [int(f["label"]) for f in rows]
    try:
        folds = assign_folds(labels, groups, k, seed)
    except ValueError as exc:
        counts = {name: labels.count(c) for c, name in enumerate(splits.class_names)}
        names = ", ".join(f"{c} = {name}" for c, name in enumerate(splits.class_names))
        raise ConfigError(
            f"crossfit.folds={k}: not every fold can hold every class: {exc} (labels: {names}; images in "
            f"{' + '.join(FIT_SPLITS)}: {counts}; near duplicates form one group).",
            "set crossfit.folds to at most the number of distinct images of the smallest class, or add images.",
        ) from exc
    return {f["path"]: fold for f, fold in zip(rows, folds)}


def fold_counts(splits: Splits, fold_of: dict[str, int], k: int) -> list[dict[str, int]]:
    """Images of each class held out in each fold."""
    counts = [dict.fromkeys(splits.class_names, 0) for _ in range(k)]
    for f in splits.files:
        if f["path"] in fold_of:
            counts[fold_of[f["path"]]][splits.class_names[int(f["label"])]] += 1
    return counts


def _fit_fold(cfg: DictConfig, art: ArtifactSchema, splits: Splits, fold_of: dict[str, int], fold: int,
              source: str, plan: DevicePlan, stop_epoch: int) -> tuple[list[str], np.ndarray, np.ndarray,
                                                                         dict[str, Any]]:
    """Train fold ``fold``'s model by phase1's recipe on the other folds, stopping after ``stop_epoch``; (ids,
    labels, logits, facts) of its held-out fold."""
    L.seed_everything(cfg.seed, workers=True, verbose=False)  # every fold model starts where phase1's does
    view = fold_splits(splits, fold_of, fold)
    model = build_model(cfg, source, splits.class_names, phase1_adapter(art))
    start = time.perf_counter()
    target = FitTarget(art.crossfit_curve_csv(fold), art.phase_dir("crossfit"), art.cache_dir, val_split=None,
                       stop_epoch=stop_epoch)
    dm, info = train_model(cfg, model, view, plan, target)
    logits, labels = predict_logits(model, dm.loader(HELD_OUT_SPLIT), plan.torch_device)
    ids = [f["path"] for f in view.rows(HELD_OUT_SPLIT)]
    facts = {"fold": fold, "train_images": len(view.rows("train")), "held_out_images": len(ids),
             "train_seconds": time.perf_counter() - start, "epochs": info.get("epochs"),
             "optimizer_steps": info.get("optimizer_steps"), "trained_epochs": info.get("trained_epochs"),
             "kept_epoch": info["best_epoch"], "held_out": binary_metrics(labels, softmax_probs(logits))}
    return ids, labels, logits, facts


def phase1_adapter(art: ArtifactSchema) -> str | None:
    """The adapter phase1 trained (its model.adapter=auto choice included); None outside lora mode."""
    return read_json(art.metrics_json("phase1")).get("adapter")


def phase1_kept_epoch(art: ArtifactSchema) -> int:
    """The epoch (0-based) whose weights phase1 kept (its best val_select epoch; -1: none selected, train all)."""
    return int(read_json(art.metrics_json("phase1")).get("best_epoch", -1))


@phase("crossfit", "K-fold out-of-fold logits of train + val (phase2 and phase5 fit on them)", dir="crossfit",
       needs=("splits", "phase1"), uses=BACKBONE_PHASES, reads=("hardware",),
       config_keys=("seed", "model", "training", "hardware.precision", "phase1.frozen_epochs", "crossfit"))
def run_crossfit(ctx: PhaseContext) -> PhaseResult:
    """Train one model per fold, score each held-out fold, write the out-of-fold logits, folds and metrics."""
    cfg, art = ctx.cfg, ctx.artifacts
    k = int(cfg.crossfit.folds)
    splits = load_splits(art.splits_json)
    fold_of = fold_assignment(splits, k, int(cfg.seed))
    source = backbone_source(cfg, art, ctx.committed)
    plan = resolve_devices(cfg.hardware)
    stop_epoch = phase1_kept_epoch(art)
    kept = f"stopping after epoch {stop_epoch}, the one phase1 kept" if stop_epoch >= 0 else "the last epoch kept"
    ctx.console.print(f"crossfit: {k} folds of {len(fold_of)} images ({' + '.join(FIT_SPLITS)}), phase1's recipe "
                      f"({cfg.model.finetune}) from {source}, {kept}")
    ids: list[str] = []
    labels, logits, folds = [], [], []
    for fold in range(k):
        fold_ids, fold_labels, fold_logits, facts = _fit_fold(cfg, art, splits, fold_of, fold, source, plan,
                                                                stop_epoch)
        ids += fold_ids
        labels.append(fold_labels)
        logits.append(fold_logits)
        folds.append(facts)
        ctx.console.print(f"fold {fold}: {facts['train_images']} train, {facts['held_out_images']} held out, "
                          f"held-out MCC {facts['held_out']['mcc']:.3f} ({facts['train_seconds']:.0f}s)")
    if global_rank() > 0:
        return PhaseResult(outputs=[])  # externally launched DDP: rank 0 writes everything

    order = np.argsort(ids, kind="stable")  # splits.json's order: by path
    oof_ids = [ids[i] for i in order]
    oof_labels, oof_logits = np.concatenate(labels)[order], np.concatenate(logits)[order]
    write_logits(art.crossfit_logits_csv, oof_ids, oof_labels, oof_logits, splits.class_names)
    by_path = {f["path"]: f for f in splits.files}
    atomic_write_csv(art.crossfit_folds_csv, ["sample_id", "label", "split", "group", "fold"],
                     ([path_text(p), by_path[p]["label"], by_path[p]["split"], by_path[p].get("group", ""),
                       fold_of[p]] for p in oof_ids))
    pooled = binary_metrics(oof_labels, softmax_probs(oof_logits))
    metrics = {
        "folds": k, "images": len(oof_ids), "splits": list(FIT_SPLITS), "seed": int(cfg.seed),
        "held_out_per_fold": fold_counts(splits, fold_of, k), "out_of_fold": pooled, "per_fold": folds,
        "backbone_source": art.rel(source) if Path(source).exists() else source,
        "finetune": str(cfg.model.finetune), "phase1_kept_epoch": stop_epoch,
        "model_selection": ("phase1's: each fold model stops after the epoch phase1 kept on val_select"
                            if stop_epoch >= 0 else "none: phase1 selected no epoch, the last epoch kept"),
        "train_seconds": sum(f["train_seconds"] for f in folds),
    }
    atomic_write_json(art.metrics_json("crossfit"), metrics)
    outputs = [art.crossfit_logits_csv, art.crossfit_folds_csv, art.metrics_json("crossfit"),
               *(art.crossfit_curve_csv(fold) for fold in range(k))]
    return PhaseResult(outputs=outputs, inputs=backbone_inputs(source), metrics=metrics,
                       summary={"out-of-fold MCC": f"{pooled['mcc']:.3f} ({len(oof_ids)} images, {k} folds)",
                                "train": f"{metrics['train_seconds']:.0f}s"})
