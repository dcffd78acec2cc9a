"""ExPLoRA (Khanna et al., ICML 2025): continue a ViT's self-supervised pre-training on the target domain with
the last ``unfrozen_blocks`` blocks (and the final norm) fully trainable and PEFT LoRA on the attention
projections of every other block; then merge the adapters and prove the merge.

Objectives (pluggable, ``model.explora.objective``):
- ``dino``: DINO self-distillation: an EMA teacher, a fresh projection head (DINOv2 checkpoints ship without
  one), teacher centring and sharpening, multi-crop views (2 global + n local);
- ``masked``: masked-patch reconstruction through the backbone's own ``mask_token`` (``bool_masked_pos``) and a
  light linear pixel decoder (SimMIM-style, loss on masked patches of per-patch-normalised pixels);
- labelled mode (``use_labeled_data=true``): cross-entropy of a linear head on the train split only.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import lightning as L
import torch
import torch.distributed as dist
from torch import nn
from transformers import AutoModel, PreTrainedModel

from streetvision.config import CHOICES
from streetvision.errors import ConfigError, ValidationFailure
from streetvision.io import replace_dir
from streetvision.models.backbones import embedding_dim, pooled_embedding
from streetvision.models.classifier import attention_targets
from streetvision.models.training import CompiledSubmodules, warmup_cosine

if TYPE_CHECKING:
    from peft import PeftModel

OBJECTIVES = CHOICES["model.explora.objective"]


@dataclass(frozen=True)
class ExploraSettings:
    """What :class:`ExploraModule` reads: the optimizer and schedule, and each objective's hyper-parameters."""

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


def num_blocks(backbone: PreTrainedModel) -> int:
    """Number of transformer blocks."""
    return int(backbone.config.num_hidden_layers)


def explora_parameterise(backbone: PreTrainedModel, unfrozen_blocks: int, r: int, alpha: int,
                         dropout: float) -> PeftModel:
    """LoRA on the attention projections of blocks [0, L - unfrozen_blocks); blocks after that and the final
    ``layernorm`` train fully (PEFT ``modules_to_save``, so they are saved with the adapter and merged)."""
    from peft import LoraConfig, get_peft_model  # imported when used: peft takes seconds to import

    n = num_blocks(backbone)
    if not 0 <= unfrozen_blocks < n:
        raise ConfigError(f"model.explora.unfrozen_blocks={unfrozen_blocks} must be in [0, {n - 1}] for a "
                          f"{n}-block backbone.", "use 1 or 2 (the paper's setting).")
    projections = "|".join(attention_targets(backbone))
    lora_blocks = "|".join(str(i) for i in range(n - unfrozen_blocks))
    config = LoraConfig(
        r=r, lora_alpha=alpha, lora_dropout=dropout, bias="none",
        # transformers 5.x: layer.N.attention.q_proj; 4.x: layer.N.attention.attention.query
        target_modules=rf".*encoder\.layer\.({lora_blocks})\.attention\.(?:attention\.)?({projections})",
        modules_to_save=[f"encoder.layer.{i}" for i in range(n - unfrozen_blocks, n)] + ["layernorm"],
    )
    return get_peft_model(backbone, config)


def trainable_report(model: nn.Module) -> dict[str, float]:
    """Trainable and total parameters of the backbone (excluding PEFT's frozen copies of saved modules)."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen_copies = sum(p.numel() for n, p in model.named_parameters() if ".original_module." in n)
    total = sum(p.numel() for p in model.parameters()) - frozen_copies
    return {"trainable_parameters": trainable, "total_parameters": total,
            "trainable_percentage": 100.0 * trainable / total}


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


class ExploraModule(L.LightningModule):
    """Self-supervised (or labelled) extended pre-training of a PEFT-parameterised backbone."""

    def __init__(self, student: PeftModel, objective: str, settings: ExploraSettings, total_steps: int,
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
        hidden = self.student(pixel_values=x, bool_masked_pos=mask).last_hidden_state[:, 1:1 + n]
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


@torch.inference_mode()
def backbone_outputs(model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """Last hidden state (every token) of a backbone in eval mode, computed in float32 on the CPU whatever the
    training precision and device were, so merge tolerances mean the same everywhere (no autocast, no TF32)."""
    model.eval().float().cpu()
    with torch.autocast("cpu", enabled=False):
        return model(pixel_values=batch.float().cpu()).last_hidden_state.float()


def save_merged(student: PeftModel, out_dir: Path) -> PreTrainedModel:
    """Merge the adapters into the base weights and write ``save_pretrained`` output (safetensors)."""
    merged = student.merge_and_unload()
    with replace_dir(out_dir) as tmp:
        merged.save_pretrained(tmp, safe_serialization=True)
    return merged


def validate_peft_merge(reference: torch.Tensor, merged_dir: Path, batch: torch.Tensor,
                        tolerance: float) -> dict[str, float | str]:
    """Reload the merged checkpoint from disk and compare its outputs on ``batch`` with ``reference`` (the
    unmerged PEFT model's). Raises ValidationFailure when the max abs difference exceeds ``tolerance``."""
    reloaded = AutoModel.from_pretrained(merged_dir, use_safetensors=True)
    diff = float((backbone_outputs(reloaded, batch) - reference).abs().max())
    result = {"max_output_diff": diff, "tolerance": tolerance, "status": "PASS" if diff <= tolerance else "FAIL"}
    if result["status"] == "FAIL":
        raise ValidationFailure(
            f"PEFT merge validation FAILED: the merged backbone reloaded from '{merged_dir}' differs from the "
            f"unmerged adapter model by {diff:.3g} (> tolerance {tolerance:g}) on {len(batch)} images. Nothing was "
            f"committed: phase1 will not use it.",
            "rerun phase4 (pipeline.force=true); if it persists, report it with the PEFT and transformers versions.")
    return result

