"""The validator distortions as StreetVision approximated them before issue 12, from a description of the
validator rather than its code. Kept only so benchmarks/validator_fidelity.py can show how far the old numbers were
from the published validator; nothing in src/ uses it."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter


def _geometric(img: Image.Image, rng: np.random.Generator, size: int = 224) -> Image.Image:
    img = img.rotate(float(rng.uniform(-20, 20)), resample=Image.BILINEAR)
    w, h = img.size
    side = max(1, min(w, h, int(round(min(w, h) * np.sqrt(rng.uniform(0.2, 1.0))))))
    x0, y0 = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
    img = img.resize((size, size), Image.BILINEAR, box=(x0, y0, x0 + side, y0 + side))
    if rng.random() < 0.5:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    if rng.random() < 0.5:
        img = img.transpose(Image.FLIP_TOP_BOTTOM)
    return img


def _jpeg(img: Image.Image, level: int) -> Image.Image:
    w, h = img.size
    scale = 1.0 - 0.12 * level
    small = img.resize((max(1, int(w * scale)), max(1, int(h * scale))), Image.BILINEAR)
    buf = io.BytesIO()
    small.save(buf, format="JPEG", quality=max(10, 95 - 15 * level))
    buf.seek(0)
    return Image.open(buf).convert("RGB").resize((w, h), Image.BILINEAR)


def previous_challenge(image: Image.Image, level: int, rng: np.random.Generator) -> Image.Image:
    """The old ``validator_challenge``: level 0 squashed the whole frame to 224 x 224, no wire JPEG."""
    img = image.convert("RGB")
    if level == 0:
        return img.resize((224, 224), Image.BILINEAR)
    img = _geometric(img, rng)
    if level >= 2:
        if rng.random() < 0.5:
            img = ImageEnhance.Color(img).enhance(1.0 - 0.15 * int(rng.integers(1, 4)))
        if rng.random() < 0.5:
            img = ImageEnhance.Contrast(img).enhance(1.0 - 0.12 * int(rng.integers(1, 4)))
        if rng.random() < 0.5:
            img = _jpeg(img, int(rng.integers(1, 4)))
    if level >= 3:
        if rng.random() < 0.5:
            arr = np.asarray(img, dtype=np.float32)
            arr = arr + 4.0 * int(rng.integers(1, 6)) * rng.standard_normal(arr.shape, dtype=np.float32)
            img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
        if rng.random() < 0.5:
            img = img.filter(ImageFilter.GaussianBlur(radius=0.4 * int(rng.integers(1, 6))))
    return img
