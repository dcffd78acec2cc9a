"""Model preprocessing and training augmentation (the validator's own transforms: tests/validator)."""

import numpy as np
import pytest
import torch
from PIL import Image

from streetvision.data.synthetic import render_scene
from streetvision.data.preprocess import SQUASH, Preprocess
from streetvision.data.transforms import EvalTransform, MultiCropTransform, TrainTransform
from streetvision.errors import ConfigError, IntegrityError
from streetvision.validator.challenges import base, challenge

PRE = Preprocess(size=112, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    return render_scene(3, size=300).image.resize((384, 288))


def _expected(img: Image.Image) -> torch.Tensor:
    arr = (np.asarray(img, dtype=np.float32) / 255 - 0.5) / 0.25
    return torch.from_numpy(arr.transpose(2, 0, 1))


def test_preprocess_centre_crops_like_the_validator_then_normalises(photo):
    x = EvalTransform(PRE)(photo)
    assert x.shape == (3, 112, 112) and x.dtype == torch.float32
    expected = photo.crop((48, 0, 336, 288)).resize((112, 112), Image.BILINEAR)
    assert torch.allclose(x, _expected(expected), atol=1e-5)
    # the validator's 224 x 224 base image is framed the same: only the resampling differs
    assert (EvalTransform(PRE)(base(photo)) - x).abs().mean() < 0.05


def test_old_bundles_keep_their_squash_rule(photo):
    old = Preprocess.from_dict({"size": 112, "mean": [0.5] * 3, "std": [0.25] * 3, "resize_rule": SQUASH})
    assert torch.allclose(old.to_tensor(photo), _expected(photo.resize((112, 112), Image.BILINEAR)), atol=1e-5)
    assert Preprocess.from_dict(PRE.as_dict()) == PRE


@pytest.mark.parametrize("raw, needle", [
    ({"size": 0, "mean": [0.5] * 3, "std": [0.2] * 3}, "cannot take a 224x224"),
    ({"size": 112, "mean": [0.5] * 3, "std": [0.2, 0.0, 0.2]}, "cannot take a 224x224"),
    ({"size": 112, "mean": [0.5] * 3, "std": [0.2] * 3, "resize_rule": "pad"}, "unknown resize_rule 'pad'"),
    ({"mean": [0.5] * 3, "std": [0.2] * 3}, "missing or invalid"),
])
def test_preprocess_that_cannot_take_validator_images_is_refused(raw, needle):
    with pytest.raises(IntegrityError, match=needle):
        Preprocess.from_dict(raw)


def test_validator_augmentation_is_the_challenge_then_preprocessing(photo):
    x = TrainTransform(PRE, "validator")(photo, np.random.default_rng(4))
    expected = PRE.to_tensor(challenge(photo, np.random.default_rng(4))[0])
    assert torch.equal(x, expected)
    only_level0 = TrainTransform(PRE, "validator", (1.0, 0.0, 0.0, 0.0))(photo, np.random.default_rng(1))
    assert torch.equal(only_level0, PRE.to_tensor(challenge(photo, np.random.default_rng(9), level=0)[0]))


def test_unknown_augmentation_mode_is_refused():
    with pytest.raises(ConfigError, match="Unknown augmentation mode 'mixup'"):
        TrainTransform(PRE, "mixup")


def test_multicrop_views_have_the_requested_sizes(photo):
    views = MultiCropTransform(PRE, local_size=56)(photo, np.random.default_rng(0))
    assert [tuple(v.shape) for v in views] == [(3, 112, 112)] * 2 + [(3, 56, 56)] * 2
