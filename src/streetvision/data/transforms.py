"""Model preprocessing and training augmentation.

Everything the validator does to an image lives in :mod:`streetvision.validator`; this module only turns images
into model tensors:

- :class:`~streetvision.data.preprocess.Preprocess` (in its own light module): the model's input rule.
- :class:`TrainTransform`: optional dashcam effects first (:mod:`streetvision.data.camera`), then ``validator`` trains on :func:`streetvision.validator.challenges.challenge` outputs (levels drawn
  with ``level_probs``, the validator's mix by default), ``flip`` mirrors left-right, ``none`` does nothing.
- :class:`MultiCropTransform`: DINO multi-crop views for self-supervision, photometrically jittered with the
  validator's own colour and blur distortions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from streetvision.config import CHOICES
from streetvision.data.camera import CameraAugment
from streetvision.data.preprocess import Preprocess
from streetvision.errors import ConfigError
from streetvision.validator.challenges import LEVEL_PROBS, challenge
from streetvision.validator.distortions import distort

AUGMENT_MODES = CHOICES["training.augment"]


@dataclass(frozen=True)
class TrainTransform:
    """Training augmentation, then eval preprocessing (see module docstring for ``mode``)."""

    preprocess: Preprocess
    mode: str = "validator"
    level_probs: tuple[float, ...] = LEVEL_PROBS
    camera: CameraAugment | None = None  # dashcam effects first (training.camera), then ``mode``

    def __post_init__(self) -> None:
        if self.mode not in AUGMENT_MODES:
            raise ConfigError(f"Unknown augmentation mode '{self.mode}'. Valid choices: {', '.join(AUGMENT_MODES)}.",
                              "set training.augment=none|flip|validator.")

    def __call__(self, img: Image.Image, rng: np.random.Generator) -> torch.Tensor:
        if self.camera is not None:
            img = self.camera(img, rng)
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


def train_transform(pre: Preprocess, training: Any) -> TrainTransform:
    """The TrainTransform of a ``training`` config group (augment, level probabilities, camera options)."""
    camera = CameraAugment(tuple(training.camera), float(training.camera_prob)) if training.camera else None
    return TrainTransform(pre, str(training.augment), tuple(training.augment_level_probs), camera)


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
