"""The model's input rule: how an image becomes the tensor a classifier sees, recorded in phase outputs and bundles.

A light module (numpy, torch, Pillow): the serving install reads it without the training stack. Resize rules:

- ``centre_crop_resize_bilinear`` (bundles): centre crop to the shorter side, then a bilinear resize to S x S, as
  the validator's base transform frames an image (so a raw photo and the validator's 224 x 224 version of it are
  framed alike);
- ``resize_short_side_centre_crop_bilinear`` (Hugging Face exports): resize the shorter side to S (bilinear), then
  centre-crop S x S, which is what ``BitImageProcessor`` (the export's processor) does;
- ``resize_to_square_bilinear``: squash to S x S (bundles exported before the base transform was matched).

On a square input the first two are the same; on a 224 x 224 validator image with S = 224 all three are the
identity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from streetvision.errors import IntegrityError

CENTRE_CROP = "centre_crop_resize_bilinear"
SHORT_SIDE_THEN_CROP = "resize_short_side_centre_crop_bilinear"
SQUASH = "resize_to_square_bilinear"
RESIZE_RULES = (CENTRE_CROP, SHORT_SIDE_THEN_CROP, SQUASH)


@dataclass(frozen=True)
class Preprocess:
    """Eval preprocessing: ``resize_rule`` to ``size`` x ``size`` (module docstring), scale to [0, 1] and
    normalise with the backbone's mean and std."""

    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize_rule: str = CENTRE_CROP

    def resize(self, img: Image.Image) -> Image.Image:
        """The ``resize_rule`` (module docstring): any RGB image -> ``size`` x ``size``."""
        if self.resize_rule == CENTRE_CROP and img.width != img.height:
            side = min(img.size)
            left, top = int(round((img.width - side) / 2.0)), int(round((img.height - side) / 2.0))
            img = img.crop((left, top, left + side, top + side))
        elif self.resize_rule == SHORT_SIDE_THEN_CROP and img.size != (self.size, self.size):
            # transformers' get_resize_output_image_size (short side S, long side int(S * long / short)), then
            # image_transforms.center_crop (top-left corner at the floor of half the margin)
            short, long = min(img.size), max(img.size)
            other = int(self.size * long / short)
            size = (self.size, other) if img.width <= img.height else (other, self.size)
            if img.size != size:
                img = img.resize(size, Image.BILINEAR)
            left, top = (img.width - self.size) // 2, (img.height - self.size) // 2
            return img.crop((left, top, left + self.size, top + self.size))
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
