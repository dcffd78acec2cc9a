"""The validator's pixel distortions (DeeperForensics style), on uint8 RGB arrays.

Facts carried over from the published validator (``natix/utils/image_transforms.py`` in
``natixnetwork/streetvision-subnet``), implemented here from their arithmetic:

- Each kind has five parameter levels (1 = mildest). Level 0 means "not applied".
- The validator works on BGR uint8 images obtained by *truncating* ``float * 255`` (``astype(np.uint8)``), and
  converts the result back with ``/ 255``. Colour work goes through OpenCV's float YCrCb conversion, re-scaled to
  a studio-swing YCbCr (Y * 219 + 16, C * 224 + 16, both / 255) and back.
- ``CS`` scales both chroma channels about 0.5 by the parameter; ``CC`` multiplies every pixel value (it darkens);
  ``JPEG`` is not a JPEG codec but an OpenCV bilinear down-sample by the factor and back up; ``GNC`` adds Gaussian
  noise of variance ``param`` in the re-scaled YCbCr space; ``GB`` is ``cv2.GaussianBlur`` with a square kernel and
  sigma = kernel / 6; ``BW`` pastes 8x8 grey (128) blocks, ``min(h, w) // 256 * param`` of them (none below
  256 px, so none on the validator's 224 x 224 images).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from streetvision.errors import ConfigError

# kind -> parameter at levels 1..5 (the published table)
PARAMS: dict[str, tuple[float, ...]] = {
    "CS": (0.4, 0.3, 0.2, 0.1, 0.0),
    "CC": (0.85, 0.725, 0.6, 0.475, 0.35),
    "BW": (16, 32, 48, 64, 80),
    "GNC": (0.001, 0.002, 0.005, 0.01, 0.05),
    "GB": (7, 9, 13, 17, 21),
    "JPEG": (2, 3, 4, 5, 6),
}
KINDS = tuple(PARAMS)
LEVELS = (0, 1, 2, 3, 4, 5)
RANDOM_KINDS = ("GNC", "BW")  # these draw random numbers and need an rng
BW_BLOCK = 8
BW_GREY = 128


def parameter(kind: str, level: int) -> float | None:
    """The published parameter of ``kind`` at ``level`` (None at level 0)."""
    check_kind_level(kind, level)
    return None if level == 0 else PARAMS[kind][level - 1]


def check_kind_level(kind: str, level: int) -> None:
    """Raise ConfigError naming the value and the valid choices."""
    if kind not in PARAMS:
        raise ConfigError(f"Unknown distortion kind '{kind}'. Valid choices: {', '.join(KINDS)}.",
                          "use one of the published kinds.")
    if isinstance(level, bool) or not isinstance(level, (int, np.integer)) or int(level) not in LEVELS:
        raise ConfigError(f"Invalid distortion level {level!r} for '{kind}'. Valid choices: 0-5.",
                          "use an integer level 0 (off) to 5 (most severe).")


def check_rgb_uint8(image: np.ndarray) -> None:
    """Raise ConfigError unless ``image`` is a non-empty HxWx3 uint8 array."""
    if not isinstance(image, np.ndarray):
        raise ConfigError(f"Expected an HxWx3 uint8 numpy array, got {type(image).__name__}.",
                          "pass np.asarray(pil_image.convert('RGB')).")
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or image.size == 0:
        raise ConfigError(f"Expected a non-empty HxWx3 uint8 RGB array, got shape {image.shape} and dtype "
                          f"{image.dtype}.", "pass np.asarray(pil_image.convert('RGB')).")


# ------------------------------------------------------------------------------------------ colour spaces
def _bgr_to_ycbcr(bgr: np.ndarray) -> np.ndarray:
    """float32 BGR (0-255) -> the validator's re-scaled YCbCr (channels Y, Cb, Cr)."""
    ycrcb = cv2.cvtColor(bgr.astype(np.float32), cv2.COLOR_BGR2YCrCb)
    out = ycrcb[:, :, [0, 2, 1]].astype(np.float32)
    out[:, :, 0] = (out[:, :, 0] * (235 - 16) + 16) / 255.0
    out[:, :, 1:] = (out[:, :, 1:] * (240 - 16) + 16) / 255.0
    return out


def _ycbcr_to_bgr(ycbcr: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_bgr_to_ycbcr` (float32 BGR, not clipped)."""
    y = ycbcr.astype(np.float32)
    y[:, :, 0] = (y[:, :, 0] * 255.0 - 16) / (235 - 16)
    y[:, :, 1:] = (y[:, :, 1:] * 255.0 - 16) / (240 - 16)
    return cv2.cvtColor(y[:, :, [0, 2, 1]].astype(np.float32), cv2.COLOR_YCrCb2BGR)


# ---------------------------------------------------------------------------------- distortions (BGR uint8)
def _saturation(bgr: np.ndarray, p: float) -> np.ndarray:
    ycbcr = _bgr_to_ycbcr(bgr)
    ycbcr[:, :, 1:] = 0.5 + (ycbcr[:, :, 1:] - 0.5) * p
    return _ycbcr_to_bgr(ycbcr).astype(np.uint8)


def _contrast(bgr: np.ndarray, p: float) -> np.ndarray:
    return (bgr.astype(np.float32) * p).astype(np.uint8)


def _downsample(bgr: np.ndarray, p: float) -> np.ndarray:
    h, w = bgr.shape[:2]
    small = cv2.resize(bgr, (w // int(p), h // int(p)))
    return cv2.resize(small, (w, h))


def _noise(bgr: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
    ycbcr = _bgr_to_ycbcr(bgr) / 255
    noisy = (ycbcr + math.sqrt(p) * rng.standard_normal(ycbcr.shape)) * 255
    return np.clip(_ycbcr_to_bgr(noisy), 0, 255).astype(np.uint8)


def _blur(bgr: np.ndarray, p: float) -> np.ndarray:
    k = int(p)
    return cv2.GaussianBlur(bgr, (k, k), k * 1.0 / 6)


def _blocks(bgr: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
    out = bgr.copy()
    h, w = out.shape[:2]
    for _ in range(min(h, w) // 256 * int(p)):
        x = int(rng.integers(0, w - 1 - BW_BLOCK + 1))
        y = int(rng.integers(0, h - 1 - BW_BLOCK + 1))
        out[y:y + BW_BLOCK, x:x + BW_BLOCK, :] = BW_GREY
    return out


def distort(image: np.ndarray, kind: str, level: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """Apply the validator's ``kind`` distortion at ``level`` (0 = unchanged) to an HxWx3 uint8 RGB array.

    The array goes through BGR as the validator's does; ``GNC`` and ``BW`` draw from ``rng`` (required for them).
    """
    check_kind_level(kind, level)
    check_rgb_uint8(image)
    if level == 0:
        return image.copy()
    p = PARAMS[kind][level - 1]
    bgr = np.ascontiguousarray(image[:, :, ::-1])
    if kind in RANDOM_KINDS:
        if rng is None:
            raise ConfigError(f"Distortion '{kind}' is random and needs an rng.",
                              "pass rng=np.random.default_rng(seed).")
        out = _noise(bgr, p, rng) if kind == "GNC" else _blocks(bgr, p, rng)
    else:
        out = {"CS": _saturation, "CC": _contrast, "JPEG": _downsample, "GB": _blur}[kind](bgr, p)
    return np.ascontiguousarray(out[:, :, ::-1])
