"""Backbone families: what each transformers image-classification family needs from us, in one table.

A family is a transformers ``model_type`` whose ``*ForImageClassification`` the NATIX base miner serves. For each we
record how its classifier pools the base model's output (so our backbone + linear head is exactly that class), the
base model's constructor arguments that drop what the classifier does not use (ViT's pooler, SigLIP's attention
pooling head, as a config value), its LoRA targets (linear layers, and 1 x 1 convolutions where a family has no attention), the config
fields NATIX's pinned transformers 4.45 reads (an export writes only those), its image processor's fields, and
whether the self-supervised phases apply. Built-in presets (random weights, sized for CPU) live here too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from streetvision.errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HALF = (0.5, 0.5, 0.5)  # SigLIP's normalisation
BILINEAR = 2  # PIL.Image.BILINEAR, as transformers' processors record "resample"

# How a processor frames an image of any shape before the S x S crop (data.preprocess's rules): the BiT and ConvNeXt
# processors resize the short side to S and centre-crop; the ViT, DeiT, EfficientNet and SigLIP ones squash to S x S.
SHORT_SIDE, SQUASH = "short_side", "squash"


@dataclass(frozen=True)
class Family:
    """One transformers image-classification family (module docstring)."""

    model_type: str  # the backbone's config.model_type
    classifier: str  # the transformers class the export is (and the miner loads)
    pooling: str  # our model.pooling that equals the classifier's own (backbones.pooled_embedding)
    config_fields: tuple[str, ...]  # the config fields transformers 4.45's config class takes
    lora_targets: tuple[str, ...]  # default LoRA target module names
    processor: str = SHORT_SIDE  # SHORT_SIDE | SQUASH
    processor_extra: dict[str, Any] = field(default_factory=dict)  # processor fields besides the common ones
    base_kwargs: dict[str, Any] = field(default_factory=dict)  # base model constructor arguments
    config_overrides: dict[str, Any] = field(default_factory=dict)  # config values the base model is built with
    prefix_tokens: int = 1  # tokens before the patches in last_hidden_state (CLS, distillation)
    transformer: bool = True  # a ViT (self-supervised phases apply) or a convolutional network
    conv_targets: bool = False  # whether lora_targets are Conv2d layers (ConvNeXt V2's pointwise layers are Linear)
    selfsup: bool = False  # whether pretrain / phase4 (DINO, masked, ExPLoRA) are implemented for it
    resize_flag: bool = False  # whether inputs of another size need interpolate_pos_encoding=True (DINO's local crops)
    natix: bool = True  # whether NATIX's pinned transformers 4.45 has the classifier class (the export is refused if not)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    @property
    def export_model_type(self) -> str:
        """config.json's model_type of the export (SigLIP's classifier takes the two-tower config)."""
        return "siglip" if self.model_type == "siglip_vision_model" else self.model_type


_VIT_FIELDS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_act",
               "hidden_dropout_prob", "attention_probs_dropout_prob", "initializer_range", "layer_norm_eps",
               "image_size", "patch_size", "num_channels", "qkv_bias", "encoder_stride")
# transformers 5.x names attention projections q_proj, k_proj, v_proj; 4.x query, key, value
QKV = ("q_proj", "k_proj", "v_proj", "query", "key", "value")

FAMILIES: dict[str, Family] = {f.model_type: f for f in (
    Family("dinov2", "Dinov2ForImageClassification", "cls_mean",
           ("hidden_size", "num_hidden_layers", "num_attention_heads", "mlp_ratio", "hidden_act",
            "hidden_dropout_prob", "attention_probs_dropout_prob", "initializer_range", "layer_norm_eps",
            "image_size", "patch_size", "num_channels", "qkv_bias", "layerscale_value", "drop_path_rate",
            "use_swiglu_ffn"),
           QKV, selfsup=True),
    # DINOv2 with registers: trains and serves from a bundle; transformers 4.45 lacks its classifier class
    Family("dinov2_with_registers", "Dinov2WithRegistersForImageClassification", "cls_mean",
           ("hidden_size", "num_hidden_layers", "num_attention_heads", "mlp_ratio", "hidden_act",
            "hidden_dropout_prob", "attention_probs_dropout_prob", "initializer_range", "layer_norm_eps",
            "image_size", "patch_size", "num_channels", "qkv_bias", "layerscale_value", "drop_path_rate",
            "use_swiglu_ffn", "num_register_tokens"),
           QKV, selfsup=True, natix=False),
    # ViT and DeiT keep a mask token (masked-patch pre-training; frozen in classification, absent from the export)
    Family("vit", "ViTForImageClassification", "cls", _VIT_FIELDS, QKV, SQUASH,
           base_kwargs={"add_pooling_layer": False, "use_mask_token": True}, selfsup=True, resize_flag=True),
    Family("deit", "DeiTForImageClassification", "cls", _VIT_FIELDS, QKV, SQUASH,
           processor_extra={"do_center_crop": False}, base_kwargs={"add_pooling_layer": False, "use_mask_token": True},
           prefix_tokens=2, selfsup=True, resize_flag=True),
    Family("swin", "SwinForImageClassification", "cls",
           ("image_size", "patch_size", "num_channels", "embed_dim", "depths", "num_heads", "window_size",
            "mlp_ratio", "qkv_bias", "hidden_dropout_prob", "attention_probs_dropout_prob", "drop_path_rate",
            "hidden_act", "use_absolute_embeddings", "initializer_range", "layer_norm_eps", "encoder_stride"),
           QKV, SQUASH, prefix_tokens=0),
    Family("siglip_vision_model", "SiglipForImageClassification", "mean",
           ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_channels",
            "image_size", "patch_size", "hidden_act", "layer_norm_eps", "attention_dropout", "vision_use_head"),
           QKV, SQUASH, processor_extra={"do_convert_rgb": True},
           config_overrides={"vision_use_head": False}, prefix_tokens=0, mean=HALF, std=HALF, resize_flag=True),
    Family("convnextv2", "ConvNextV2ForImageClassification", "cls",
           ("num_channels", "patch_size", "num_stages", "hidden_sizes", "depths", "hidden_act", "initializer_range",
            "layer_norm_eps", "drop_path_rate", "image_size"),
           ("pwconv1", "pwconv2"), processor_extra={"crop_pct": 1.0}, prefix_tokens=0, transformer=False),
    Family("resnet", "ResNetForImageClassification", "cls",
           ("num_channels", "embedding_size", "hidden_sizes", "depths", "layer_type", "hidden_act",
            "downsample_in_first_stage", "downsample_in_bottleneck"),
           ("convolution",), processor_extra={"crop_pct": 1.0}, prefix_tokens=0, transformer=False,
           conv_targets=True),
    Family("efficientnet", "EfficientNetForImageClassification", "cls",
           ("num_channels", "image_size", "width_coefficient", "depth_coefficient", "depth_divisor", "kernel_sizes",
            "in_channels", "out_channels", "depthwise_padding", "strides", "num_block_repeats", "expand_ratios",
            "squeeze_expansion_ratio", "hidden_act", "hidden_dim", "pooling_type", "initializer_range",
            "batch_norm_eps", "batch_norm_momentum", "dropout_rate", "drop_connect_rate"),
           ("expand_conv", "project_conv"), SQUASH,
           processor_extra={"do_center_crop": False, "rescale_offset": False, "include_top": False},
           prefix_tokens=0, transformer=False, conv_targets=True),
)}
# SigLIP checkpoints on the Hub are usually the two-tower model; we train and export its vision tower
ALIASES = {"siglip": "siglip_vision_model"}

# Built-in random-weight configs: (model_type, config kwargs). dinov2-micro serves unit tests (~0.1 M parameters,
# 56 px); the others are sized for CPU work at 112 px; the *-random ones have the shapes of ViT-S/14 and ViT-B/14 at
# 224 px for GPU checks without downloading weights. benchmarks/backbones.py measures them.
_TINY_VIT = dict(hidden_size=192, num_hidden_layers=6, num_attention_heads=3, intermediate_size=768, image_size=112)
BUILTIN: dict[str, tuple[str, dict[str, Any]]] = {
    "dinov2-micro": ("dinov2", dict(hidden_size=48, num_hidden_layers=2, num_attention_heads=2,
                                    intermediate_size=96, patch_size=14, image_size=56)),
    "dinov2-tiny": ("dinov2", dict(_TINY_VIT, patch_size=14)),
    "dinov2-small-random": ("dinov2", dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6,
                                           intermediate_size=1536, patch_size=14, image_size=224)),
    "dinov2-base-random": ("dinov2", dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                                          intermediate_size=3072, patch_size=14, image_size=224)),
    "vit-tiny": ("vit", dict(_TINY_VIT, patch_size=14)),
    "deit-tiny": ("deit", dict(_TINY_VIT, patch_size=14)),
    # three stages: at 112 px a fourth (3.5 x 3.5 tokens) breaks transformers' window attention
    "swin-tiny": ("swin", dict(image_size=112, patch_size=4, embed_dim=64, depths=[2, 2, 4], num_heads=[2, 4, 8],
                               window_size=7)),
    "siglip-tiny": ("siglip_vision_model", dict(_TINY_VIT, patch_size=14)),
    "convnextv2-atto": ("convnextv2", dict(hidden_sizes=[40, 80, 160, 320], depths=[2, 2, 6, 2], image_size=112)),
    # ResNetConfig has no image_size; an extra config attribute records the input size (preprocess_for)
    "resnet-18": ("resnet", dict(layer_type="basic", embedding_size=64, hidden_sizes=[64, 128, 256, 512],
                                 depths=[2, 2, 2, 2], image_size=112)),
    "efficientnet-b0": ("efficientnet", dict(image_size=112, width_coefficient=1.0, depth_coefficient=1.0,
                                             hidden_dim=1280, dropout_rate=0.2)),
}
# the micro configs unit tests use for every family (tests/models/test_families.py): seconds per micro run
MICRO: dict[str, tuple[str, dict[str, Any]]] = {
    "dinov2-micro": BUILTIN["dinov2-micro"],
    "vit-micro": ("vit", dict(hidden_size=48, num_hidden_layers=2, num_attention_heads=2, intermediate_size=96,
                              patch_size=14, image_size=56)),
    "deit-micro": ("deit", dict(hidden_size=48, num_hidden_layers=2, num_attention_heads=2, intermediate_size=96,
                                patch_size=14, image_size=56)),
    "swin-micro": ("swin", dict(image_size=56, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[1, 2],
                                window_size=7)),
    "siglip-micro": ("siglip_vision_model", dict(hidden_size=48, num_hidden_layers=2, num_attention_heads=2,
                                                 intermediate_size=96, patch_size=14, image_size=56)),
    "convnextv2-micro": ("convnextv2", dict(hidden_sizes=[16, 32], depths=[1, 1], num_stages=2, image_size=56)),
    "resnet-micro": ("resnet", dict(layer_type="basic", embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1],
                                    image_size=56)),
    "efficientnet-micro": ("efficientnet", dict(image_size=56, width_coefficient=0.25, depth_coefficient=0.25,
                                                hidden_dim=320, dropout_rate=0.0)),
}
BUILTIN.update({k: v for k, v in MICRO.items() if k not in BUILTIN})


def supported() -> str:
    """The supported model types, for messages."""
    return ", ".join(sorted(FAMILIES))


def family(model_type: str) -> Family:
    """The Family of a config's model_type; ConfigError naming the supported ones otherwise."""
    model_type = ALIASES.get(model_type, model_type)
    if model_type not in FAMILIES:
        raise ConfigError(f"model.backbone is a '{model_type}' model, which is not a supported image-classification "
                          f"backbone family. Supported families (config.json model_type): {supported()}.",
                          "set model.backbone to a built-in preset (" + ", ".join(BUILTIN) + "), a hub id or a "
                          "save_pretrained directory of one of those families.")
    return FAMILIES[model_type]


def family_of(model: Any) -> Family:
    """The Family of a transformers model (or PEFT wrapper of one)."""
    return family(str(getattr(getattr(model, "config", None), "model_type", "?")))


def check_selfsup(fam: Family, phase: str) -> None:
    """ConfigError, before any work, unless the self-supervised phases are implemented for ``fam``."""
    if fam.selfsup:
        return
    if fam.transformer:
        what = (f"{fam.model_type} is a vision transformer, but its self-supervised phases are not implemented "
                "here: our DINO, masked-patch and ExPLoRA code needs a plain ViT (one list of blocks, a CLS token and "
                "a mask token: DINOv2, ViT, DeiT).")
    else:
        what = (f"{fam.model_type} is a convolutional network: the pretrain phase and phase4 (ExPLoRA) are defined "
                "for ViT families, and its own masked pre-training (ConvNeXt V2's FCMAE, sparse convolutions) is not "
                "implemented here.")
    raise ConfigError(f"{phase} cannot train a {fam.model_type} backbone. {what} What does apply to it: phase1 "
                      f"(frozen, lora or full fine-tuning), phase2, phase5, phase6 and the Hugging Face export.",
                      f"drop {phase} from pipeline.phases, or use a DINOv2, ViT or DeiT backbone for it (model="
                      "dinov2_tiny, vit_tiny, deit_tiny, dinov2_small, dinov2_base).")
