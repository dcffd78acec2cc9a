"""Backbones by name through one factory, with their preprocessing attached (timm-style).

``model.backbone`` is either a built-in name (random-weight configs of every family, :data:`families.BUILTIN`: micro
sizes for unit tests, tiny ones for CPU work, ViT-S/B shapes for GPU checks) or anything ``from_pretrained``
accepts: a Hugging Face hub id (``facebook/dinov2-small``, ``facebook/convnextv2-atto-1k-224``) or a local directory
in ``save_pretrained`` form, of a supported family (:mod:`streetvision.models.families`). The backbone is the
family's base model as its ``*ForImageClassification`` builds it. Input size, mean and std come from the
checkpoint's image processor when it ships one, otherwise from the model config (``image_size``) and the family's
statistics.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import nn
from transformers import AutoConfig, PreTrainedModel

from streetvision.config import CHOICES
from streetvision.data.preprocess import Preprocess
from streetvision.errors import ConfigError
from streetvision.models.families import BUILTIN, Family, family, family_of

POOLINGS = CHOICES["model.pooling"]
FAMILY_POOLING = "family"  # model.pooling: the family's own (what its *ForImageClassification computes)


def is_builtin(name: str) -> bool:
    """Whether ``name`` is a built-in random-weight config."""
    return name in BUILTIN


def base_model_class(fam: Family) -> type[PreTrainedModel]:
    """The base model class of a family (what ``AutoModel`` maps its config to)."""
    from transformers.models.auto.modeling_auto import MODEL_MAPPING_NAMES

    import transformers

    return getattr(transformers, MODEL_MAPPING_NAMES[fam.model_type])


def build_builtin(name: str, seed: int = 0) -> PreTrainedModel:
    """A randomly initialised backbone of a built-in config (deterministic per seed). Batch norms start at the
    identity (weight 1, bias 0): transformers 5.x initialises EfficientNet's as N(0, 0.02), which scales every
    activation by ~0.02 per layer, so a random EfficientNet-B0 outputs ~1e-30 and never trains."""
    model_type, kwargs = BUILTIN[name]
    fam = family(model_type)
    config = AutoConfig.for_model(model_type, **{**kwargs, **fam.config_overrides})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = base_model_class(fam)(config, **fam.base_kwargs)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.reset_parameters()
    return model


def from_pretrained(source: str | Path, **kwargs) -> PreTrainedModel:
    """The family's base model from a hub id or directory (also from a checkpoint of its *ForImageClassification
    or, for SigLIP, of the two-tower model), built as the family's classifier builds it."""
    config = AutoConfig.from_pretrained(source)
    fam = family(str(config.model_type))
    if config.model_type != fam.model_type:  # a two-tower SigLIP checkpoint: its vision tower
        config = config.vision_config
    for key, value in fam.config_overrides.items():
        setattr(config, key, value)
    return base_model_class(fam).from_pretrained(source, config=config, **fam.base_kwargs, **kwargs)


def _source_error(name_or_path: str, exc: Exception, what: str = "") -> ConfigError:
    """The one paragraph for a backbone source that does not load."""
    kind = "local directory" if Path(name_or_path).exists() else "hub id"
    return ConfigError(f"Cannot load backbone '{name_or_path}' ({kind}): {what}{exc}",
                       f"use a built-in name ({', '.join(BUILTIN)}), a directory written by save_pretrained, or a hub "
                       f"id that is in the local Hugging Face cache (no network at run time).")


def load_backbone(name_or_path: str, seed: int = 0) -> PreTrainedModel:
    """Built-in name, hub id or local ``save_pretrained`` directory -> a transformers vision model."""
    if is_builtin(name_or_path):
        return build_builtin(name_or_path, seed)
    try:
        return from_pretrained(name_or_path)
    except (OSError, ValueError) as exc:
        raise _source_error(name_or_path, exc) from exc


def backbone_family(name_or_path: str) -> Family:
    """The Family of a backbone source from its config alone (no weights read): checks a source before any work."""
    if is_builtin(name_or_path):
        return family(BUILTIN[name_or_path][0])
    try:
        config = AutoConfig.from_pretrained(name_or_path)
    except (OSError, ValueError) as exc:
        raise _source_error(name_or_path, exc, "its config does not load: ") from exc
    return family(str(config.model_type))


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
    fam = family_of(model)
    size = getattr(model.config, "image_size", 224)
    return Preprocess(int(size if isinstance(size, int) else size[0]), fam.mean, fam.std)


def embedding_dim(model: PreTrainedModel, pooling: str = "cls") -> int:
    """Width of the pooled embedding (twice the hidden size for the concatenating poolings)."""
    pooling = resolve_pooling(model, pooling)
    config = model.config
    width = int(getattr(config, "hidden_dim", None) if config.model_type == "efficientnet"
                else getattr(config, "hidden_size", None) or config.hidden_sizes[-1])
    return 2 * width if pooling.startswith("cls_") else width


def _cls_and_patches(model: PreTrainedModel, out) -> tuple[torch.Tensor, torch.Tensor]:
    """(image token [N, D], patch tokens [N, P, D]) of a backbone output. ViT-style outputs [N, T, D] carry the
    CLS token first, then ``num_register_tokens`` registers (DINOv2 with registers), then the patches; CNN-style
    feature maps [N, D, H, W] have no CLS token, so the pooled output stands in for it."""
    hidden, pooled = out.last_hidden_state, getattr(out, "pooler_output", None)
    if hidden.ndim == 4:
        patches = hidden.flatten(2).transpose(1, 2)
        return (pooled.flatten(1) if pooled is not None else patches.mean(1)), patches
    skip = family_of(model).prefix_tokens + int(getattr(model.config, "num_register_tokens", 0) or 0)
    return (pooled if pooled is not None else hidden[:, 0]), hidden[:, skip:]


def resolve_pooling(model: PreTrainedModel, pooling: str) -> str:
    """``pooling``, with ``family`` replaced by the pooling the family's classifier uses."""
    return family_of(model).pooling if pooling == FAMILY_POOLING else pooling


def pooled_embedding(model: PreTrainedModel, pixel_values: torch.Tensor, pooling: str = "cls") -> torch.Tensor:
    """The backbone's image embedding under ``pooling`` (``model.pooling``):

    - ``family``: what the family's ``*ForImageClassification`` computes (DINOv2: ``cls_mean``; ViT, DeiT: the
      CLS token; Swin, ConvNeXt V2, ResNet, EfficientNet: their pooled output; SigLIP: the mean of the tokens);

    - ``cls``: the pooled output when the model has one, else the CLS token (the standard probe);
    - ``mean`` / ``max``: mean / feature-wise max over the patch tokens. Max pooling suits presence questions
      ("is there a cone anywhere?"): one patch that sees a small object sets the feature, where the CLS token or a
      mean dilutes it among ~60 background patches (measured on the tiny backbone from scratch: see the preset);
    - ``cls_mean`` / ``cls_max``: the CLS embedding concatenated with the mean / max of the patches.
    """
    pooling = resolve_pooling(model, pooling)
    if pooling not in POOLINGS:
        raise ConfigError(f"Unknown model.pooling '{pooling}'. Valid choices: {', '.join(POOLINGS)}.",
                          "set model.pooling to one of the choices.")
    size = getattr(model.config, "image_size", None)
    resized = family_of(model).resize_flag and isinstance(size, int) and pixel_values.shape[-1] != size
    out = model(pixel_values=pixel_values, interpolate_pos_encoding=True) if resized else model(pixel_values=pixel_values)
    cls, patches = _cls_and_patches(model, out)
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
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")  # 0-dim: BatchNorm
    return digest.hexdigest()

