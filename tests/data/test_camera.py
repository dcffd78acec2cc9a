"""Camera augmentation (training.camera): each option changes the image the way its name says, draws come from the
sample's generator alone, it composes with the validator's challenge, and bad options stop before any work."""

import numpy as np
import pytest
from PIL import Image

from streetvision.config import CHOICES
from streetvision.data.camera import CameraAugment
from streetvision.data.preprocess import Preprocess
from streetvision.data.transforms import TrainTransform, train_transform
from streetvision.errors import ConfigError

OPTIONS = CHOICES["training.camera"]


@pytest.fixture(scope="module")
def scene() -> Image.Image:
    rng = np.random.default_rng(3)
    arr = np.full((224, 224, 3), 120, np.uint8)
    arr[:, :, 0] = np.linspace(60, 200, 224, dtype=np.uint8)[None, :]  # a gradient, so warps move pixels
    arr[100:140, 90:130] = (255, 140, 0)  # a cone-coloured block
    return Image.fromarray(np.clip(arr + rng.integers(0, 8, arr.shape), 0, 255).astype(np.uint8))


@pytest.mark.parametrize("option", OPTIONS)
def test_each_option_changes_the_image_and_is_reproducible_from_the_seed(scene, option):
    aug = CameraAugment((option,), prob=1.0)
    out = np.asarray(aug(scene, np.random.default_rng(7)), dtype=np.float32)
    again = np.asarray(aug(scene, np.random.default_rng(7)), dtype=np.float32)
    other = np.asarray(aug(scene, np.random.default_rng(8)), dtype=np.float32)
    src = np.asarray(scene, dtype=np.float32)
    assert out.shape == src.shape and np.abs(out - src).mean() > 1.0
    np.testing.assert_array_equal(out, again)  # the sample's generator decides everything
    if option != "compression":  # quality is drawn from a range: two seeds may meet
        assert not np.array_equal(out, other)


def test_options_do_what_their_names_say(scene):
    src = np.asarray(scene, dtype=np.float32)
    dark = np.asarray(CameraAugment(("low_light",), 1.0)(scene, np.random.default_rng(0)), dtype=np.float32)
    assert dark.mean() < src.mean() - 10
    vig = np.asarray(CameraAugment(("vignette",), 1.0)(scene, np.random.default_rng(0)), dtype=np.float32)
    assert vig[:8, :8].mean() < src[:8, :8].mean() - 10 and abs(vig[108:116, 108:116].mean() -
                                                                 src[108:116, 108:116].mean()) < 2
    glare = np.asarray(CameraAugment(("glare",), 1.0)(scene, np.random.default_rng(0)), dtype=np.float32)
    assert glare.max() >= src.max() and glare.mean() > src.mean()


def test_probability_zero_leaves_the_image_and_the_validator_challenge_follows(scene):
    assert CameraAugment(OPTIONS, prob=0.0)(scene, np.random.default_rng(0)) is scene
    pre = Preprocess(56, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    plain = TrainTransform(pre, "validator")(scene, np.random.default_rng(1))
    with_camera = TrainTransform(pre, "validator", camera=CameraAugment(OPTIONS, 1.0))(scene, np.random.default_rng(1))
    assert plain.shape == with_camera.shape and not np.allclose(plain.numpy(), with_camera.numpy())


def test_train_transform_reads_the_training_group(make_cfg):
    cfg = make_cfg("training.camera=[vignette,compression]", "training.camera_prob=0.5")
    tf = train_transform(Preprocess(56, (0.5,) * 3, (0.5,) * 3), cfg.training)
    assert tf.camera == CameraAugment(("vignette", "compression"), 0.5) and tf.mode == cfg.training.augment
    assert train_transform(Preprocess(56, (0.5,) * 3, (0.5,) * 3), make_cfg().training).camera is None


def test_an_unknown_option_or_probability_stops_with_the_choices(make_cfg):
    with pytest.raises(ConfigError, match="training.camera.*wide_angle"):
        make_cfg("training.camera=[fisheye]")
    with pytest.raises(ConfigError, match="training.camera_prob"):
        make_cfg("training.camera_prob=1.5")
    with pytest.raises(ConfigError, match="Valid choices: wide_angle"):
        CameraAugment(("fisheye",))


def test_runs_made_before_the_camera_keys_existed_stay_up_to_date(make_cfg):
    from streetvision.pipeline.registry import load_phases
    from streetvision.pipeline.runner import config_slice

    spec = load_phases()["phase1"]
    plain = config_slice(make_cfg(), spec)
    assert "camera" not in plain["training"] and "camera_prob" not in plain["training"]  # as an older run hashed it
    used = config_slice(make_cfg("training.camera=[glare]"), spec)
    assert used["training"]["camera"] == ["glare"] and used["training"]["camera_prob"] == 0.3
    assert "camera_prob" in config_slice(make_cfg("training.camera_prob=0.5"), spec)["training"]
