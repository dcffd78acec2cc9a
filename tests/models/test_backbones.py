"""Built-in random-weight backbones: the GPU-check sizes have DINOv2 ViT-S/14 and ViT-B/14 shapes at 224 px."""

from streetvision.models.backbones import build_builtin, preprocess_for


def test_random_weight_vit_s_and_vit_b_have_the_dinov2_shapes():
    sizes = {name: sum(p.numel() for p in build_builtin(name).parameters())
             for name in ("dinov2-small-random", "dinov2-base-random")}
    assert 21e6 < sizes["dinov2-small-random"] < 23e6 and 85e6 < sizes["dinov2-base-random"] < 88e6, sizes
    assert preprocess_for(build_builtin("dinov2-small-random"), "dinov2-small-random").size == 224
