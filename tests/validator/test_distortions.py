"""The validator's distortions against independent re-derivations of the published formulas and the golden file."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from streetvision.errors import ConfigError
from streetvision.validator.distortions import KINDS, PARAMS, distort, parameter

GOLDEN = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "validator_golden" / "distortions.npz"


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    """A fixed 64x80 RGB image with saturated colours, greys and a gradient."""
    rng = np.random.default_rng(7)
    img = rng.integers(0, 256, size=(64, 80, 3), dtype=np.uint8)
    img[:8] = [255, 0, 0]
    img[8:16] = [0, 255, 128]
    img[16:24, :, :] = np.linspace(0, 255, 80, dtype=np.uint8)[None, :, None]
    return img


def test_parameter_table_is_the_published_one():
    assert PARAMS == {"CS": (0.4, 0.3, 0.2, 0.1, 0.0), "CC": (0.85, 0.725, 0.6, 0.475, 0.35),
                      "BW": (16, 32, 48, 64, 80), "GNC": (0.001, 0.002, 0.005, 0.01, 0.05),
                      "GB": (7, 9, 13, 17, 21), "JPEG": (2, 3, 4, 5, 6)}
    assert parameter("GB", 1) == 7 and parameter("CS", 5) == 0.0 and parameter("CC", 0) is None


def _ycbcr_float64(rgb: np.ndarray) -> np.ndarray:
    """BT.601 full-range YCbCr with OpenCV's float offset 0.5, re-scaled as the validator does (float64)."""
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb, cr = (b - y) * 0.564 + 0.5, (r - y) * 0.713 + 0.5
    return np.stack([(y * 219 + 16) / 255, (cb * 224 + 16) / 255, (cr * 224 + 16) / 255], axis=-1)


def _rgb_float64(ycbcr: np.ndarray) -> np.ndarray:
    y = (ycbcr[..., 0] * 255 - 16) / 219
    cb, cr = ((ycbcr[..., i] * 255 - 16) / 224 - 0.5 for i in (1, 2))
    return np.stack([y + 1.403 * cr, y - 0.714 * cr - 0.344 * cb, y + 1.773 * cb], axis=-1)


@pytest.mark.parametrize("level", [1, 2, 3, 4, 5])
def test_colour_saturation_matches_the_formula(image, level):
    p = PARAMS["CS"][level - 1]
    ycbcr = _ycbcr_float64(image)
    ycbcr[..., 1:] = 0.5 + (ycbcr[..., 1:] - 0.5) * p
    expected = np.trunc(_rgb_float64(ycbcr))
    diff = np.abs(distort(image, "CS", level).astype(np.float64) - expected)
    assert diff.max() <= 1  # float32 (cv2) vs float64 here; truncation can differ by one grey level
    assert (diff > 0).mean() < 0.001  # ... at a value that sits on an integer, rarely


@pytest.mark.parametrize("level", [1, 2, 3, 4, 5])
def test_colour_contrast_multiplies_and_truncates(image, level):
    expected = np.floor(image.astype(np.float64) * PARAMS["CC"][level - 1])
    assert np.abs(distort(image, "CC", level).astype(np.float64) - expected).max() <= 1
    assert (distort(image, "CC", level) <= image).all()  # it only darkens


@pytest.mark.parametrize("level", [1, 2, 3, 4, 5])
def test_jpeg_is_bilinear_down_and_up_sampling(image, level):
    f = PARAMS["JPEG"][level - 1]
    h, w = image.shape[:2]
    small = cv2.resize(image, (w // f, h // f), interpolation=cv2.INTER_LINEAR)
    assert np.array_equal(distort(image, "JPEG", level), cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR))


@pytest.mark.parametrize("level", [1, 2, 3, 4, 5])
def test_gaussian_blur_kernel_and_sigma(image, level):
    k = PARAMS["GB"][level - 1]
    kernel = cv2.getGaussianKernel(k, k / 6)
    expected = cv2.sepFilter2D(image.astype(np.float32), -1, kernel, kernel, borderType=cv2.BORDER_REFLECT_101)
    diff = np.abs(distort(image, "GB", level).astype(np.float32) - expected)
    assert diff.max() <= 2.0  # OpenCV blurs uint8 with a fixed-point kernel; float reference here


def test_gaussian_noise_is_seeded_and_has_the_published_variance(image):
    rng = np.random.default_rng(3)
    out = distort(image, "GNC", 5, np.random.default_rng(3))
    noise = np.sqrt(0.05) * rng.standard_normal(image.shape)
    ycbcr = _ycbcr_float64(image) / 255 + noise
    expected = np.clip(_rgb_float64(ycbcr * 255), 0, 255)
    assert np.abs(out.astype(np.float64) - np.trunc(expected)).max() <= 1
    assert np.array_equal(out, distort(image, "GNC", 5, np.random.default_rng(3)))


def test_block_wise_pastes_grey_blocks_only_from_256_px():
    small = np.zeros((224, 224, 3), np.uint8)
    assert np.array_equal(distort(small, "BW", 5, np.random.default_rng(0)), small)  # 224 // 256 == 0 blocks
    big = np.zeros((300, 520, 3), np.uint8)
    out = distort(big, "BW", 1, np.random.default_rng(0))
    assert set(np.unique(out)) == {0, 128} and (out == 128).sum() <= 16 * 64 * 3


@pytest.mark.parametrize("kind", KINDS)
def test_level_zero_is_identity(image, kind):
    assert np.array_equal(distort(image, kind, 0, np.random.default_rng(0)), image)


def test_golden_outputs_match_exactly():
    if not GOLDEN.is_file():
        pytest.skip(f"golden file not found at {GOLDEN}")
    golden = np.load(GOLDEN)
    for kind in ("CS", "CC", "JPEG", "GB"):
        for level in range(1, 6):
            assert np.array_equal(distort(golden["input_rgb"], kind, level), golden[f"{kind}_{level}"]), (kind, level)


@pytest.mark.parametrize("args, needle", [
    (("XX", 1), "Unknown distortion kind 'XX'"), (("CS", 6), "Invalid distortion level 6"),
    (("CS", 1.5), "Invalid distortion level 1.5"), (("GNC", 1), "needs an rng"),
])
def test_bad_kind_level_or_rng_is_a_clear_error(image, args, needle):
    with pytest.raises(ConfigError, match=needle):
        distort(image, *args)


@pytest.mark.parametrize("bad", [np.zeros((0, 4, 3), np.uint8), np.zeros((4, 4), np.uint8),
                                 np.zeros((4, 4, 3), np.float32), [[1, 2, 3]]])
def test_non_rgb_or_empty_arrays_are_refused(bad):
    with pytest.raises(ConfigError, match="HxWx3 uint8"):
        distort(bad, "CC", 1)


@pytest.mark.parametrize("level", [1, 2, 3, 4, 5])
def test_gaussian_noise_matches_the_formula_at_every_level(image, level):
    rng = np.random.default_rng(level)
    out = distort(image, "GNC", level, np.random.default_rng(level))
    noise = np.sqrt(PARAMS["GNC"][level - 1]) * rng.standard_normal(image.shape)
    expected = np.clip(_rgb_float64((_ycbcr_float64(image) / 255 + noise) * 255), 0, 255)
    diff = np.abs(out.astype(np.float64) - np.trunc(expected))
    assert diff.max() <= 1 and (diff > 0).mean() < 0.001  # float32 vs float64: rarely one level apart


def test_gaussian_noise_saturates_at_black_and_white_instead_of_wrapping(image):
    out = distort(image, "GNC", 5, np.random.default_rng(0))
    assert (out == 0).any() and (out == 255).any()
    dark = distort(np.zeros((32, 32, 3), np.uint8), "GNC", 5, np.random.default_rng(0))
    assert (dark == 0).mean() > 0.2 and dark.max() == 255


def _blocks_reference(shape: tuple[int, int], level: int, seed: int) -> np.ndarray:
    """min(h, w) // 256 * param grey 8x8 blocks, each corner drawn x then y from [0, side - 9] as published."""
    h, w = shape
    rng, out = np.random.default_rng(seed), np.zeros((h, w, 3), np.uint8)
    for _ in range(min(h, w) // 256 * PARAMS["BW"][level - 1]):
        x, y = int(rng.integers(0, w - 8)), int(rng.integers(0, h - 8))
        out[y:y + 8, x:x + 8] = 128
    return out


@pytest.mark.parametrize("shape, level", [((256, 256), 1), ((300, 520), 2), ((520, 300), 1), ((255, 900), 5),
                                          ((600, 540), 5)])
def test_block_wise_matches_its_description(shape, level):
    out = distort(np.zeros((*shape, 3), np.uint8), "BW", level, np.random.default_rng(level))
    assert np.array_equal(out, _blocks_reference(shape, level, level))
    assert (out[-1] == 0).all() and (out[:, -1] == 0).all()  # a block never reaches the last row or column


def test_block_wise_leaves_its_input_alone():
    big = np.zeros((300, 300, 3), np.uint8)
    assert (distort(big, "BW", 5, np.random.default_rng(0)) == 128).any() and (big == 0).all()


def test_every_parameter_is_the_table_entry():
    for kind in KINDS:
        assert parameter(kind, 0) is None
        assert [parameter(kind, level) for level in range(1, 6)] == list(PARAMS[kind])
        assert parameter(kind, np.int64(3)) == PARAMS[kind][2]


def test_channel_order_matters_only_where_it_should(image):
    swapped = np.ascontiguousarray(image[:, :, ::-1])
    for kind in ("CC", "JPEG", "GB"):  # per-channel: distorting the swapped image is swapping the distorted one
        assert np.array_equal(distort(swapped, kind, 3)[:, :, ::-1], distort(image, kind, 3))
    out = distort(image, "CS", 5)  # no saturation left: grey, equal channels up to rounding
    assert np.abs(out.astype(int) - out.astype(int).mean(axis=2, keepdims=True)).max() <= 1
    assert out.flags["C_CONTIGUOUS"] and distort(image, "GNC", 1, np.random.default_rng(0)).flags["C_CONTIGUOUS"]


def test_errors_name_the_fix(image):
    cases = [(("XX", 1), "use one of the published kinds."),
             (("CS", True), "use an integer level 0 (off) to 5 (most severe)."),
             (("CS", -1), "use an integer level 0 (off) to 5 (most severe)."),
             (("BW", 2), "pass rng=np.random.default_rng(seed).")]
    for args, fix in cases:
        with pytest.raises(ConfigError) as exc:
            distort(image, *args)
        assert exc.value.fix == fix, args
    for bad in (np.zeros((4, 4, 4), np.uint8), np.zeros((4, 4, 3, 1), np.uint8), "image"):
        with pytest.raises(ConfigError, match="HxWx3 uint8") as exc:
            distort(bad, "CC", 1)
        assert exc.value.fix == "pass np.asarray(pil_image.convert('RGB'))."
    with pytest.raises(ConfigError, match="Unknown distortion kind") as exc:
        parameter("XX", 0)
    assert np.array_equal(distort(image, "CC", np.int64(0)), image)


@pytest.mark.parametrize("kind", KINDS)
def test_every_output_is_uint8_of_the_input_shape(kind):
    image = np.random.default_rng(1).integers(0, 256, (270, 300, 3), dtype=np.uint8)
    for level in range(6):
        out = distort(image, kind, level, np.random.default_rng(level))
        assert out.dtype == np.uint8 and out.shape == image.shape, (kind, level)


def test_errors_name_the_value_and_the_choices(image):
    with pytest.raises(ConfigError) as exc:
        distort(image, "XX", 1)
    assert exc.value.message == "Unknown distortion kind 'XX'. Valid choices: CS, CC, BW, GNC, GB, JPEG."
    with pytest.raises(ConfigError, match="Expected an HxWx3 uint8 numpy array, got str."):
        distort("image", "CC", 1)
