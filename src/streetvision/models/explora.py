"""ExPLoRA (Khanna et al., ICML 2025): continue a ViT's self-supervised pre-training on the target domain with
the last ``unfrozen_blocks`` blocks (and the final norm) fully trainable and PEFT LoRA on the attention
projections of every other block; then merge the adapters and prove the merge. The training itself is
models/selfsup.py's :class:`SelfSupervisedModule`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn
from transformers import PreTrainedModel

from streetvision.errors import ConfigError, ValidationFailure
from streetvision.io import replace_dir
from streetvision.models.adapters import wrap
from streetvision.models.backbones import from_pretrained
from streetvision.models.classifier import attention_targets

if TYPE_CHECKING:
    from peft import PeftModel


def num_blocks(backbone: PreTrainedModel) -> int:
    """Number of transformer blocks."""
    return int(backbone.config.num_hidden_layers)


def blocks_path(backbone: nn.Module) -> str:
    """Module path of the backbone's list of transformer blocks (DINOv2: ``encoder.layer``; the layout differs
    between families and transformers versions, so it is found, not assumed): the ModuleList of
    ``num_hidden_layers`` entries."""
    n = num_blocks(backbone)
    for name, module in backbone.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) == n and name:
            return name
    raise ConfigError(f"Could not find the {n} transformer blocks of this {backbone.config.model_type} backbone.",
                      "use a DINOv2, ViT or DeiT backbone for phase4.")


def explora_parameterise(backbone: PreTrainedModel, unfrozen_blocks: int, r: int, alpha: int, dropout: float,
                         unfrozen_from: str = "last", train_patch_embeddings: bool = False,
                         train_norms: bool = False, adapter: str = "lora") -> PeftModel:
    """A PEFT ``adapter`` (models.adapters: LoRA in the paper) on the attention projections of every block except ``unfrozen_blocks`` blocks at the ``last`` (the
    paper's setting) or ``first`` end, which train fully, as does the final ``layernorm`` (PEFT
    ``modules_to_save``: saved with the adapter and merged). Optionally the patch embedding and the layer norms of
    the LoRA blocks train fully too: a shift in low-level statistics (light, colour, sensor noise) is met where
    pixels first enter the network."""
    n = num_blocks(backbone)
    if not 0 <= unfrozen_blocks < n:
        raise ConfigError(f"model.explora.unfrozen_blocks={unfrozen_blocks} must be in [0, {n - 1}] for a "
                          f"{n}-block backbone.", "use 1 or 2 (the paper's setting).")
    full = range(n - unfrozen_blocks, n) if unfrozen_from == "last" else range(unfrozen_blocks)
    lora = [i for i in range(n) if i not in full]
    blocks = blocks_path(backbone)
    saved = [f"{blocks}.{i}" for i in full] + ["layernorm"]
    if train_patch_embeddings:
        saved.append("embeddings.patch_embeddings")
    if train_norms:
        saved += [f"{blocks}.{i}.{name}" for i in lora for name, module in
                  backbone.get_submodule(f"{blocks}.{i}").named_modules() if isinstance(module, nn.LayerNorm)]
    # e.g. transformers 5.x: encoder.layer.N.attention.q_proj; 4.x: encoder.layer.N.attention.attention.query
    targets = (rf"(?:.*\.)?{re.escape(blocks)}\.({'|'.join(map(str, lora))})\.(?:.*\.)?"
               rf"({'|'.join(attention_targets(backbone))})")
    return wrap(backbone, adapter, r, alpha, dropout, targets, modules_to_save=saved)


def trainable_report(model: nn.Module) -> dict[str, float]:
    """Trainable and total parameters of the backbone (excluding PEFT's frozen copies of saved modules)."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen_copies = sum(p.numel() for n, p in model.named_parameters() if ".original_module." in n)
    total = sum(p.numel() for p in model.parameters()) - frozen_copies
    return {"trainable_parameters": trainable, "total_parameters": total,
            "trainable_percentage": 100.0 * trainable / total}


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
    reloaded = from_pretrained(merged_dir, use_safetensors=True)
    diff = float((backbone_outputs(reloaded, batch) - reference).abs().max())
    result = {"max_output_diff": diff, "tolerance": tolerance, "status": "PASS" if diff <= tolerance else "FAIL"}
    if result["status"] == "FAIL":
        raise ValidationFailure(
            f"PEFT merge validation FAILED: the merged backbone reloaded from '{merged_dir}' differs from the "
            f"unmerged adapter model by {diff:.3g} (> tolerance {tolerance:g}) on {len(batch)} images. Nothing was "
            f"committed: phase1 will not use it.",
            "rerun phase4 (pipeline.force=true); if it persists, report it with the PEFT and transformers versions.")
    return result

