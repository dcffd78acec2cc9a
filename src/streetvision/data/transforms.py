"""Model preprocessing and training augmentation.

Everything the validator does to an image lives in :mod:`streetvision.validator`; this module only turns images
into model tensors:

- :class:`Preprocess`: the model's input rule, recorded in phase outputs and bundles. It mirrors the validator's
  base transform (centre crop to the shorter side, bilinear resize), so a raw photo and the validator's
  224 x 224 version of it are framed alike; on a square input the crop is a no-op.
- :class:`TrainTransform`: ``validator`` trains on :func:`streetvision.validator.challenge` outputs (levels drawn
  with ``level_probs``, the validator's mix by default), ``flip`` mirrors left-right, ``none`` does nothing.
- :class:`MultiCropTransform`: DINO multi-crop views for self-supervision, photometrically jittered with the
  validator's own colour and blur distortions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from streetvision.config import CHOICES
from streetvision.errors import ConfigError, IntegrityError
from streetvision.validator.challenge import LEVEL_PROBS, challenge
from streetvision.validator.distortions import distort

CENTRE_CROP = "centre_crop_resize_bilinear"
SQUASH = "resize_to_square_bilinear"  # bundles exported before the validator's base transform was matched
RESIZE_RULES = (CENTRE_CROP, SQUASH)
AUGMENT_MODES = CHOICES["training.augment"]


@dataclass(frozen=True)
class Preprocess:
    """Eval preprocessing: centre crop to a square, bilinear resize to ``size`` x ``size``, scale to [0, 1] and
    normalise with the backbone's mean and std."""

    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize_rule: str = CENTRE_CROP

    def resize(self, img: Image.Image) -> Image.Image:
        """Centre-crop to the shorter side (``centre_crop`` rule) and resize to the model's square input."""
        if self.resize_rule == CENTRE_CROP and img.width != img.height:
            side = min(img.size)
            left, top = int(round((img.width - side) / 2.0)), int(round((img.height - side) / 2.0))
            img = img.crop((left, top, left + side, top + side))
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
        """Inverse of :meth:`as_dict`; refuses values no 224 x 224 validator image could be fed through."""
        try:
            pre = cls(int(raw["size"]), tuple(float(v) for v in raw["mean"]), tuple(float(v) for v in raw["std"]),
                      str(raw.get("resize_rule", SQUASH)))
        except (KeyError, TypeError, ValueError) as exc:
            raise IntegrityError(f"preprocess: field {exc} is missing or invalid.", "re-export the bundle.") from exc
        if pre.size <= 0 or len(pre.mean) != 3 or len(pre.std) != 3 or min(pre.std) <= 0:
            raise IntegrityError(f"preprocess: size {pre.size}, mean {pre.mean}, std {pre.std} cannot take a "
                                 f"224x224 RGB image (size must be > 0, three means and three positive stds).",
                                 "re-export the bundle.")
        if pre.resize_rule not in RESIZE_RULES:
            raise IntegrityError(f"preprocess: unknown resize_rule '{pre.resize_rule}'. Valid choices: "
                                 f"{', '.join(RESIZE_RULES)}.", "re-export the bundle with this version.")
        return pre

    def as_dict(self) -> dict:
        """JSON form (preprocess.json)."""
        return {"size": self.size, "mean": list(self.mean), "std": list(self.std), "resize_rule": self.resize_rule}


@dataclass(frozen=True)
class TrainTransform:
    """Training augmentation, then eval preprocessing (see module docstring for ``mode``)."""

    preprocess: Preprocess
    mode: str = "validator"
    level_probs: tuple[float, ...] = LEVEL_PROBS

    def __post_init__(self) -> None:
        if self.mode not in AUGMENT_MODES:
            raise ConfigError(f"Unknown augmentation mode '{self.mode}'. Valid choices: {', '.join(AUGMENT_MODES)}.",
                              "set training.augment=none|flip|validator.")

    def __call__(self, img: Image.Image, rng: np.random.Generator) -> torch.Tensor:
        if self.mode == "validator":
            img = challenge(img, rng, level_probs=self.level_probs)[0]
        elif self.mode == "flip" and rng.random() < 0.5:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        return self.preprocess.to_tensor(img)


@dataclass(frozen=True)
class EvalTransform:
    """Evaluation: preprocessing only (the rng is ignored)."""

    preprocess: Preprocess

    def __call__(self, img: Image.Image, rng: np.random.Generator | None = None) -> torch.Tensor:
        return self.preprocess.to_tensor(img)


def random_crop_flip(img: Image.Image, rng: np.random.Generator, size: int, area: tuple[float, float]
                     ) -> Image.Image:
    """A random square crop covering ``area`` of the largest square, resized to ``size``, mirrored half the time."""
    w, h = img.size
    side = max(1, min(w, h, int(round(min(w, h) * np.sqrt(rng.uniform(*area))))))
    x0, y0 = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
    img = img.resize((size, size), Image.BILINEAR, box=(x0, y0, x0 + side, y0 + side))
    return img.transpose(Image.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else img


@dataclass(frozen=True)
class MultiCropTransform:
    """Self-supervised views (DINO multi-crop): ``n_global`` large crops at the model's size and ``n_local``
    small crops at ``local_size``, each flipped at random and jittered with the validator's colour-saturation,
    contrast and blur distortions at random levels. Returns a list of tensors."""

    preprocess: Preprocess
    local_size: int
    n_global: int = 2
    n_local: int = 2
    global_area: tuple[float, float] = (0.32, 1.0)
    local_area: tuple[float, float] = (0.05, 0.32)

    def _view(self, img: Image.Image, rng: np.random.Generator, size: int, area: tuple[float, float]
              ) -> torch.Tensor:
        arr = np.asarray(random_crop_flip(img, rng, size, area))
        for kind, p, top in (("CS", 0.5, 4), ("CC", 0.5, 3), ("GB", 0.3, 2)):
            if rng.random() < p:
                arr = distort(arr, kind, int(rng.integers(1, top + 1)))
        return self.preprocess.normalise(Image.fromarray(arr))

    def __call__(self, img: Image.Image, rng: np.random.Generator) -> list[torch.Tensor]:
        views = [self._view(img, rng, self.preprocess.size, self.global_area) for _ in range(self.n_global)]
        return views + [self._view(img, rng, self.local_size, self.local_area) for _ in range(self.n_local)]
