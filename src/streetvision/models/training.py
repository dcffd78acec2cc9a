"""Supervised training with Lightning: the LightningModule, best-state tracking, the learning-curve writer, the
trainer factory (for a models.devices plan: devices, precision, strategy), in-place backbone compilation and
batched prediction. Settings arrive as the frozen dataclasses below (built by the phases from their config)."""

from __future__ import annotations

import atexit
import contextlib
import csv
import io
import math
import os
import signal
import threading
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, LearningRateMonitor
from lightning.pytorch.loggers import Logger
from torch import nn
from torch.utils.data import DataLoader

from streetvision.models.checkpoints import Checkpointing, EpochCheckpoint, SafeCheckpointIO, checkpoint_epoch
from streetvision.models.adapters import adapter_callbacks
from streetvision.models.profit import Profit
from streetvision.models.devices import DevicePlan, compile_in_place, uncompile
from streetvision.metrics.classification import binary_metrics, softmax_probs
from streetvision.io import atomic_write_text



@dataclass(frozen=True)
class TrainerSettings:
    """What :func:`make_trainer` hands the Lightning Trainer besides the device plan and the epoch budget."""

    grad_accum: int  # batches per optimizer step (accumulate_grad_batches)
    gradient_clip: float  # gradient norm clip (gradient_clip_val)
    progress_bar: bool


@dataclass(frozen=True)
class TrainSettings:
    """What :class:`ClassifierModule` (optimizer, schedule, loss) and :func:`fit_classifier` (epoch budget, early
    stopping, ``trainer``) read."""

    lr: float  # parameters under ``head_prefix``
    backbone_lr: float  # every other trainable parameter
    weight_decay: float
    warmup_fraction: float  # of the total optimizer steps (linear warm-up, then cosine decay)
    loss: str  # one of CHOICES["training.loss"]
    focal_gamma: float  # loss="focal" only
    epochs: int
    early_stopping_patience: int  # validations without val_score improvement; 0 disables
    trainer: TrainerSettings
    optimizer: str = "adamw"  # one of CHOICES["training.optimizer"]
    profit_ref_lr: float = 1e-2  # optimizer="profit" only
    profit_ref_steps: int = 1


def focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float,
               weight: torch.Tensor | None = None) -> torch.Tensor:
    """Multi-class focal loss (Lin et al., 2017): cross-entropy scaled by (1 - p_t)^gamma."""
    logp = torch.log_softmax(logits.float(), dim=1)
    logp_t = logp.gather(1, target[:, None]).squeeze(1)
    loss = -((1 - logp_t.exp()) ** gamma) * logp_t
    if weight is not None:
        loss = loss * weight[target]
    return loss.mean()


def warmup_cosine(step: int, total: int, warmup: int) -> float:
    """LR multiplier: linear warm-up to 1, then cosine decay to 0."""
    if step < warmup:
        return (step + 1) / max(1, warmup)
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def optimizer_steps_per_epoch(loader: DataLoader, world_size: int, grad_accum: int = 1) -> int:
    """Optimizer steps each training process takes per epoch (for the LR schedule): under DDP Lightning shards the
    loader's dataset over the ``world_size`` processes (ceil(n / world_size) samples each), then batches them."""
    per_process = math.ceil(len(loader.dataset) / world_size)
    batches = per_process // loader.batch_size if loader.drop_last else math.ceil(per_process / loader.batch_size)
    return max(1, batches // int(grad_accum))


def epochs_for_steps(optimizer_steps: int, steps_per_epoch: int) -> int:
    """Whole epochs that give at least ``optimizer_steps`` optimizer steps at ``steps_per_epoch`` (at least 1)."""
    return max(1, math.ceil(int(optimizer_steps) / max(1, int(steps_per_epoch))))


@dataclass(frozen=True)
class CompiledSubmodules:
    """Which submodules of a LightningModule to ``torch.compile`` in place (the backbone, never the
    LightningModule itself), with which backend; ``backend=None`` compiles nothing."""

    paths: tuple[str, ...]
    backend: str | None

    def compile(self, module: nn.Module) -> None:
        """Compile each submodule (idempotent)."""
        for path in self.paths if self.backend else ():
            compile_in_place(module.get_submodule(path), self.backend)

    def uncompile(self, module: nn.Module) -> None:
        """Back to eager forwards (after fitting)."""
        for path in self.paths if self.backend else ():
            uncompile(module.get_submodule(path))


class ClassifierModule(L.LightningModule):
    """Trains any ``inputs -> logits`` module; selects on ``val_score`` = val_select MCC - 1e-3 * val loss
    (the loss term only breaks MCC ties, which are common on small validation sets)."""

    def __init__(self, model: nn.Module, training: TrainSettings, total_steps: int,
                 class_weights: torch.Tensor | None = None, head_prefix: str = "head.",
                 compile_backend: str | None = None, compile_path: str = "model.backbone") -> None:
        super().__init__()
        self.model = model
        self.compile_spec = CompiledSubmodules((compile_path,), compile_backend)
        self.lr = float(training.lr)
        self.backbone_lr = float(training.backbone_lr)
        self.weight_decay = float(training.weight_decay)
        self.loss_name = str(training.loss)
        self.focal_gamma = float(training.focal_gamma)
        self.optimizer = (str(training.optimizer), float(training.profit_ref_lr), int(training.profit_ref_steps))
        self.warmup_steps = int(round(float(training.warmup_fraction) * total_steps))
        self.total_steps = max(1, total_steps)
        self.head_prefix = head_prefix
        self.register_buffer("class_weights", class_weights if class_weights is not None else torch.ones(2))
        self._val: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._train_losses: list[float] = []

    def configure_model(self) -> None:
        self.compile_spec.compile(self)  # here, not in __init__: runs in every (spawned) training process

    def on_fit_end(self) -> None:
        self.compile_spec.uncompile(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.loss_name == "focal":
            return focal_loss(logits, y, self.focal_gamma, self.class_weights)
        return nn.functional.cross_entropy(logits.float(), y, weight=self.class_weights)

    def training_step(self, batch, batch_idx):
        x, y = batch[0], batch[1]
        loss = self.loss(self(x), y)
        self._train_losses.append(float(loss.detach()))
        self.log("train_loss", loss, prog_bar=True, batch_size=len(y))
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch[0], batch[1]
        self._val.append((self(x).detach().float(), y.detach()))

    def on_validation_epoch_end(self) -> None:
        if not self._val:
            return
        logits = torch.cat([v[0] for v in self._val])
        labels = torch.cat([v[1] for v in self._val])
        self._val.clear()
        if self.trainer.world_size > 1:
            logits = self.all_gather(logits).reshape(-1, logits.shape[-1])
            labels = self.all_gather(labels).reshape(-1)
        val_loss = float(nn.functional.cross_entropy(logits, labels))
        m = binary_metrics(labels.cpu().numpy(), softmax_probs(logits.cpu().numpy()))
        self.log_dict({"val_mcc": float(m["mcc"]), "val_loss": val_loss,
                       "val_score": float(m["mcc"]) - 1e-3 * val_loss}, prog_bar=True, sync_dist=False)

    def epoch_train_loss(self) -> float:
        """Mean training loss of the current epoch so far (validation runs before the epoch ends, so the learning
        curve's row for an epoch gets that epoch's training loss)."""
        return float(np.mean(self._train_losses)) if self._train_losses else float("nan")

    def on_train_epoch_end(self) -> None:
        self.log("train_loss_epoch", self.epoch_train_loss())
        self._train_losses = []

    def configure_optimizers(self):
        head, body = [], []
        for name, p in self.model.named_parameters():
            if p.requires_grad:
                (head if name.startswith(self.head_prefix) else body).append(p)
        groups = [{"params": head, "lr": self.lr}]
        if body:
            groups.append({"params": body, "lr": self.backbone_lr})
        name, ref_lr, ref_steps = self.optimizer
        if name == "profit":
            opt = Profit(groups, ref_lr=ref_lr, ref_steps=ref_steps, weight_decay=self.weight_decay)
        else:
            opt = torch.optim.AdamW(groups, weight_decay=self.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda step: warmup_cosine(step, self.total_steps, self.warmup_steps))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


class BestState(Callback):
    """Keeps a CPU copy of the weights at the best ``monitor`` value and restores them when fitting ends (in
    spawned DDP workers too, so the main process receives the best weights)."""

    def __init__(self, monitor: str = "val_score") -> None:
        self.monitor = monitor
        self.best: float = -math.inf
        self.best_epoch: int = -1
        self.state: dict[str, torch.Tensor] | None = None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is not None and float(value) > self.best:
            self.best, self.best_epoch = float(value), trainer.current_epoch
            self.state = {k: v.detach().cpu().clone() for k, v in pl_module.state_dict().items()}

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.state is not None:
            pl_module.load_state_dict(self.state)

    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch}

    def load_state_dict(self, state_dict: dict) -> None:
        self.best, self.best_epoch = float(state_dict["best"]), int(state_dict["best_epoch"])

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        checkpoint["best_state_dict"] = self.state  # weights: saved as safetensors (models.checkpoints)

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        self.state = checkpoint.get("best_state_dict")


class CurveWriter(Callback):
    """Writes the learning curve (one row per epoch) atomically to CSV on rank 0 after each validation, or with
    ``after_train_epoch`` (a fit without validation) after each training epoch, its validation columns NaN."""

    FIELDS = ("epoch", "step", "train_loss", "val_loss", "val_mcc", "val_score", "lr")

    def __init__(self, path: os.PathLike[str], after_train_epoch: bool = False) -> None:
        self.path = path
        self.after_train_epoch = after_train_epoch
        self.rows: list[dict[str, float]] = []

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or self.after_train_epoch:
            return
        self._record(trainer, pl_module)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.after_train_epoch:  # runs before the module's own hook, which resets the epoch's losses
            self._record(trainer, pl_module)

    def _record(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        m = trainer.callback_metrics
        self.rows.append({"epoch": trainer.current_epoch, "step": trainer.global_step,
                          "train_loss": pl_module.epoch_train_loss() if hasattr(pl_module, "epoch_train_loss")
                          else float(m.get("train_loss", float("nan"))),
                          "val_loss": float(m.get("val_loss", float("nan"))),
                          "val_mcc": float(m.get("val_mcc", float("nan"))),
                          "val_score": float(m.get("val_score", float("nan"))),
                          "lr": float(trainer.optimizers[0].param_groups[0]["lr"]) if trainer.optimizers else 0.0})
        self._write(trainer)

    def state_dict(self) -> dict:
        return {"rows": self.rows}

    def load_state_dict(self, state_dict: dict) -> None:
        self.rows = list(state_dict["rows"])

    def _write(self, trainer: L.Trainer) -> None:
        if trainer.is_global_zero:
            buf = io.StringIO()
            writer = csv.DictWriter(buf, fieldnames=self.FIELDS)
            writer.writeheader()
            writer.writerows(self.rows)
            atomic_write_text(self.path, buf.getvalue())


class ProcessGroupTeardown(Callback):
    """Destroys a DDP worker's CPU (gloo) process group when the worker exits. Lightning does this only for NCCL;
    without it a spawned gloo worker can abort at interpreter exit ("terminate called without an active exception",
    SIGABRT) after training finished, which fails the whole fit."""

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            atexit.register(_destroy_process_group)


def _destroy_process_group() -> None:
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def make_trainer(plan: DevicePlan, training: TrainerSettings, callbacks: list[Callback], max_epochs: int,
                 root_dir: os.PathLike[str], validate: bool = True, max_steps: int = -1,
                 checkpointing: Checkpointing | None = None, loggers: list[Logger] | None = None) -> L.Trainer:
    """A Lightning Trainer for ``plan`` (see models.devices) and ``training``, logging to ``loggers``
    (models.tracking; with the learning rate); with ``checkpointing``, a safetensors + weights-only checkpoint per
    epoch (models.checkpoints), never a pickled one."""
    plugins = []
    if plan.strategy != "auto":
        callbacks = [*callbacks, ProcessGroupTeardown()]
    if loggers:
        callbacks = [*callbacks, LearningRateMonitor("step")]
    if checkpointing is not None:
        callbacks = [*callbacks, EpochCheckpoint(checkpointing.directory)]
        plugins.append(SafeCheckpointIO(checkpointing.fingerprint))
    return L.Trainer(plugins=plugins,
        accelerator=plan.accelerator, devices=plan.devices, num_nodes=plan.num_nodes, strategy=plan.strategy,
        precision=plan.precision, max_epochs=max_epochs, max_steps=max_steps,
        accumulate_grad_batches=int(training.grad_accum), gradient_clip_val=float(training.gradient_clip),
        callbacks=callbacks, logger=loggers or False, enable_checkpointing=False, enable_model_summary=False,
        default_root_dir=str(root_dir), log_every_n_steps=1, num_sanity_val_steps=0,
        limit_val_batches=1.0 if validate else 0, deterministic="warn" if plan.accelerator == "gpu" else True,
        enable_progress_bar=training.progress_bar,
    )


def run_fit(trainer: L.Trainer, module: L.LightningModule, ckpt_path: str | None = None, **loaders: Any) -> None:
    """``trainer.fit``, with Ctrl-C surfacing as KeyboardInterrupt. Lightning answers it with a graceful
    shutdown and ``sys.exit(1)`` (leaving SIGINT ignored), which would skip the CLI's "interrupted" message and
    exit code 130; the phase is uncommitted either way, since its manifest is written only after training.

    Resuming from ``ckpt_path`` (a models.checkpoints directory), the train loader's sampler is set to the epoch
    that follows it first: Lightning builds the first iterator before it sets the epoch, and loader workers
    prefetch from it at once."""
    if ckpt_path:
        for loader in loaders.values():
            sampler = getattr(loader, "sampler", None)
            if callable(getattr(sampler, "set_epoch", None)):
                sampler.set_epoch(checkpoint_epoch(Path(ckpt_path)) + 1)
    handler = signal.getsignal(signal.SIGINT)
    try:
        trainer.fit(module, ckpt_path=ckpt_path, **loaders)
    except SystemExit as exc:
        if trainer.interrupted:
            raise KeyboardInterrupt from exc
        raise
    finally:
        if handler is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, handler)


def fit_classifier(module: ClassifierModule, train: DataLoader, val: DataLoader | None, plan: DevicePlan,
                   training: TrainSettings, curve_path: os.PathLike[str], root_dir: os.PathLike[str],
                   checkpointing: Checkpointing | None = None, loggers: list[Logger] | None = None) -> dict:
    """Fit with early stopping on ``val_score``; the module ends with the best weights. Without ``val`` (no
    validation images, e.g. a cross-fitting fold) it trains every epoch and keeps the last weights. Returns the
    best (kept) epoch (read from the learning curve, which spawned DDP workers write too), world size, strategy,
    accelerator, precision and whether the backbone was compiled."""
    if val is None:
        callbacks: list[Callback] = [CurveWriter(curve_path, after_train_epoch=True)]
    else:
        callbacks = [BestState("val_score"), CurveWriter(curve_path)]
        if training.early_stopping_patience > 0:
            callbacks.append(EarlyStopping("val_score", mode="max", patience=int(training.early_stopping_patience)))
    callbacks += adapter_callbacks(module)
    trainer = make_trainer(plan, training.trainer, callbacks, int(training.epochs), root_dir, validate=val is not None,
                           checkpointing=checkpointing, loggers=loggers)
    resume = checkpointing.resume if checkpointing else None
    with warnings.catch_warnings() if val is None else contextlib.nullcontext():
        if val is None:  # no validation is intended, not a forgotten loader
            warnings.filterwarnings("ignore", message=".*validation_step.*no `val_dataloader`")
        run_fit(trainer, module, train_dataloaders=train, val_dataloaders=val,
                ckpt_path=str(resume) if resume else None)
    with open(curve_path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        best_epoch = -1
    else:  # without validation the last epoch's weights are kept
        best_epoch = (rows[-1] if val is None else max(rows, key=lambda r: float(r["val_score"])))["epoch"]
    return {"best_epoch": int(best_epoch), "world_size": trainer.world_size,
            "strategy": type(trainer.strategy).__name__, **plan.describe(),
            "resumed_from": Path(resume).name if resume else None}


@torch.inference_mode()
def predict_logits(model: nn.Module, batches: Iterable, device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """(logits [N, C], labels [N]) of a labelled loader, in loader order."""
    model.eval().to(device)
    logits, labels = [], []
    for batch in batches:
        logits.append(model(batch[0].to(device)).float().cpu())
        labels.append(torch.as_tensor(batch[1]))
    return torch.cat(logits).numpy(), torch.cat(labels).numpy()


def class_weights(labels: list[int], enabled: bool) -> torch.Tensor | None:
    """Inverse-frequency class weights normalised to mean 1 (None when disabled)."""
    if not enabled:
        return None
    counts = np.bincount(labels, minlength=2).astype(np.float64)
    w = counts.sum() / (len(counts) * np.maximum(counts, 1))
    return torch.tensor(w / w.mean(), dtype=torch.float32)

