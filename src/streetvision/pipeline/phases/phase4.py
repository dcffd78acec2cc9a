"""Phase 4: ExPLoRA extended pre-training on unlabelled target-domain images (or, in labelled mode, on the train
split), then save the adapter, merge, reload the merged backbone from disk and prove the merge before committing."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from omegaconf import DictConfig

from streetvision.data import synthetic
from streetvision.data.datamodules import (ImageDataset, LabeledDataModule, LoaderOptions, UnlabeledDataModule,
                                          unlabeled_paths)
from streetvision.data.splits import load_splits
from streetvision.data.transforms import EvalTransform, MultiCropTransform, Preprocess, TrainTransform
from streetvision.errors import ConfigError, MissingArtifactError
from streetvision.io import atomic_write_json, replace_dir
from streetvision.models.backbones import load_backbone, preprocess_for
from streetvision.models.explora import (
    ExploraModule,
    ExploraSettings,
    backbone_outputs,
    explora_parameterise,
    save_merged,
    trainable_report,
    validate_peft_merge,
)
from streetvision.models.checkpoints import Checkpointing
from streetvision.models.devices import resolve_devices
from streetvision.models.tracking import make_loggers
from streetvision.models.training import TrainerSettings, make_trainer, optimizer_steps_per_epoch, run_fit
from streetvision.pipeline.artifacts import ArtifactSchema
from streetvision.pipeline.distributed import global_rank
from streetvision.pipeline.registry import PhaseContext, PhaseResult, phase


def unlabeled_images(cfg: DictConfig, art: ArtifactSchema) -> list[Path]:
    """Image paths for self-supervision; labels are never read."""
    u = cfg.data.unlabeled
    if u.source == "synthetic":
        rows = synthetic.write_dataset(art.unlabeled_synthetic_dir, n=u.n, domain=u.domain,
                                       seed=cfg.data.synthetic.seed + 1, size=cfg.data.synthetic.image_size,
                                       labeled=False)
        return [p for p, _ in rows]
    if u.source == "folder":
        if not u.root:
            raise ConfigError("data.unlabeled.source=folder needs data.unlabeled.root.",
                              "pass data.unlabeled.root=DIR (any folder tree of images).")
        return unlabeled_paths(Path(u.root))
    return load_splits(require_splits(art)).paths("train")  # train_split: paths only


def require_splits(art: ArtifactSchema) -> Path:
    """splits.json, or a clear error naming what creates it."""
    if not art.splits_json.is_file():
        raise MissingArtifactError(
            f"{art.splits_json} does not exist, and phase4 with model.explora.use_labeled_data=true (or "
            f"data.unlabeled.source=train_split) needs the train split.",
            "create it first with `streetvision run pipeline.phases=[splits]` (or run phase1 in the same command: "
            "pipeline.phases=[phase4,phase1] adds it), using the same run_id.")
    return art.splits_json


def _local_size(pre: Preprocess, patch: int, requested: int) -> int:
    size = requested or pre.size // 2
    return max(patch, (size // patch) * patch)


def _datamodule(cfg: DictConfig, art: ArtifactSchema, pre: Preprocess, patch: int):
    p4, options = cfg.phase4, LoaderOptions.from_hardware(cfg.hardware, pre.size)
    if cfg.model.explora.use_labeled_data:
        splits = load_splits(require_splits(art))
        train_tf = TrainTransform(pre, cfg.training.augment, tuple(cfg.training.augment_level_probs))
        dm = LabeledDataModule(splits, train_tf, EvalTransform(pre), p4.batch_size, options)
        return dm.train_dataloader(), splits.paths("train")
    paths = unlabeled_images(cfg, art)
    if cfg.model.explora.objective == "dino":
        transform = MultiCropTransform(pre, _local_size(pre, patch, p4.local_crop_size), p4.n_global_crops,
                                       p4.n_local_crops)
    else:
        transform = TrainTransform(pre, "flip")
    dm = UnlabeledDataModule(paths, transform, p4.batch_size, options)
    return dm.train_dataloader(), paths


def validation_batch(paths: list[Path], pre: Preprocess, n: int) -> torch.Tensor:
    """A fixed batch of real preprocessed images (the first ``n`` decodable ones, in path order)."""
    ds = ImageDataset(sorted(paths)[: max(n * 2, n)], None, EvalTransform(pre), pre.size * 2)
    return torch.stack([ds[i] for i in range(min(n, len(ds)))])


def explora_settings(p4: DictConfig) -> ExploraSettings:
    """The settings models.explora reads, from ``cfg.phase4``."""
    return ExploraSettings(
        lr=float(p4.lr), weight_decay=float(p4.weight_decay), warmup_fraction=float(p4.warmup_fraction),
        ema_momentum=float(p4.ema_momentum), dino_out_dim=int(p4.dino_out_dim), n_global_crops=int(p4.n_global_crops),
        teacher_temp=float(p4.teacher_temp), student_temp=float(p4.student_temp),
        center_momentum=float(p4.center_momentum), mask_ratio=float(p4.mask_ratio))


def splits_needed(cfg: DictConfig) -> tuple[str, ...]:
    """Labelled ExPLoRA and ``data.unlabeled.source=train_split`` read splits.json: then phase4 needs the splits
    phase (added to the plan, recorded among phase4's inputs, so a changed split makes phase4 stale)."""
    reads = cfg.model.explora.use_labeled_data or cfg.data.unlabeled.source == "train_split"
    return ("splits",) if reads else ()


@phase("phase4", "ExPLoRA extended pre-training (PEFT LoRA + unfrozen last block), merge and prove the merge",
       dir="phase4_explora", reads=("hardware", "logging", "pipeline.force", "training.progress_bar"),
       config_keys=("seed", "model.backbone", "model.explora", "phase4", "data.unlabeled", "hardware.precision",
                    "training.augment", "training.augment_level_probs", "training.gradient_clip",
                    "data.synthetic.seed", "data.synthetic.image_size"),  # synthetic unlabelled images use both
       needs_if=splits_needed)
def run_phase4(ctx: PhaseContext) -> PhaseResult:
    """Train, save the adapter, merge, validate on real images, then write metrics (manifest follows)."""
    cfg, art = ctx.cfg, ctx.artifacts
    ex, p4 = cfg.model.explora, cfg.phase4
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    backbone = load_backbone(cfg.model.backbone, seed=cfg.seed).train()
    pre = preprocess_for(backbone, cfg.model.backbone)
    patch = int(backbone.config.patch_size)
    loader, paths = _datamodule(cfg, art, pre, patch)
    student = explora_parameterise(backbone, ex.unfrozen_blocks, ex.r, ex.alpha, ex.dropout)
    report = trainable_report(student)
    ctx.console.print(f"ExPLoRA: {ex.objective if not ex.use_labeled_data else 'supervised'} on {len(paths)} "
                      f"images; trainable {report['trainable_parameters']:,} / {report['total_parameters']:,} "
                      f"({report['trainable_percentage']:.2f}%)")
    objective = "supervised" if ex.use_labeled_data else str(ex.objective)
    plan = resolve_devices(cfg.hardware)
    steps_per_epoch = optimizer_steps_per_epoch(loader, plan.world_size, p4.grad_accum)
    total = p4.max_steps if p4.max_steps > 0 else int(p4.epochs) * steps_per_epoch
    module = ExploraModule(student, objective, explora_settings(p4), total, ex.gather_embeddings,
                           compile_backend=plan.compile_backend if plan.compile else None)
    # phase4's own gradient accumulation; clipping and the progress bar as in phase1
    trainer_settings = TrainerSettings(grad_accum=int(p4.grad_accum), gradient_clip=float(cfg.training.gradient_clip),
                                       progress_bar=bool(cfg.training.progress_bar))
    checkpointing = Checkpointing.prepare(art.checkpoint_dir("phase4"), ctx.fingerprint, "phase4",
                                          bool(cfg.pipeline.force))
    if checkpointing.resume:
        ctx.console.print(f"resuming phase4 from {art.rel(checkpointing.resume)}")
    trainer = make_trainer(plan, trainer_settings, [], int(p4.epochs), art.phase_dir("phase4"), validate=False,
                           max_steps=int(p4.max_steps), checkpointing=checkpointing,
                           loggers=make_loggers(list(cfg.logging.loggers), art.logs_dir, "phase4",
                                                *(art.identity()[k] for k in ("experiment_name", "run_id")),
                                                cfg.logging.wandb_project))
    resume = checkpointing.resume
    run_fit(trainer, module, train_dataloaders=loader, ckpt_path=str(resume) if resume else None)
    if global_rank() > 0:
        return PhaseResult(outputs=[])  # externally launched DDP: rank 0 merges, validates and writes

    student = module.student.eval()
    adapter_dir = art.explora_adapter_dir
    with replace_dir(adapter_dir) as tmp:
        student.save_pretrained(tmp, safe_serialization=True)  # PEFT format, before merging
    batch = validation_batch(paths, pre, int(p4.validation_images))
    reference = backbone_outputs(student, batch)
    save_merged(student, art.explora_backbone_dir)
    tolerance = float(ex.merge_tolerance)  # both sides run in float32 whatever trained (backbone_outputs)
    validation = validate_peft_merge(reference, art.explora_backbone_dir, batch, tolerance)
    ctx.console.print(f"merge validation {validation['status']}: max output diff {validation['max_output_diff']:.2e}")

    losses = module.losses
    metrics = {**report, "objective": objective, "steps": len(losses), "loss_curve": losses,
               "loss_first": losses[0] if losses else None, "loss_last": losses[-1] if losses else None,
               "num_images": len(paths), "labeled": bool(ex.use_labeled_data),
               "max_output_diff": validation["max_output_diff"], "merge_tolerance": tolerance,
               "peft_validation_status": validation["status"], "preprocess": pre.as_dict(), **plan.describe(),
               "resumed_from": resume.name if resume else None}
    atomic_write_json(art.metrics_json("phase4"), metrics)
    checkpointing.discard()
    return PhaseResult(
        outputs=[adapter_dir, art.explora_backbone_dir, art.metrics_json("phase4")],
        metrics={k: v for k, v in metrics.items() if k != "loss_curve"},
        summary={"trainable": f"{report['trainable_percentage']:.2f}%",
                 "merge": f"{validation['status']} (max diff {validation['max_output_diff']:.1e})",
                 "loss": f"{metrics['loss_first']:.3f} -> {metrics['loss_last']:.3f}" if losses else "n/a"})
