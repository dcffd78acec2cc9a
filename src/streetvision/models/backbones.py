"""Backbones by name through one factory, with their preprocessing attached (timm-style).

``model.backbone`` is either a built-in name (random-weight DINOv2 configs: micro and tiny for CPU work, small-random
and base-random with the ViT-S/14 and ViT-B/14 shapes for GPU checks) or anything
``AutoModel.from_pretrained`` accepts: a Hugging Face hub id (``facebook/dinov2-small``) or a local directory in
``save_pretrained`` form. Input size, mean and std come from the checkpoint's image processor when it ships one,
otherwise from the model config (``image_size``) and ImageNet statistics (what DINOv2 was trained with).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from transformers import AutoModel, Dinov2Config, Dinov2Model, PreTrainedModel

from streetvision.config import CHOICES
from streetvision.data.preprocess import Preprocess
from streetvision.errors import ConfigError

POOLINGS = CHOICES["model.pooling"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

BUILTIN: dict[str, dict] = {
    # unit tests: ~0.1 M parameters, 56 px
    "dinov2-micro": dict(hidden_size=48, num_hidden_layers=2, num_attention_heads=2, intermediate_size=96,
                         patch_size=14, image_size=56),
    # CPU demos: 2.8 M parameters, 112 px (about 250 img/s inference on 2 cores)
    "dinov2-tiny": dict(hidden_size=192, num_hidden_layers=6, num_attention_heads=3, intermediate_size=768,
                        patch_size=14, image_size=112),
    # GPU checks and throughput benchmarks without downloading weights: the shapes (and so the FLOPs) of
    # DINOv2 ViT-S/14 (22 M parameters) and ViT-B/14 (86 M) at 224 px, with random weights
    "dinov2-small-random": dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6,
                                intermediate_size=1536, patch_size=14, image_size=224),
    "dinov2-base-random": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                               intermediate_size=3072, patch_size=14, image_size=224),
}


def is_builtin(name: str) -> bool:
    """Whether ``name`` is a built-in random-weight config."""
    return name in BUILTIN


def build_builtin(name: str, seed: int = 0) -> PreTrainedModel:
    """A randomly initialised DINOv2 of a built-in size (deterministic per seed)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Dinov2Model(Dinov2Config(**BUILTIN[name]))


def load_backbone(name_or_path: str, seed: int = 0) -> PreTrainedModel:
    """Built-in name, hub id or local ``save_pretrained`` directory -> a transformers vision model."""
    if is_builtin(name_or_path):
        return build_builtin(name_or_path, seed)
    try:
        return AutoModel.from_pretrained(name_or_path)
    except (OSError, ValueError) as exc:
        local = Path(name_or_path).exists()
        raise ConfigError(
            f"Cannot load backbone '{name_or_path}' ({'local directory' if local else 'hub id'}): {exc}",
            f"use a built-in name ({', '.join(BUILTIN)}), a directory written by save_pretrained, or a hub id "
            f"that is in the local Hugging Face cache (no network at run time).",
        ) from exc


def preprocess_for(model: PreTrainedModel, name_or_path: str | None = None) -> Preprocess:
    """Input size, mean and std for ``model``: from its image processor if one is saved, else from its config."""
    if name_or_path and not is_builtin(name_or_path):
        try:
            from transformers import AutoImageProcessor

            proc = AutoImageProcessor.from_pretrained(name_or_path)
            crop = getattr(proc, "crop_size", None) or getattr(proc, "size", None) or {}
            size = crop.get("height") or crop.get("shortest_edge")
            if size:
                return Preprocess(int(size), tuple(proc.image_mean), tuple(proc.image_std))
        except (OSError, ValueError, TypeError):
            pass  # no processor saved: fall back to the config
    size = getattr(model.config, "image_size", 224)
    return Preprocess(int(size if isinstance(size, int) else size[0]), IMAGENET_MEAN, IMAGENET_STD)


def embedding_dim(model: PreTrainedModel, pooling: str = "cls") -> int:
    """Width of the pooled embedding (twice the hidden size for the concatenating poolings)."""
    width = int(getattr(model.config, "hidden_size", None) or model.config.hidden_sizes[-1])
    return 2 * width if pooling.startswith("cls_") else width


def _cls_and_patches(model: PreTrainedModel, out) -> tuple[torch.Tensor, torch.Tensor]:
    """(image token [N, D], patch tokens [N, P, D]) of a backbone output. ViT-style outputs [N, T, D] carry the
    CLS token first, then ``num_register_tokens`` registers (DINOv2 with registers), then the patches; CNN-style
    feature maps [N, D, H, W] have no CLS token, so the pooled output stands in for it."""
    hidden, pooled = out.last_hidden_state, getattr(out, "pooler_output", None)
    if hidden.ndim == 4:
        patches = hidden.flatten(2).transpose(1, 2)
        return (pooled.flatten(1) if pooled is not None else patches.mean(1)), patches
    skip = 1 + int(getattr(model.config, "num_register_tokens", 0) or 0)
    return (pooled if pooled is not None else hidden[:, 0]), hidden[:, skip:]


def pooled_embedding(model: PreTrainedModel, pixel_values: torch.Tensor, pooling: str = "cls") -> torch.Tensor:
    """The backbone's image embedding under ``pooling`` (``model.pooling``):

    - ``cls``: the pooled output when the model has one, else the CLS token (the standard probe);
    - ``mean`` / ``max``: mean / feature-wise max over the patch tokens. Max pooling suits presence questions
      ("is there a cone anywhere?"): one patch that sees a small object sets the feature, where the CLS token or a
      mean dilutes it among ~60 background patches (measured on the tiny backbone from scratch: see the preset);
    - ``cls_mean`` / ``cls_max``: the CLS embedding concatenated with the mean / max of the patches.
    """
    if pooling not in POOLINGS:
        raise ConfigError(f"Unknown model.pooling '{pooling}'. Valid choices: {', '.join(POOLINGS)}.",
                          "set model.pooling to one of the choices.")
    cls, patches = _cls_and_patches(model, model(pixel_values=pixel_values))
    if pooling == "cls":
        return cls
    reduce = (lambda t: t.mean(1)) if pooling.endswith("mean") else (lambda t: t.amax(1))
    return reduce(patches) if pooling in ("mean", "max") else torch.cat([cls, reduce(patches)], dim=1)


def state_checksum(model: torch.nn.Module) -> str:
    """SHA-256 over parameter names, shapes and bytes (identifies a backbone for caches)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()

