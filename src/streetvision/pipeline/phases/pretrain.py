"""The pretrain phase: self-supervised pre-training of every weight of the backbone (no adapters) on unlabelled
images (``pretrain.images``), starting from ``model.backbone`` (a built-in name: random weights, so from scratch;
a directory: continued pre-training). When committed, its backbone is where phase4 starts (ExPLoRA extends it on
the target domain) or, without phase4, where phase1 starts (``model.init_from_pretrain``).

Also what both self-supervised phases share: their unlabelled images, views, settings and the Lightning fit with
resumable checkpoints and loggers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import lightning as L
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.utils.data import DataLoader

from streetvision.data import synthetic
from streetvision.data.datamodules import UnlabeledDataModule, LoaderOptions, unlabeled_paths
from streetvision.data.splits import load_splits
from streetvision.data.preprocess import Preprocess
from streetvision.data.transforms import MultiCropTransform, TrainTransform
from streetvision.errors import ConfigError, MissingArtifactError
from streetvision.io import atomic_write_json, replace_dir
from streetvision.models.adapters import adapter_callbacks
from streetvision.models.backbones import load_backbone, preprocess_for
from streetvision.models.checkpoints import Checkpointing
from streetvision.models.devices import DevicePlan, resolve_devices
from streetvision.models.selfsup import SelfSupervisedModule, SelfSupervisedSettings
from streetvision.models.tracking import make_loggers
from streetvision.models.training import (TrainerSettings, epochs_for_steps, make_trainer, optimizer_steps_per_epoch,
                                          run_fit)
from streetvision.pipeline.artifacts import ArtifactSchema
from streetvision.pipeline.distributed import global_rank
from streetvision.pipeline.registry import PhaseContext, PhaseResult, phase

SYNTHETIC_SEED_OFFSET = {"phase4": 1, "pretrain": 2}  # added to data.synthetic.seed: each phase its own scenes


def require_splits(art: ArtifactSchema, why: str) -> Path:
    """splits.json, or a clear error naming what creates it."""
    if not art.splits_json.is_file():
        raise MissingArtifactError(
            f"{art.splits_json} does not exist, and {why} needs the train split.",
            "create it first with `streetvision run pipeline.phases=[splits]` (or run phase1 in the same command: "
            "the runner orders the phases).")
    return art.splits_json


def unlabeled_images(cfg: DictConfig, art: ArtifactSchema, phase_name: str, key: str) -> list[Path]:
    """Image paths for self-supervision from the images node at ``key`` (``data.unlabeled`` for phase4,
    ``pretrain.images``): a folder tree, synthetic scenes written into the phase's directory, or the train split
    (paths only: labels are never read)."""
    images = OmegaConf.select(cfg, key)
    if images.source == "synthetic":
        rows = synthetic.write_dataset(art.unlabeled_synthetic_dir(phase_name), n=images.n, domain=images.domain,
                                       seed=cfg.data.synthetic.seed + SYNTHETIC_SEED_OFFSET[phase_name],
                                       size=cfg.data.synthetic.image_size, labeled=False)
        return [p for p, _ in rows]
    if images.source == "folder":
        if not images.root:
            raise ConfigError(f"{key}.source=folder needs {key}.root.",
                              f"pass {key}.root=DIR (any folder tree of images).")
        return unlabeled_paths(Path(images.root))
    return load_splits(require_splits(art, f"{key}.source=train_split")).paths("train")


def self_supervised_settings(p: DictConfig) -> SelfSupervisedSettings:
    """The settings models.selfsup reads, from a self-supervised phase's node (``cfg.phase4``, ``cfg.pretrain``)."""
    return SelfSupervisedSettings(
        lr=float(p.lr), weight_decay=float(p.weight_decay), warmup_fraction=float(p.warmup_fraction),
        ema_momentum=float(p.ema_momentum), dino_out_dim=int(p.dino_out_dim), n_global_crops=int(p.n_global_crops),
        teacher_temp=float(p.teacher_temp), student_temp=float(p.student_temp),
        center_momentum=float(p.center_momentum), mask_ratio=float(p.mask_ratio))


def view_transform(objective: str, p: DictConfig, pre: Preprocess, patch: int):
    """DINO's multi-crop views, or one flipped view for masked reconstruction."""
    if objective == "dino":
        local = int(p.local_crop_size) or pre.size // 2
        return MultiCropTransform(pre, max(patch, (local // patch) * patch), int(p.n_global_crops),
                                  int(p.n_local_crops))
    return TrainTransform(pre, "flip")


def unlabeled_loader(cfg: DictConfig, p: DictConfig, objective: str, paths: list[Path], pre: Preprocess,
                     patch: int) -> DataLoader:
    """Shuffled batches of self-supervised views of ``paths``."""
    options = LoaderOptions.from_hardware(cfg.hardware, pre.size, resolve_devices(cfg.hardware).devices)
    return UnlabeledDataModule(paths, view_transform(objective, p, pre, patch), int(p.batch_size),
                               options).train_dataloader()


@dataclass(frozen=True)
class SelfSupervisedFit:
    """A finished self-supervised fit: the trained module, its checkpoints (to discard once committed) and the
    checkpoint it resumed from, if any."""

    module: SelfSupervisedModule
    checkpointing: Checkpointing
    resumed_from: Path | None


def fit_self_supervised(ctx: PhaseContext, phase_name: str, student: nn.Module, objective: str, p: DictConfig,
                        loader: DataLoader, plan: DevicePlan, gather_embeddings: bool = False) -> SelfSupervisedFit:
    """Train ``student`` with ``objective`` for ``p.max_steps`` when set, else ``p.epochs``, resuming from the phase's
    checkpoint of the same fingerprint, with phase1's clipping, progress bar and loggers."""
    cfg, art = ctx.cfg, ctx.artifacts
    steps_per_epoch = optimizer_steps_per_epoch(loader, plan.world_size, p.grad_accum)
    total = int(p.max_steps) if p.max_steps > 0 else int(p.epochs) * steps_per_epoch
    epochs = epochs_for_steps(total, steps_per_epoch)  # max_steps, when set, is not cut short by `epochs`
    module = SelfSupervisedModule(student, objective, self_supervised_settings(p), total, gather_embeddings,
                                  compile_backend=plan.compile_backend if plan.compile else None)
    settings = TrainerSettings(grad_accum=int(p.grad_accum), gradient_clip=float(cfg.training.gradient_clip),
                               progress_bar=bool(cfg.training.progress_bar))
    checkpointing = Checkpointing.prepare(art.checkpoint_dir(phase_name), ctx.fingerprint, phase_name,
                                          bool(cfg.pipeline.force))
    if checkpointing.resume:
        ctx.console.print(f"resuming {phase_name} from {art.rel(checkpointing.resume)}")
    run = art.identity()
    trainer = make_trainer(plan, settings, adapter_callbacks(student), epochs, art.phase_dir(phase_name), validate=False,
                           max_steps=int(p.max_steps), checkpointing=checkpointing,
                           loggers=make_loggers(list(cfg.logging.loggers), art.logs_dir, phase_name,
                                                run["experiment_name"], run["run_id"], cfg.logging.wandb_project))
    resume = checkpointing.resume
    run_fit(trainer, module, train_dataloaders=loader, ckpt_path=str(resume) if resume else None)
    return SelfSupervisedFit(module, checkpointing, resume)


def loss_metrics(losses: list[float]) -> dict:
    """The loss curve and its ends, as both self-supervised phases report them."""
    return {"steps": len(losses), "loss_curve": losses, "loss_first": losses[0] if losses else None,
            "loss_last": losses[-1] if losses else None}


def committed_backbone(use: bool | None, phase: str, key: str, directory: Path, committed: frozenset[str],
                       fallback: Callable[[], str]) -> str:
    """``directory`` (a phase's backbone) when ``use`` is true, or None and ``phase`` is committed; else
    ``fallback()`` (called only then). MissingArtifactError when ``use`` is true and ``phase`` is not committed."""
    if use and phase not in committed:
        raise MissingArtifactError(f"{key}=true but the {phase} phase has no committed backbone in this run.",
                                   f"add {phase} to pipeline.phases, or set {key}=null.")
    return str(directory) if use or (use is None and phase in committed) else fallback()


def start_backbone(cfg: DictConfig, art: ArtifactSchema, committed: frozenset[str]) -> str:
    """The pretrain phase's backbone when requested or (by default) when committed; else ``model.backbone``."""
    return committed_backbone(cfg.model.init_from_pretrain, "pretrain", "model.init_from_pretrain",
                              art.pretrain_backbone_dir, committed, lambda: str(cfg.model.backbone))


def backbone_inputs(source: str) -> list[Path]:
    """The backbone a phase started from as a recorded input when it is a local directory (this run's pretrain or
    phase4 backbone, or one of ``model.backbone``): changed weights at the same path then rerun the phase instead
    of leaving it silently up to date. A built-in name or a hub id records nothing (its config string does)."""
    return [Path(source)] if Path(source).is_dir() else []


def _needs_splits(cfg: DictConfig) -> tuple[str, ...]:
    return ("splits",) if cfg.pretrain.images.source == "train_split" else ()


@phase("pretrain", "self-supervised pre-training of the whole backbone on unlabelled images", dir="pretrain",
       reads=("hardware", "logging", "pipeline.force", "training.progress_bar"),
       config_keys=("seed", "model.backbone", "pretrain", "hardware.precision", "training.gradient_clip",
                    "data.synthetic.seed", "data.synthetic.image_size"),  # synthetic images use both
       needs_if=_needs_splits)
def run_pretrain(ctx: PhaseContext) -> PhaseResult:
    """Train every weight of ``model.backbone`` self-supervised, then save it (save_pretrained, safetensors)."""
    cfg, art = ctx.cfg, ctx.artifacts
    p = cfg.pretrain
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    backbone = load_backbone(cfg.model.backbone, seed=cfg.seed).train()
    pre = preprocess_for(backbone, cfg.model.backbone)
    paths = unlabeled_images(cfg, art, "pretrain", "pretrain.images")
    loader = unlabeled_loader(cfg, p, str(p.objective), paths, pre, int(backbone.config.patch_size))
    parameters = sum(t.numel() for t in backbone.parameters())
    ctx.console.print(f"pretrain: {p.objective} on {len(paths)} images from {cfg.model.backbone}; every weight "
                      f"trains ({parameters:,})")
    plan = resolve_devices(cfg.hardware)
    fit = fit_self_supervised(ctx, "pretrain", backbone, str(p.objective), p, loader, plan)
    if global_rank() > 0:
        return PhaseResult(outputs=[])  # externally launched DDP: rank 0 writes
    with replace_dir(art.pretrain_backbone_dir) as tmp:
        fit.module.student.eval().save_pretrained(tmp, safe_serialization=True)
    metrics = {"objective": str(p.objective), "init": cfg.model.backbone, "num_images": len(paths),
               "total_parameters": parameters, **loss_metrics(fit.module.losses), "preprocess": pre.as_dict(),
               **plan.describe(), "resumed_from": fit.resumed_from.name if fit.resumed_from else None}
    atomic_write_json(art.metrics_json("pretrain"), metrics)
    fit.checkpointing.discard()
    return PhaseResult(
        outputs=[art.pretrain_backbone_dir, art.metrics_json("pretrain")], inputs=backbone_inputs(cfg.model.backbone),
        metrics={k: v for k, v in metrics.items() if k != "loss_curve"},
        summary={"images": str(len(paths)), "steps": str(metrics["steps"]),
                 "loss": f"{metrics['loss_first']:.3f} -> {metrics['loss_last']:.3f}" if metrics["steps"] else "n/a"})
