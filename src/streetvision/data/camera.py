"""Camera augmentation: what separates a dashcam frame from a web photo, applied before the validator's challenge
(``training.camera``). NATIX's real images come from drivers' dashcams: wide-angle optics, dark corners, motion,
night light with sensor noise, glare through the windshield and heavy compression.

Options (each applied with probability ``training.camera_prob``, in this order, as a capture would produce them):

- ``wide_angle``: barrel distortion (albumentations ``OpticalDistortion``, fisheye model);
- ``vignette``: darker corners, a radial gain ``1 - s * r^2`` (``s`` in [0.2, 0.6], ``r`` the distance to the centre
  over the half-diagonal); no albumentations or kornia transform does this, so it is one line of numpy here;
- ``motion_blur``: albumentations ``MotionBlur`` (kernels 3-9 px at the 224 px scale);
- ``low_light``: darker (albumentations ``RandomGamma``, gamma 1.5-3) with sensor noise (``ISONoise``);
- ``glare``: albumentations ``RandomSunFlare`` (a bright source with its halo);
- ``compression``: albumentations ``ImageCompression`` (JPEG quality 10-40).

Every draw comes from the sample's own generator (the pipeline's per-sample seed), so augmentations stay the same
with any number of loader workers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from streetvision.config import CHOICES
from streetvision.errors import ConfigError

CAMERA_OPTIONS = CHOICES["training.camera"]


def _vignette(arr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = arr.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r2 = ((xx - (w - 1) / 2) ** 2 + (yy - (h - 1) / 2) ** 2) / (((w - 1) / 2) ** 2 + ((h - 1) / 2) ** 2)
    gain = 1.0 - float(rng.uniform(0.2, 0.6)) * r2
    return np.clip(arr.astype(np.float32) * gain[..., None], 0, 255).astype(np.uint8)


def _albumentations(option: str) -> Any:
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # its import would otherwise ask PyPI for a newer version
    import albumentations as A  # imported when used: it is the training stack's, not the serving install's

    transforms = {
        "wide_angle": lambda: [A.OpticalDistortion(distort_limit=(0.2, 0.6), mode="fisheye", p=1.0)],
        "motion_blur": lambda: [A.MotionBlur(blur_limit=(3, 9), p=1.0)],
        "low_light": lambda: [A.RandomGamma(gamma_limit=(150, 300), p=1.0),
                              A.ISONoise(color_shift=(0.01, 0.05), intensity=(0.2, 0.6), p=1.0)],
        "glare": lambda: [A.RandomSunFlare(flare_roi=(0.0, 0.0, 1.0, 0.5), src_radius=60, p=1.0)],
        "compression": lambda: [A.ImageCompression(quality_range=(10, 40), p=1.0)],
    }
    return A.Compose(transforms[option](), seed=0)


@dataclass(frozen=True)
class CameraAugment:
    """The ``training.camera`` options (module docstring), each with probability ``prob``."""

    options: tuple[str, ...]
    prob: float = 0.3
    _ops: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        unknown = [o for o in self.options if o not in CAMERA_OPTIONS]
        if unknown:
            raise ConfigError(f"Unknown training.camera option(s) {unknown}. Valid choices: "
                              f"{', '.join(CAMERA_OPTIONS)}.", "set training.camera to a list of those, or [].")

    def _op(self, option: str) -> Any:
        """The option's albumentations transform, built on first use in each process (nothing to pickle)."""
        if option not in self._ops:
            self._ops[option] = _albumentations(option)
        return self._ops[option]

    def __call__(self, img: Image.Image, rng: np.random.Generator) -> Image.Image:
        arr = None
        for option in CAMERA_OPTIONS:  # the capture's order, whatever the config's
            if option not in self.options or rng.random() >= self.prob:
                continue
            arr = np.asarray(img.convert("RGB")) if arr is None else arr
            if option == "vignette":
                arr = _vignette(arr, rng)
            else:
                op = self._op(option)
                op.set_random_seed(int(rng.integers(2**31)))
                arr = op(image=np.ascontiguousarray(arr))["image"]
        return img if arr is None else Image.fromarray(arr)
