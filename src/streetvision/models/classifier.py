"""The roadwork classifier: backbone + head, the three fine-tuning modes, and safetensors save/load.

Modes (``model.finetune``):
- ``frozen``: the backbone is a fixed feature extractor (a linear probe trains on cached embeddings);
- ``lora``: PEFT LoRA (or DoRA) adapters on the attention projections; the head trains fully; merged on save;
- ``full``: every parameter trains, except DINOv2's ``embeddings.mask_token``, which only masked-image modelling
  uses: it gets no gradient in classification, so freezing it lets plain DDP run without find_unused_parameters.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn
from transformers import AutoConfig, PreTrainedModel
from transformers.utils import logging as hf_logging

from streetvision.config import CHOICES
from streetvision.data.preprocess import Preprocess
from streetvision.errors import ConfigError, IntegrityError
from streetvision.io import atomic_write_json, atomic_write_safetensors, replace_dir
from streetvision.models.backbones import base_model_class, embedding_dim, pooled_embedding, resolve_pooling
from streetvision.models.families import family, family_of

FINETUNE_MODES = CHOICES["model.finetune"]
HEAD_TYPES = CHOICES["model.head"]

# A saved classifier: the backbone (save_pretrained), the head, and the spec that rebuilds it around them.
BACKBONE_DIR, HEAD_FILE, SPEC_FILE = "backbone", "head.safetensors", "model.json"
MODEL_FILES = (BACKBONE_DIR, HEAD_FILE, SPEC_FILE)
DERIVED_BUFFERS = ("relative_position_index", "position_ids")


@dataclass
class ClassifierSpec:
    """Everything needed to rebuild the classifier around a saved backbone (saved as model.json)."""

    class_names: list[str]
    head: str = "linear"
    head_hidden: int = 256
    head_dropout: float = 0.0
    pooling: str = "cls"
    embedding_dim: int = 0
    preprocess: dict = field(default_factory=dict)
    finetune: str = "full"
    backbone_source: str = ""


def make_head(kind: str, in_dim: int, num_classes: int, hidden: int, dropout: float) -> nn.Module:
    """A linear head, or a one-hidden-layer MLP head."""
    if kind == "linear":
        return nn.Sequential(nn.Dropout(dropout), nn.Linear(in_dim, num_classes))
    if kind == "mlp":
        return nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, num_classes))
    raise ConfigError(f"Unknown head '{kind}'. Valid choices: {', '.join(HEAD_TYPES)}.", "set model.head=linear|mlp.")


class RoadworkClassifier(nn.Module):
    """Backbone embedding -> head logits [N, num_classes]."""

    def __init__(self, backbone: PreTrainedModel, spec: ClassifierSpec) -> None:
        super().__init__()
        self.backbone = backbone
        self.spec = spec
        spec.pooling = resolve_pooling(backbone, spec.pooling)  # "family" is recorded as what it means
        spec.embedding_dim = embedding_dim(backbone, spec.pooling)
        self.head = make_head(spec.head, spec.embedding_dim, len(spec.class_names), spec.head_hidden,
                              spec.head_dropout)

    def embed(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Pooled backbone embedding (``spec.pooling``)."""
        return pooled_embedding(self.backbone, pixel_values, self.spec.pooling)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(pixel_values))


def attention_targets(backbone: nn.Module, requested: list[str] | None = None) -> list[str]:
    """LoRA target module names: ``requested``, or the family's defaults (attention projections; for the
    convolutional families their pointwise / 1 x 1 layers) that this backbone has. Linear and ungrouped Conv2d
    layers qualify (what PEFT's LoRA wraps)."""
    leaf_names = {name.rsplit(".", 1)[-1] for name, m in backbone.named_modules()
                  if isinstance(m, nn.Linear) or (isinstance(m, nn.Conv2d) and m.groups == 1)}
    if requested:
        missing = [t for t in requested if t not in leaf_names]
        if missing:
            raise ConfigError(f"LoRA target module(s) {missing} not found in the backbone; its linear and "
                              f"convolution layers are named {sorted(leaf_names)}.",
                              "set model.lora.target_modules to some of those names.")
        return list(requested)
    found = [n for n in family_of(backbone).lora_targets if n in leaf_names]
    if not found:
        raise ConfigError(f"Could not find the default LoRA targets of this {family_of(backbone).model_type} "
                          f"backbone; its linear and convolution layers are named {sorted(leaf_names)}.",
                          "set model.lora.target_modules explicitly.")
    return found


def apply_finetune_mode(model: RoadworkClassifier, mode: str, r: int = 8, alpha: int = 16, dropout: float = 0.05,
                        target_modules: list[str] | None = None, adapter: str = "lora") -> RoadworkClassifier:
    """Set which parameters train; in ``lora`` mode wrap the backbone with the PEFT ``adapter``
    (models.adapters.ADAPTERS) on its attention projections (or ``target_modules``)."""
    if mode not in FINETUNE_MODES:
        raise ConfigError(f"Unknown model.finetune '{mode}'. Valid choices: {', '.join(FINETUNE_MODES)}.",
                          "set model.finetune=frozen|lora|full.")
    if mode == "lora":
        from streetvision.models.adapters import wrap

        model.backbone = wrap(model.backbone, adapter, r, alpha, dropout,
                              attention_targets(model.backbone, target_modules))  # the base frozen
    else:
        for p in model.backbone.parameters():
            p.requires_grad = mode == "full"
    for name, p in model.backbone.named_parameters():
        if name.endswith("mask_token"):
            p.requires_grad = False  # see module docstring
    for p in model.head.parameters():
        p.requires_grad = True
    return model


def merged(model: RoadworkClassifier) -> RoadworkClassifier:
    """Fold PEFT adapters into the backbone weights (no-op for frozen / full)."""
    peft = sys.modules.get("peft")  # a PeftModel can only exist once peft was imported
    if peft is not None and isinstance(model.backbone, peft.PeftModel):
        model.backbone = model.backbone.merge_and_unload()
    return model


def trainable_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    return sum(p.numel() for p in model.parameters() if p.requires_grad), total


def save_classifier(model: RoadworkClassifier, out_dir: Path) -> list[Path]:
    """Write ``backbone/`` (save_pretrained, safetensors), ``head.safetensors`` and ``model.json`` (MODEL_FILES)."""
    model = merged(model)
    with replace_dir(out_dir / BACKBONE_DIR) as tmp:
        model.backbone.save_pretrained(tmp, safe_serialization=True)
    atomic_write_safetensors(out_dir / HEAD_FILE, model.head.state_dict())
    atomic_write_json(out_dir / SPEC_FILE, asdict(model.spec))
    return [out_dir / name for name in MODEL_FILES]


def load_backbone_dir(backbone_dir: Path) -> PreTrainedModel:
    """A ``save_pretrained`` backbone from config.json and safetensors only; IntegrityError naming the file when
    either is malformed or when they disagree (a weight missing, unexpected or of the wrong shape)."""
    config_file, weights = backbone_dir / "config.json", backbone_dir / "model.safetensors"
    try:
        config = AutoConfig.from_pretrained(backbone_dir)
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise IntegrityError(f"'{config_file}' is missing or malformed ({type(exc).__name__}: {exc}).",
                             "restore the original file or re-export the model.") from exc
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # a mismatch is reported below as one IntegrityError, not a load report
    try:
        fam = family(str(config.model_type))
        backbone, info = base_model_class(fam).from_pretrained(backbone_dir, config=config, use_safetensors=True,
                                                               output_loading_info=True, **fam.base_kwargs)
    except ConfigError as exc:
        raise IntegrityError(f"'{config_file}': {exc.message}", "restore the original file or re-export the "
                             "model.") from exc
    except (OSError, ValueError, TypeError, KeyError, RuntimeError, SafetensorError) as exc:
        raise IntegrityError(f"'{weights}' does not load with '{config_file}' ({type(exc).__name__}: {exc}).",
                             "restore the original files or re-export the model.") from exc
    finally:
        hf_logging.set_verbosity(verbosity)
    # buffers computed in __init__ that one transformers version saves and another does not (Swin's
    # relative_position_index is persistent in 4.x, not in 5.x): missing from the file, rebuilt identically
    info["missing_keys"] = [k for k in info.get("missing_keys", []) if not k.endswith(DERIVED_BUFFERS)]
    if info["missing_keys"] and _load_with_prefix(backbone, weights, info):
        info["missing_keys"], info["unexpected_keys"] = [], []
    problems = {k: v for k, v in info.items() if k in ("missing_keys", "unexpected_keys", "mismatched_keys") and v}
    if problems:
        detail = "; ".join(f"{len(v)} {k.replace('_', ' ')} (e.g. {sorted(map(str, v))[0]})"
                           for k, v in problems.items())
        raise IntegrityError(f"'{config_file}' and '{weights}' disagree: {detail}.",
                             "restore the original files or re-export the model.")
    return backbone


def _load_with_prefix(backbone: PreTrainedModel, weights: Path, info: dict) -> bool:
    """Load ``weights`` into ``backbone`` when they are its state under another key prefix, as one transformers
    version saves a model and another expects it (SigLIP's vision model: ``embeddings.*`` from 5.x,
    ``vision_model.embeddings.*`` in 4.x); whether that was the case."""
    missing, unexpected = sorted(info["missing_keys"]), sorted(info.get("unexpected_keys", []))
    if len(missing) != len(unexpected) or not missing[0].endswith(unexpected[0]):
        return False
    prefix = missing[0][:len(missing[0]) - len(unexpected[0])]
    if [prefix + k for k in unexpected] != missing:
        return False
    result = backbone.load_state_dict({prefix + k: v for k, v in load_file(weights).items()}, strict=False)
    return not result.unexpected_keys and all(k.endswith(DERIVED_BUFFERS) for k in result.missing_keys)


def load_classifier(model_dir: Path) -> RoadworkClassifier:
    """Rebuild a saved classifier from safetensors and JSON only (nothing is unpickled)."""
    try:
        spec = ClassifierSpec(**json.loads((model_dir / SPEC_FILE).read_text()))
    except (OSError, TypeError, json.JSONDecodeError) as exc:
        raise IntegrityError(f"'{model_dir / SPEC_FILE}' is missing or malformed ({exc}).",
                             "re-export the model.") from exc
    model = RoadworkClassifier(load_backbone_dir(model_dir / BACKBONE_DIR), spec)
    try:
        head_state = load_file(model_dir / HEAD_FILE)
    except (OSError, SafetensorError) as exc:
        raise IntegrityError(f"'{model_dir / HEAD_FILE}' is not a readable safetensors file ({exc}).",
                             "restore the original file or re-export the model.") from exc
    try:
        model.head.load_state_dict(head_state)
    except RuntimeError as exc:
        raise IntegrityError(f"'{model_dir / 'head.safetensors'}' does not fit the head described in model.json "
                             f"(pooling '{spec.pooling}', embedding width {model.spec.embedding_dim}): {exc}",
                             "re-export the model; model.json and the weights come from different runs.") from exc
    return model.eval()


def spec_preprocess(spec: ClassifierSpec) -> Preprocess:
    """The Preprocess recorded in a spec."""
    return Preprocess.from_dict(spec.preprocess)
