"""Challenge levels, their frequencies, the base transform and the wire JPEG."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from scipy.stats import chisquare

from streetvision.errors import ConfigError
from streetvision.validator.challenge import (
    LEVEL_PROBS,
    base,
    challenge,
    check_level_probs,
    crop_params,
    draw_level,
    resized_crop,
    rotate,
    to_float_tensor,
    to_uint8,
    wire,
)


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    """A 384x288 landscape photo-like image: left half red, right half blue, a white square off-centre."""
    arr = np.zeros((288, 384, 3), np.uint8)
    arr[:, :192] = (200, 30, 30)
    arr[:, 192:] = (30, 30, 200)
    arr[100:140, 300:340] = 255
    return Image.fromarray(arr)


def test_base_centre_crops_the_short_side_and_resizes(photo):
    out = base(photo)
    assert out.size == (224, 224)
    # the 384-wide frame loses 48 px each side: 48 of 192 red columns gone, the split stays in the middle
    row = np.asarray(out)[112]
    assert row[:100, 0].min() > 150 and row[124:, 2].min() > 150
    expected = photo.crop((48, 0, 336, 288)).resize((224, 224), Image.BILINEAR)
    assert np.array_equal(np.asarray(out), np.asarray(expected))


def test_level_zero_is_base_then_the_wire_jpeg(photo):
    out, level, params = challenge(photo, np.random.default_rng(0), level=0)
    assert level == 0 and params == {"level": 0, "wire": "jpeg_q75"}
    assert np.array_equal(np.asarray(out), np.asarray(wire(base(photo))))
    raw, _, _ = challenge(photo, np.random.default_rng(0), level=0, wire_jpeg=False)
    assert np.array_equal(np.asarray(raw), np.asarray(base(photo)))


@pytest.mark.parametrize("level", [1, 2, 3])
def test_levels_are_seeded_224_rgb_and_never_flipped(photo, level):
    a, la, pa = challenge(photo, np.random.default_rng(5), level=level)
    b, lb, pb = challenge(photo, np.random.default_rng(5), level=level)
    assert a.size == (224, 224) and a.mode == "RGB" and la == lb == level
    assert np.array_equal(np.asarray(a), np.asarray(b)) and pa == pb
    assert pa["hflip"] is False and pa["vflip"] is False and -20 <= pa["rotation_deg"] <= 20
    if level >= 2:
        kinds = ["CS", "CC", "JPEG"] + (["GNC", "GB"] if level == 3 else [])
        assert list(pa["distortions"]) == kinds
        assert all(0 <= v <= level - 1 for v in pa["distortions"].values())


def test_level_one_is_rotation_then_resized_crop(photo):
    rng = np.random.default_rng(11)
    out, _, params = challenge(photo, np.random.default_rng(11), level=1, wire_jpeg=False)
    angle = float(rng.uniform(-20, 20))
    rotated = rotate(to_float_tensor(photo), angle)
    box = crop_params(288, 384, rng)
    assert params["rotation_deg"] == angle and params["crop"] == list(box)
    assert np.array_equal(np.asarray(out), to_uint8(resized_crop(rotated, box)))


def test_rotation_by_90_degrees_is_exact_on_a_square():
    arr = np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    out = to_uint8(rotate(to_float_tensor(Image.fromarray(arr)), 90.0))
    assert np.array_equal(out, np.rot90(arr, k=1))  # counter-clockwise
    corners = to_uint8(rotate(to_float_tensor(Image.fromarray(np.full((40, 60, 3), 255, np.uint8))), 20.0))
    assert (corners[0, 0] == 0).all() and (corners[20, 30] == 255).all()  # black outside, content kept


def test_crop_covers_a_fifth_to_all_of_the_area_or_falls_back_to_the_centre():
    rng = np.random.default_rng(0)
    sides = [crop_params(288, 384, rng)[2] for _ in range(2000)]
    assert min(sides) >= int(round((0.2 * 288 * 384) ** 0.5)) - 1 and max(sides) <= 288
    assert crop_params(10, 1000, np.random.default_rng(0)) == (0, 495, 10, 10)  # every try too tall: centre


def test_resized_crop_agrees_with_pillow_bilinear_within_two_levels(photo):
    t = to_float_tensor(photo)
    ours = to_uint8(resized_crop(t, (0, 48, 288, 288)))
    pil = np.asarray(photo.crop((48, 0, 336, 288)).resize((224, 224), Image.BILINEAR))
    assert np.abs(ours.astype(int) - pil.astype(int)).max() <= 2


def test_level_frequencies_match_the_published_mix():
    rng = np.random.default_rng(0)
    counts = np.bincount([draw_level(rng) for _ in range(4000)], minlength=4)
    assert chisquare(counts, f_exp=np.full(4, 1000)).pvalue > 0.001
    skewed = np.bincount([draw_level(rng, (0.7, 0.1, 0.1, 0.1)) for _ in range(4000)], minlength=4)
    assert chisquare(skewed, f_exp=np.array([2800, 400, 400, 400])).pvalue > 0.001
    assert LEVEL_PROBS == (0.25, 0.25, 0.25, 0.25)


def test_wire_is_a_quality_75_jpeg(photo):
    import io

    buf = io.BytesIO()
    base(photo).save(buf, format="JPEG", quality=75)
    assert np.array_equal(np.asarray(wire(base(photo))), np.asarray(Image.open(buf).convert("RGB")))


@pytest.mark.parametrize("kwargs, needle", [({"level": 4}, "Invalid challenge level 4"),
                                            ({"level": "1"}, "Invalid challenge level '1'"),
                                            ({"level_probs": (0.5, 0.5)}, "Level probabilities")])
def test_bad_level_or_mix_is_a_clear_error(photo, kwargs, needle):
    with pytest.raises(ConfigError, match=needle):
        challenge(photo, np.random.default_rng(0), **kwargs)


def test_non_images_and_empty_images_are_refused():
    with pytest.raises(ConfigError, match="Expected a PIL image"):
        challenge(np.zeros((4, 4, 3), np.uint8), np.random.default_rng(0))
    with pytest.raises(ConfigError, match="Empty image"):
        base(Image.new("RGB", (0, 5)))
    assert check_level_probs([0.25] * 4) == (0.25,) * 4
