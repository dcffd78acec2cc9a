"""Preprocessing and validator-style distortions.

The NATIX validator resizes images to 224x224 and distorts about three quarters of them. This module
re-implements those distortions from their description (no validator code is copied):

- geometric: rotation up to 20 degrees, random resized square crop of 20-100% of the area, horizontal and
  vertical flips;
- photometric, each at an intensity level 1-5: colour-saturation loss, contrast loss, JPEG-like down-and-up
  sampling (with real JPEG re-encoding), colour Gaussian noise, Gaussian blur.

:func:`validator_challenge` composes them by *challenge level* as the validator mixes them: 0 none (resize only),
1 geometric, 2 geometric + mild colour/JPEG, 3 everything including noise and blur. Training augmentation samples
the level uniformly, so it sees the validator's mix; evaluation replays each level with a fixed seed.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageEnhance, ImageFilter

VALIDATOR_SIZE = 224
CHALLENGE_LEVELS = (0, 1, 2, 3)
MAX_ROTATION_DEG = 20.0
CROP_AREA = (0.2, 1.0)
FLIP_P = 0.5


@dataclass(frozen=True)
class Preprocess:
    """Eval preprocessing: resize the whole image to ``size`` x ``size`` (no crop, so nothing at the edges is
    lost), scale to [0, 1] and normalise with the backbone's mean and std. Recorded in phase outputs and bundles."""

    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize_rule: str = "resize_to_square_bilinear"

    def resize(self, img: Image.Image) -> Image.Image:
        """Resize to the model's square input (bilinear)."""
        return img if img.size == (self.size, self.size) else img.resize((self.size, self.size), Image.BILINEAR)

    def normalise(self, img: Image.Image) -> torch.Tensor:
        """RGB PIL image (any size) -> normalised float tensor [3, H, W]."""
        arr = np.asarray(img, dtype=np.float32) / 255.0
        arr = (arr - np.asarray(self.mean, dtype=np.float32)) / np.asarray(self.std, dtype=np.float32)
        return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))

    def to_tensor(self, img: Image.Image) -> torch.Tensor:
        """RGB PIL image -> normalised float tensor [3, size, size]."""
        return self.normalise(self.resize(img))

    @classmethod
    def from_dict(cls, raw: dict) -> Preprocess:
        """Inverse of :meth:`as_dict`."""
        return cls(int(raw["size"]), tuple(raw["mean"]), tuple(raw["std"]), raw.get("resize_rule", cls.resize_rule))

    def as_dict(self) -> dict:
        """JSON form (preprocess.json)."""
        return {"size": self.size, "mean": list(self.mean), "std": list(self.std), "resize_rule": self.resize_rule}


# ------------------------------------------------------------------------------------------- distortions
def random_geometric(img: Image.Image, rng: np.random.Generator, size: int = VALIDATOR_SIZE,
                     area: tuple[float, float] = CROP_AREA, rotate: bool = True) -> Image.Image:
    """Rotation (up to 20 degrees), random resized square crop (``area`` of the largest square, 20-100% by
    default), random horizontal and vertical flips; -> size x size."""
    if rotate:
        img = img.rotate(float(rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG)), resample=Image.BILINEAR)
    w, h = img.size
    side = max(1, min(w, h, int(round(min(w, h) * np.sqrt(rng.uniform(*area))))))
    x0, y0 = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
    img = img.resize((size, size), Image.BILINEAR, box=(x0, y0, x0 + side, y0 + side))
    if rng.random() < FLIP_P:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    if rng.random() < FLIP_P:
        img = img.transpose(Image.FLIP_TOP_BOTTOM)
    return img


def saturation_loss(img: Image.Image, level: int) -> Image.Image:
    """Reduce colour saturation: level 1 keeps 85%, level 5 keeps 25%."""
    return ImageEnhance.Color(img).enhance(1.0 - 0.15 * level)


def contrast_loss(img: Image.Image, level: int) -> Image.Image:
    """Reduce contrast: level 1 keeps 88%, level 5 keeps 40%."""
    return ImageEnhance.Contrast(img).enhance(1.0 - 0.12 * level)


def jpeg_degrade(img: Image.Image, level: int) -> Image.Image:
    """Down-sample by 1 - 0.12*level, re-encode as JPEG at quality 95 - 15*level, up-sample back."""
    w, h = img.size
    scale = 1.0 - 0.12 * level
    small = img.resize((max(1, int(w * scale)), max(1, int(h * scale))), Image.BILINEAR)
    buf = io.BytesIO()
    small.save(buf, format="JPEG", quality=max(10, 95 - 15 * level))
    buf.seek(0)
    return Image.open(buf).convert("RGB").resize((w, h), Image.BILINEAR)


def colour_noise(img: Image.Image, level: int, rng: np.random.Generator) -> Image.Image:
    """Add per-channel Gaussian noise with sigma 4*level (on the 0-255 scale)."""
    arr = np.asarray(img, dtype=np.float32)
    arr = arr + (4.0 * level) * rng.standard_normal(arr.shape, dtype=np.float32)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def gaussian_blur(img: Image.Image, level: int) -> Image.Image:
    """Gaussian blur with radius 0.4*level pixels."""
    return img.filter(ImageFilter.GaussianBlur(radius=0.4 * level))


def validator_challenge(image: Image.Image, level: int, rng: np.random.Generator,
                        size: int = VALIDATOR_SIZE) -> Image.Image:
    """The image as the validator might send it at challenge ``level`` (0-3), as an RGB ``size`` x ``size`` image."""
    if level not in CHALLENGE_LEVELS:
        raise ValueError(f"challenge level must be one of {CHALLENGE_LEVELS}, got {level}")
    img = image.convert("RGB")
    if level == 0:
        return img if img.size == (size, size) else img.resize((size, size), Image.BILINEAR)
    img = random_geometric(img, rng, size)
    if level >= 2:
        if rng.random() < 0.5:
            img = saturation_loss(img, int(rng.integers(1, 4)))
        if rng.random() < 0.5:
            img = contrast_loss(img, int(rng.integers(1, 4)))
        if rng.random() < 0.5:
            img = jpeg_degrade(img, int(rng.integers(1, 4)))
    if level >= 3:
        if rng.random() < 0.5:
            img = colour_noise(img, int(rng.integers(1, 6)), rng)
        if rng.random() < 0.5:
            img = gaussian_blur(img, int(rng.integers(1, 6)))
    return img


def sample_challenge_level(rng: np.random.Generator) -> int:
    """The validator's mix: each challenge level a quarter of the time (about 3/4 of images distorted)."""
    return int(rng.integers(0, len(CHALLENGE_LEVELS)))


AUGMENT_MODES = ("none", "flip", "validator")


@dataclass(frozen=True)
class TrainTransform:
    """Training augmentation, then eval preprocessing. ``mode``: ``validator`` applies a validator challenge at a
    uniformly sampled level (the validator's mix); ``flip`` only mirrors left-right; ``none`` does nothing."""

    preprocess: Preprocess
    mode: str = "validator"

    def __call__(self, img: Image.Image, rng: np.random.Generator) -> torch.Tensor:
        if self.mode == "validator":
            img = validator_challenge(img, sample_challenge_level(rng), rng)
        elif self.mode == "flip" and rng.random() < 0.5:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        return self.preprocess.to_tensor(img)


@dataclass(frozen=True)
class EvalTransform:
    """Evaluation: preprocessing only (the rng is ignored)."""

    preprocess: Preprocess

    def __call__(self, img: Image.Image, rng: np.random.Generator | None = None) -> torch.Tensor:
        return self.preprocess.to_tensor(img)


@dataclass(frozen=True)
class MultiCropTransform:
    """Self-supervised views (DINO multi-crop): ``n_global`` large crops at the model's size and ``n_local``
    small crops at ``local_size``, each with flips and random photometric distortion. Returns a list of tensors."""

    preprocess: Preprocess
    local_size: int
    n_global: int = 2
    n_local: int = 2
    global_area: tuple[float, float] = (0.32, 1.0)
    local_area: tuple[float, float] = (0.05, 0.32)

    def _view(self, img: Image.Image, rng: np.random.Generator, size: int, area: tuple[float, float]
              ) -> torch.Tensor:
        view = random_geometric(img, rng, size, area=area, rotate=False)
        if rng.random() < 0.5:
            view = saturation_loss(view, int(rng.integers(1, 5)))
        if rng.random() < 0.5:
            view = contrast_loss(view, int(rng.integers(1, 4)))
        if rng.random() < 0.3:
            view = gaussian_blur(view, int(rng.integers(1, 4)))
        return self.preprocess.normalise(view)

    def __call__(self, img: Image.Image, rng: np.random.Generator) -> list[torch.Tensor]:
        views = [self._view(img, rng, self.preprocess.size, self.global_area) for _ in range(self.n_global)]
        return views + [self._view(img, rng, self.local_size, self.local_area) for _ in range(self.n_local)]
