"""Self-supervised training of a ViT backbone: one Lightning module for the whole backbone (the pretrain phase)
and for an ExPLoRA-parameterised one (phase4, see models/explora.py).

Objectives (pluggable, ``model.explora.objective`` / ``pretrain.objective``):
- ``dino``: DINO self-distillation: an EMA teacher, a fresh projection head (DINOv2 checkpoints ship without
  one), teacher centring and sharpening, multi-crop views (2 global + n local);
- ``masked``: masked-patch reconstruction through the backbone's own ``mask_token`` (``bool_masked_pos``) and a
  light linear pixel decoder (SimMIM-style, loss on masked patches of per-patch-normalised pixels);
- labelled mode (phase4's ``use_labeled_data=true``): cross-entropy of a linear head on the train split only.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import lightning as L
import torch
import torch.distributed as dist
from torch import nn

from streetvision.config import CHOICES
from streetvision.errors import ConfigError
from streetvision.models.backbones import embedding_dim, pooled_embedding
from streetvision.models.families import family_of
from streetvision.models.training import CompiledSubmodules, warmup_cosine

OBJECTIVES = CHOICES["model.explora.objective"]


@dataclass(frozen=True)
class SelfSupervisedSettings:
    """What :class:`SelfSupervisedModule` reads: the optimizer and schedule, and each objective's hyper-parameters."""

    lr: float
    weight_decay: float
    warmup_fraction: float  # of the total optimizer steps (linear warm-up, then cosine decay)
    ema_momentum: float  # dino: the teacher's EMA momentum at step 0 (cosine-scheduled to 1)
    dino_out_dim: int  # dino: prototypes of the projection head
    n_global_crops: int  # dino: the first views of a batch, which the teacher sees
    teacher_temp: float
    student_temp: float
    center_momentum: float  # dino: the teacher centre's EMA momentum
    mask_ratio: float  # masked: fraction of patches masked


class DINOHead(nn.Module):
    """Projection head: MLP -> L2-normalised bottleneck -> prototypes with unit-norm weights (DINO's
    ``norm_last_layer``: the weight direction is learnt, its norm fixed at 1)."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 512, bottleneck: int = 128) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
                                 nn.Linear(hidden, bottleneck))
        self.prototypes = nn.Parameter(torch.randn(out_dim, bottleneck) * bottleneck**-0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = nn.functional.normalize(self.mlp(x), dim=-1)
        return nn.functional.linear(z, nn.functional.normalize(self.prototypes, dim=-1))


def dino_loss(student: list[torch.Tensor], teacher_probs: list[torch.Tensor], student_temp: float) -> torch.Tensor:
    """Cross-entropy of every student view against every teacher global view except its own."""
    total, pairs = 0.0, 0
    for t_idx, q in enumerate(teacher_probs):
        for s_idx, s in enumerate(student):
            if s_idx == t_idx:
                continue
            total = total + torch.sum(-q * torch.log_softmax(s / student_temp, dim=-1), dim=-1).mean()
            pairs += 1
    return total / pairs


def patchify(x: torch.Tensor, patch: int) -> torch.Tensor:
    """[B, 3, H, W] -> [B, N, patch*patch*3] in row-major patch order (as the ViT embeds them)."""
    b, c, h, w = x.shape
    x = x.reshape(b, c, h // patch, patch, w // patch, patch)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(b, (h // patch) * (w // patch), patch * patch * c)


class SelfSupervisedModule(L.LightningModule):
    """Self-supervised (or labelled) training of a backbone: every weight (pretrain) or, for ExPLoRA, those a PEFT
    parameterisation leaves trainable. With ``dino`` the EMA teacher is a copy of ``student``."""

    def __init__(self, student: nn.Module, objective: str, settings: SelfSupervisedSettings, total_steps: int,
                 gather_embeddings: bool = False, num_classes: int = 2, compile_backend: str | None = None) -> None:
        super().__init__()
        if objective not in (*OBJECTIVES, "supervised"):
            raise ConfigError(f"Unknown model.explora.objective '{objective}'. Valid choices: "
                              f"{', '.join(OBJECTIVES)}.", "set model.explora.objective=dino|masked.")
        self.student = student
        self.objective = objective
        self.settings = settings
        self.total_steps = max(1, total_steps)
        self.gather_embeddings = gather_embeddings
        dim = embedding_dim(student)
        self.patch = int(student.config.patch_size)
        if objective == "dino":
            self.head = DINOHead(dim, int(settings.dino_out_dim))
            self.teacher = copy.deepcopy(student)
            self.teacher_head = copy.deepcopy(self.head)
            for p in (*self.teacher.parameters(), *self.teacher_head.parameters()):
                p.requires_grad = False
            self.register_buffer("center", torch.zeros(1, int(settings.dino_out_dim)))
            self.register_buffer("center_ready", torch.zeros((), dtype=torch.bool))
        elif objective == "masked":
            self.head = nn.Linear(dim, self.patch * self.patch * 3)
        else:
            self.head = nn.Linear(dim, num_classes)
        self.losses: list[float] = []
        paths = ("student", "teacher") if objective == "dino" else ("student",)
        self.compile_spec = CompiledSubmodules(paths, compile_backend)

    def configure_model(self) -> None:
        self.compile_spec.compile(self)  # in every (spawned) training process

    def on_fit_end(self) -> None:
        self.compile_spec.uncompile(self)  # merge validation and saving run eagerly

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["explora_losses"] = list(self.losses)  # the loss curve continues across a resume

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.losses = list(checkpoint.get("explora_losses", []))

    # -- objectives -----------------------------------------------------------------------------------
    def _dino_step(self, views: list[torch.Tensor]) -> torch.Tensor:
        n_global = int(self.settings.n_global_crops)
        with torch.no_grad():
            t_out = [self.teacher_head(pooled_embedding(self.teacher, v)) for v in views[:n_global]]
            if not bool(self.center_ready):  # start the centre at the first batch mean, not at zero, so the
                self._update_center(torch.cat(t_out), momentum=0.0)  # targets do not jump in the first steps
                self.center_ready.fill_(True)
            t_probs = [torch.softmax((t - self.center) / float(self.settings.teacher_temp), dim=-1) for t in t_out]
            self._update_center(torch.cat(t_out))
        s_out = [self.head(pooled_embedding(self.student, v)) for v in views]
        return dino_loss(s_out, t_probs, float(self.settings.student_temp))

    @torch.no_grad()
    def _update_center(self, teacher_out: torch.Tensor, momentum: float | None = None) -> None:
        batch_center = teacher_out.sum(0, keepdim=True)
        count = torch.tensor([float(len(teacher_out))], device=teacher_out.device)
        if self.gather_embeddings and dist.is_available() and dist.is_initialized():
            dist.all_reduce(batch_center)  # centre over the global batch, as DINO does
            dist.all_reduce(count)
        m = float(self.settings.center_momentum) if momentum is None else momentum
        self.center.mul_(m).add_(batch_center / count, alpha=1 - m)

    def _masked_step(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        n = (x.shape[-1] // self.patch) * (x.shape[-2] // self.patch)
        n_mask = max(1, int(round(float(self.settings.mask_ratio) * n)))
        scores = torch.rand(b, n, device=x.device)
        mask = torch.zeros(b, n, dtype=torch.bool, device=x.device)
        mask.scatter_(1, scores.argsort(dim=1)[:, :n_mask], True)
        skip = family_of(self.student).prefix_tokens  # CLS (and DeiT's distillation token) before the patches
        hidden = self.student(pixel_values=x, bool_masked_pos=mask).last_hidden_state[:, skip:skip + n]
        target = patchify(x, self.patch)
        target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6).sqrt()
        err = ((self.head(hidden) - target) ** 2).mean(-1)
        return err[mask].mean()

    def training_step(self, batch, batch_idx):
        if self.objective == "dino":
            loss = self._dino_step(batch)
        elif self.objective == "masked":
            loss = self._masked_step(batch)
        else:
            x, y = batch[0], batch[1]
            loss = nn.functional.cross_entropy(self.head(pooled_embedding(self.student, x)), y)
        self.losses.append(float(loss.detach()))
        self.log("ssl_loss", loss, prog_bar=True, batch_size=len(batch[0]))
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        if self.objective != "dino":
            return
        progress = self.global_step / self.total_steps
        m = 1 - (1 - float(self.settings.ema_momentum)) * (math.cos(math.pi * min(1.0, progress)) + 1) / 2
        with torch.no_grad():
            for src, dst in ((self.student, self.teacher), (self.head, self.teacher_head)):
                for ps, pt in zip(src.parameters(), dst.parameters()):
                    pt.mul_(m).add_(ps.detach(), alpha=1 - m)

    def configure_optimizers(self):
        params = [p for n, p in self.named_parameters() if p.requires_grad and not n.startswith("teacher")]
        opt = torch.optim.AdamW(params, lr=float(self.settings.lr), weight_decay=float(self.settings.weight_decay))
        warmup = int(round(float(self.settings.warmup_fraction) * self.total_steps))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, self.total_steps, warmup))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
