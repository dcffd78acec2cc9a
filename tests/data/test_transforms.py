import numpy as np
import pytest
import torch
from PIL import Image

from streetvision.data.synthetic import render_scene
from streetvision.data.transforms import (
    CHALLENGE_LEVELS,
    EvalTransform,
    Preprocess,
    TrainTransform,
    validator_challenge,
)


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    return render_scene(3, size=300).image.resize((384, 288))


@pytest.mark.parametrize("level", CHALLENGE_LEVELS)
def test_challenge_output_is_224_rgb_uint8(photo, level):
    out = validator_challenge(photo, level, np.random.default_rng(level))
    arr = np.asarray(out)
    assert out.mode == "RGB" and arr.shape == (224, 224, 3) and arr.dtype == np.uint8


def test_level_zero_is_identity_after_resize(photo):
    out = validator_challenge(photo, 0, np.random.default_rng(0))
    assert np.array_equal(np.asarray(out), np.asarray(photo.resize((224, 224), Image.BILINEAR)))


def test_higher_levels_distort_and_are_deterministic_per_seed(photo):
    base = np.asarray(validator_challenge(photo, 0, np.random.default_rng(0)), dtype=np.float32)
    for level in (1, 2, 3):
        a = validator_challenge(photo, level, np.random.default_rng(5))
        b = validator_challenge(photo, level, np.random.default_rng(5))
        assert np.array_equal(np.asarray(a), np.asarray(b))
        assert np.abs(np.asarray(a, dtype=np.float32) - base).mean() > 1.0


def test_bad_level_is_rejected(photo):
    with pytest.raises(ValueError, match="challenge level"):
        validator_challenge(photo, 4, np.random.default_rng(0))


def test_preprocess_normalises_with_given_stats(photo):
    pre = Preprocess(size=112, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    x = EvalTransform(pre)(photo)
    assert x.shape == (3, 112, 112) and x.dtype == torch.float32
    expected = (np.asarray(photo.resize((112, 112), Image.BILINEAR), dtype=np.float32) / 255 - 0.5) / 0.25
    assert torch.allclose(x, torch.from_numpy(expected.transpose(2, 0, 1)), atol=1e-5)
    assert TrainTransform(pre)(photo, np.random.default_rng(0)).shape == (3, 112, 112)
