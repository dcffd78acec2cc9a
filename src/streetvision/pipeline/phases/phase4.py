"""Phase 4: ExPLoRA extended pre-training on unlabelled target-domain images (or, in labelled mode, on the train
split), starting from the pretrain phase's backbone when it is committed (else ``model.backbone``); then save the
adapter, merge, reload the merged backbone from disk and prove the merge before committing."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from omegaconf import DictConfig

from streetvision.data.datamodules import ImageDataset, LabeledDataModule, LoaderOptions
from streetvision.data.splits import load_splits
from streetvision.data.preprocess import Preprocess
from streetvision.data.transforms import EvalTransform, train_transform
from streetvision.io import atomic_write_json, replace_dir
from streetvision.models.adapters import adapter_ranks
from streetvision.models.backbones import load_backbone, preprocess_for
from streetvision.models.explora import (
    backbone_outputs,
    explora_parameterise,
    save_merged,
    trainable_report,
    validate_peft_merge,
)
from streetvision.models.devices import resolve_devices
from streetvision.pipeline.artifacts import ArtifactSchema
from streetvision.pipeline.distributed import global_rank
from streetvision.pipeline.phases.pretrain import (
    backbone_inputs,
    fit_self_supervised,
    loss_metrics,
    require_splits,
    start_backbone,
    unlabeled_images,
    unlabeled_loader,
)
from streetvision.pipeline.registry import PhaseContext, PhaseResult, phase


def _train_data(cfg: DictConfig, art: ArtifactSchema, pre: Preprocess, patch: int):
    """(loader, image paths): the labelled train split in labelled mode, else views of data.unlabeled."""
    p4 = cfg.phase4
    if cfg.model.explora.use_labeled_data:
        splits = load_splits(require_splits(art, "phase4 with model.explora.use_labeled_data=true"))
        train_tf = train_transform(pre, cfg.training)
        options = LoaderOptions.from_hardware(cfg.hardware, pre.size, resolve_devices(cfg.hardware).devices)
        dm = LabeledDataModule(splits, train_tf, EvalTransform(pre), p4.batch_size, options)
        return dm.train_dataloader(), splits.paths("train")
    paths = unlabeled_images(cfg, art, "phase4", "data.unlabeled")
    return unlabeled_loader(cfg, p4, str(cfg.model.explora.objective), paths, pre, patch), paths


def validation_batch(paths: list[Path], pre: Preprocess, n: int) -> torch.Tensor:
    """A fixed batch of real preprocessed images (the first ``n`` decodable ones, in path order)."""
    ds = ImageDataset(sorted(paths)[: max(n * 2, n)], None, EvalTransform(pre), pre.size * 2)
    return torch.stack([ds[i] for i in range(min(n, len(ds)))])


def explora_adapter(cfg: DictConfig) -> str:
    """The adapter on ExPLoRA's blocks: ``model.adapter``; with ``auto`` (a phase1 selection on labelled val_select,
    which phase4 has not) LoRA, the paper's."""
    return "lora" if cfg.model.adapter == "auto" else str(cfg.model.adapter)


def splits_needed(cfg: DictConfig) -> tuple[str, ...]:
    """Labelled ExPLoRA and ``data.unlabeled.source=train_split`` read splits.json: then phase4 needs the splits
    phase (added to the plan, recorded among phase4's inputs, so a changed split makes phase4 stale)."""
    reads = cfg.model.explora.use_labeled_data or cfg.data.unlabeled.source == "train_split"
    return ("splits",) if reads else ()


@phase("phase4", "ExPLoRA extended pre-training (PEFT LoRA + unfrozen last block), merge and prove the merge",
       dir="phase4_explora", uses=("pretrain",),
       reads=("hardware", "logging", "pipeline.force", "training.progress_bar"),
       config_keys=("seed", "model.backbone", "model.init_from_pretrain", "model.explora", "model.adapter", "phase4", "data.unlabeled",
                    "hardware.precision", "training.augment", "training.augment_level_probs", "training.camera",
                    "training.camera_prob", "training.gradient_clip", "data.synthetic.seed", "data.synthetic.image_size"),
       needs_if=splits_needed)
def run_phase4(ctx: PhaseContext) -> PhaseResult:
    """Train, save the adapter, merge, validate on real images, then write metrics (manifest follows)."""
    cfg, art = ctx.cfg, ctx.artifacts
    ex, p4 = cfg.model.explora, cfg.phase4
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    source = start_backbone(cfg, art, ctx.committed)
    backbone = load_backbone(source, seed=cfg.seed).train()
    pre = preprocess_for(backbone, source)
    loader, paths = _train_data(cfg, art, pre, int(backbone.config.patch_size))
    adapter = explora_adapter(cfg)
    student = explora_parameterise(backbone, ex.unfrozen_blocks, ex.r, ex.alpha, ex.dropout, str(ex.unfrozen_from),
                                   bool(ex.train_patch_embeddings), bool(ex.train_norms), adapter)
    report = trainable_report(student)
    objective = "supervised" if ex.use_labeled_data else str(ex.objective)
    ctx.console.print(f"ExPLoRA ({adapter}): {objective} on {len(paths)} images from {source}; trainable "
                      f"{report['trainable_parameters']:,} / {report['total_parameters']:,} "
                      f"({report['trainable_percentage']:.2f}%)")
    plan = resolve_devices(cfg.hardware)
    fit = fit_self_supervised(ctx, "phase4", student, objective, p4, loader, plan, bool(ex.gather_embeddings))
    if global_rank() > 0:
        return PhaseResult(outputs=[])  # externally launched DDP: rank 0 merges, validates and writes

    student = fit.module.student.eval()
    ranks = adapter_ranks(student)  # AdaLoRA: the ranks its allocation kept
    adapter_dir = art.explora_adapter_dir
    with replace_dir(adapter_dir) as tmp:
        student.save_pretrained(tmp, safe_serialization=True)  # PEFT format, before merging
    batch = validation_batch(paths, pre, int(p4.validation_images))
    reference = backbone_outputs(student, batch)
    save_merged(student, art.explora_backbone_dir)
    tolerance = float(ex.merge_tolerance)  # both sides run in float32 whatever trained (backbone_outputs)
    validation = validate_peft_merge(reference, art.explora_backbone_dir, batch, tolerance)
    ctx.console.print(f"merge validation {validation['status']}: max output diff {validation['max_output_diff']:.2e}")

    metrics = {**report, "adapter": adapter, **({"adapter_ranks": ranks} if ranks else {}), "objective": objective, "init": art.rel(source) if Path(source).exists() else source,
               **loss_metrics(fit.module.losses), "num_images": len(paths), "labeled": bool(ex.use_labeled_data),
               "max_output_diff": validation["max_output_diff"], "merge_tolerance": tolerance,
               "peft_validation_status": validation["status"], "preprocess": pre.as_dict(), **plan.describe(),
               "resumed_from": fit.resumed_from.name if fit.resumed_from else None}
    atomic_write_json(art.metrics_json("phase4"), metrics)
    fit.checkpointing.discard()
    return PhaseResult(
        outputs=[adapter_dir, art.explora_backbone_dir, art.metrics_json("phase4")],
        inputs=backbone_inputs(source),
        metrics={k: v for k, v in metrics.items() if k != "loss_curve"},
        summary={"trainable": f"{report['trainable_percentage']:.2f}%",
                 "merge": f"{validation['status']} (max diff {validation['max_output_diff']:.1e})",
                 "loss": f"{metrics['loss_first']:.3f} -> {metrics['loss_last']:.3f}" if metrics["steps"] else "n/a"})
