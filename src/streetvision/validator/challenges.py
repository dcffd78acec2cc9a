"""What the validator does to an image before a miner sees it: the base transform, challenge levels 0-3, and the
JPEG the image travels as.

Facts carried over from the published validator (``natix/utils/image_transforms.py``, ``natix/protocol.py`` and
``natix/validator/forward.py`` in ``natixnetwork/streetvision-subnet``), implemented here from their arithmetic:

- A level is drawn per challenge with probabilities 0.25 each (``rand <= cumulative``).
- Level 0 (base): RGB, centre crop to the shorter side, bilinear resize to 224 x 224.
- Levels 1-3 work on the *whole* image as a float tensor in [0, 1]: a rotation by an angle uniform in
  [-20, 20] degrees about the centre, same size, nearest-neighbour sampling (the published wrapper calls
  ``rotate(img, angle)`` without its bilinear setting), black corners; then a random resized crop to 224 x 224
  with area fraction uniform in [0.2, 1] of the whole image and aspect ratio 1 (ten tries, else a centred square
  of the shorter side), bilinear with antialiasing. The published flip wrappers never flip (their parameter dict
  exists from construction, so the "draw" branch is unreachable); we record both flips as False.
- Level 2 then applies CS, CC, JPEG, each at a level drawn uniformly from {0, 1}; level 3 applies CS, CC, JPEG,
  GNC, GB, each at a level drawn from {0, 1, 2} (:mod:`streetvision.validator.distortions`). Each applied
  distortion truncates ``float * 255`` to uint8 and divides by 255 again, as the validator's tensor round trip.
- The result is truncated to uint8 and sent JPEG-encoded with Pillow's defaults (quality 75); ``wire=True``
  reproduces that encoding, so the returned image is what the miner decodes.

Deliberate deviations: random numbers come from a numpy Generator (same distributions, reproducible per seed)
instead of torch's and Python's global generators; the in-painting ``mask_center`` point (unused by the current
validator) is not modelled.
"""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from streetvision.errors import ConfigError
from streetvision.validator.distortions import distort

SIZE = 224
LEVELS = (0, 1, 2, 3)
LEVEL_PROBS: tuple[float, float, float, float] = (0.25, 0.25, 0.25, 0.25)
MAX_ROTATION_DEG = 20.0
CROP_SCALE = (0.2, 1.0)
CROP_TRIES = 10
WIRE_JPEG_QUALITY = 75  # Pillow's default, used by the validator's Image.save(format="JPEG")
# level -> (distortion kinds in order, highest distortion level drawn)
LEVEL_DISTORTIONS: dict[int, tuple[tuple[str, ...], int]] = {
    0: ((), 0), 1: ((), 0), 2: (("CS", "CC", "JPEG"), 1), 3: (("CS", "CC", "JPEG", "GNC", "GB"), 2),
}


def _check_image(image: Any) -> Image.Image:
    if not isinstance(image, Image.Image):
        raise ConfigError(f"Expected a PIL image, got {type(image).__name__}.", "pass PIL.Image.open(path).")
    if image.width == 0 or image.height == 0:
        raise ConfigError(f"Empty image ({image.width}x{image.height}).", "pass an image with pixels.")
    return image.convert("RGB")


def base(image: Image.Image, size: int = SIZE) -> Image.Image:
    """The validator's base transform: RGB, centre crop to the shorter side, bilinear resize to size x size."""
    img = _check_image(image)
    w, h = img.size
    side = min(w, h)
    top, left = int(round((h - side) / 2.0)), int(round((w - side) / 2.0))
    img = img.crop((left, top, left + side, top + side))
    return img if img.size == (size, size) else img.resize((size, size), Image.BILINEAR)


def check_level_probs(level_probs: tuple[float, ...] | list[float]) -> tuple[float, ...]:
    """Four non-negative probabilities summing to 1 (levels 0-3), else ConfigError."""
    probs = tuple(float(p) for p in level_probs)
    if len(probs) != len(LEVELS) or any(p < 0 for p in probs) or not math.isclose(sum(probs), 1.0, rel_tol=1e-9):
        raise ConfigError(f"Level probabilities must be 4 non-negative numbers summing to 1 (levels 0-3); got "
                          f"{list(probs)}.", "use e.g. [0.25, 0.25, 0.25, 0.25], the validator's mix.")
    return probs


def draw_level(rng: np.random.Generator, level_probs: tuple[float, ...] = LEVEL_PROBS) -> int:
    """A challenge level as the validator draws it: the first level whose cumulative probability >= U(0, 1)."""
    u = rng.random()
    cumulative = 0.0
    for level, p in zip(LEVELS, level_probs):
        cumulative += p
        if u <= cumulative:
            return level
    return LEVELS[-1]


# --------------------------------------------------------------------------------------------- geometry
def to_float_tensor(img: Image.Image) -> torch.Tensor:
    """RGB PIL image -> float32 [3, H, W] in [0, 1] (uint8 / 255)."""
    return torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1).contiguous().float().div(255)


def to_uint8(t: torch.Tensor) -> np.ndarray:
    """float32 [3, H, W] in [0, 1] -> HxWx3 uint8, truncating ``t * 255`` as the validator does."""
    return (t.permute(1, 2, 0).numpy() * 255).astype(np.uint8)


def rotate(t: torch.Tensor, angle_deg: float) -> torch.Tensor:
    """Counter-clockwise rotation about the centre, same size, nearest neighbour, zero (black) outside."""
    _, h, w = t.shape
    rad = math.radians(angle_deg)
    # inverse map, output pixel centre (relative to the image centre) -> source, in units of half the size
    inverse = torch.tensor([[math.cos(rad), -math.sin(rad), 0.0], [math.sin(rad), math.cos(rad), 0.0]],
                           dtype=torch.float32)
    grid = torch.empty(1, h, w, 3, dtype=torch.float32)
    grid[..., 0] = torch.linspace(-w * 0.5 + 0.5, w * 0.5 - 0.5, steps=w)
    grid[..., 1] = torch.linspace(-h * 0.5 + 0.5, h * 0.5 - 0.5, steps=h).unsqueeze(-1)
    grid[..., 2] = 1.0
    scaled = inverse.t().unsqueeze(0) / torch.tensor([0.5 * w, 0.5 * h], dtype=torch.float32)
    sample_at = grid.view(1, h * w, 3).bmm(scaled).view(1, h, w, 2)
    return F.grid_sample(t.unsqueeze(0), sample_at, mode="nearest", padding_mode="zeros", align_corners=False)[0]


def crop_params(height: int, width: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """(top, left, side, side) of a square crop covering U(0.2, 1) of the image area, or the centred fallback."""
    area = height * width
    for _ in range(CROP_TRIES):
        side = int(round(math.sqrt(area * rng.uniform(*CROP_SCALE))))
        if 0 < side <= width and 0 < side <= height:
            return int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1)), side, side
    side = min(height, width)
    return (height - side) // 2, (width - side) // 2, side, side


def resized_crop(t: torch.Tensor, box: tuple[int, int, int, int], size: int = SIZE) -> torch.Tensor:
    """Crop ``box`` (top, left, h, w) and resize to size x size (bilinear, antialiased, half-pixel centres)."""
    top, left, h, w = box
    crop = t[:, top:top + h, left:left + w]
    if (h, w) == (size, size):
        return crop
    return F.interpolate(crop.unsqueeze(0), size=(size, size), mode="bilinear", align_corners=False,
                         antialias=True)[0]


def wire(image: Image.Image) -> Image.Image:
    """The image as the miner receives it: JPEG at Pillow's default quality, decoded back to RGB."""
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=WIRE_JPEG_QUALITY)
    buf.seek(0)
    with Image.open(buf) as decoded:
        return decoded.convert("RGB")


def challenge(image: Image.Image, rng: np.random.Generator, level: int | None = None,
              level_probs: tuple[float, ...] = LEVEL_PROBS, wire_jpeg: bool = True,
              size: int = SIZE) -> tuple[Image.Image, int, dict]:
    """One validator challenge of ``image``: (size x size RGB image, level, parameters drawn).

    ``level=None`` draws it with ``level_probs``. Seeded: the same rng state gives the same output.
    """
    img = _check_image(image)
    if level is None:
        level = draw_level(rng, check_level_probs(level_probs))
    elif isinstance(level, bool) or not isinstance(level, (int, np.integer)) or int(level) not in LEVELS:
        raise ConfigError(f"Invalid challenge level {level!r}. Valid choices: 0, 1, 2, 3.",
                          "pass level=None to draw it as the validator does.")
    level = int(level)
    params: dict[str, Any] = {"level": level}
    if level == 0:
        out = base(img, size)
    else:
        t = to_float_tensor(img)
        angle = float(rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG))
        t = rotate(t, angle)
        box = crop_params(t.shape[1], t.shape[2], rng)
        t = resized_crop(t, box, size)
        params.update(rotation_deg=angle, crop=list(box), hflip=False, vflip=False)
        kinds, highest = LEVEL_DISTORTIONS[level]
        applied = {}
        for kind in kinds:
            kind_level = int(rng.integers(0, highest + 1))
            applied[kind] = kind_level
            if kind_level:
                arr = distort(to_uint8(t), kind, kind_level, rng)
                t = torch.from_numpy(arr.astype(np.float32) / 255.0).permute(2, 0, 1)
        if kinds:
            params["distortions"] = applied
        out = Image.fromarray(to_uint8(t))
    if wire_jpeg:
        out = wire(out)
    params["wire"] = f"jpeg_q{WIRE_JPEG_QUALITY}" if wire_jpeg else None
    return out, level, params

