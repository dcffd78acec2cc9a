"""ExPLoRA's parameterisation on a micro backbone: which weights train (fully, by LoRA, or not at all) for each
option, and that every option merges into a plain backbone with the same outputs."""

import pytest
import torch

from streetvision.errors import ConfigError
from streetvision.models.backbones import build_builtin
from streetvision.models.explora import backbone_outputs, explora_parameterise, save_merged, trainable_report
from streetvision.models.selfsup import SelfSupervisedModule, SelfSupervisedSettings

SETTINGS = SelfSupervisedSettings(lr=1e-2, weight_decay=0.0, warmup_fraction=0.0, ema_momentum=0.996,
                                  dino_out_dim=16, n_global_crops=2, teacher_temp=0.04, student_temp=0.1,
                                  center_momentum=0.9, mask_ratio=0.5)


def trained_weights(**options) -> dict[str, str]:
    """Backbone weight name -> 'full' | 'lora' | 'frozen' under ExPLoRA with ``options`` (micro: 2 blocks)."""
    model = explora_parameterise(build_builtin("dinov2-micro", seed=0), 1, 4, 8, 0.0, **options)
    kinds: dict[str, str] = {}
    for name, p in model.named_parameters():
        if ".original_module." in name or not p.requires_grad and "modules_to_save" in name:
            continue
        plain = (name.replace("base_model.model.", "").replace(".modules_to_save.default", "")
                 .replace(".base_layer", ""))
        if ".lora_" in plain:
            kinds[plain.split(".lora_")[0] + ".weight"] = "lora"
        elif p.requires_grad:
            kinds[plain] = "full"
        else:
            kinds.setdefault(plain, "frozen")
    return kinds


def test_the_default_trains_the_last_block_and_lora_on_the_others_attention():
    kinds = trained_weights()
    assert kinds["encoder.layer.1.mlp.fc1.weight"] == "full" and kinds["layernorm.weight"] == "full"
    assert kinds["encoder.layer.0.attention.q_proj.weight"] == "lora"
    assert kinds["encoder.layer.0.mlp.fc1.weight"] == "frozen"
    assert kinds["embeddings.patch_embeddings.projection.weight"] == "frozen"
    assert kinds["encoder.layer.0.norm1.weight"] == "frozen"


def test_unfrozen_from_first_patch_embeddings_and_norms():
    kinds = trained_weights(unfrozen_from="first", train_patch_embeddings=True, train_norms=True)
    assert kinds["encoder.layer.0.mlp.fc1.weight"] == "full"
    assert kinds["encoder.layer.1.attention.q_proj.weight"] == "lora"
    assert kinds["encoder.layer.1.mlp.fc1.weight"] == "frozen"
    assert kinds["embeddings.patch_embeddings.projection.weight"] == "full"
    assert kinds["encoder.layer.1.norm1.weight"] == kinds["encoder.layer.1.norm2.weight"] == "full"
    assert kinds["embeddings.position_embeddings"] == "frozen"
    more = trainable_report(explora_parameterise(build_builtin("dinov2-micro"), 1, 4, 8, 0.0, train_norms=True))
    assert more["trainable_parameters"] > trainable_report(
        explora_parameterise(build_builtin("dinov2-micro"), 1, 4, 8, 0.0))["trainable_parameters"]


def test_too_many_unfrozen_blocks_is_a_config_error():
    with pytest.raises(ConfigError, match=r"unfrozen_blocks=2 must be in \[0, 1\]"):
        explora_parameterise(build_builtin("dinov2-micro"), 2, 4, 8, 0.0)


@pytest.mark.parametrize("options", [{}, {"unfrozen_from": "first", "train_patch_embeddings": True,
                                          "train_norms": True}])
def test_every_option_trains_and_merges_into_the_same_function(tmp_path, options):
    torch.manual_seed(0)
    student = explora_parameterise(build_builtin("dinov2-micro", seed=0).train(), 1, 4, 8, 0.0, **options)
    module = SelfSupervisedModule(student, "masked", SETTINGS, total_steps=3)
    optimizer = module.configure_optimizers()["optimizer"]
    images = torch.randn(8, 3, 56, 56, generator=torch.Generator().manual_seed(0))
    for _ in range(3):  # plain optimisation steps: the point is which weights move, not Lightning
        optimizer.zero_grad()
        module._masked_step(images).backward()
        optimizer.step()
    reference = backbone_outputs(student, images)
    merged = save_merged(student, tmp_path / "merged")
    assert torch.allclose(backbone_outputs(merged, images), reference, atol=1e-5)
    start = build_builtin("dinov2-micro", seed=0).state_dict()
    changed = {k for k, v in merged.state_dict().items() if not torch.equal(v, start[k])}
    if options:
        assert "embeddings.patch_embeddings.projection.weight" in changed and "encoder.layer.1.norm1.weight" in changed
    else:
        assert "embeddings.patch_embeddings.projection.weight" not in changed
