"""Challenge levels, their frequencies, the base transform and the wire JPEG."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.stats import chisquare

from streetvision.errors import ConfigError
from streetvision.validator.challenges import (
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


# ------------------------------------------------------------------------------------------- piece by piece
class _FixedDraw:
    """An rng whose uniform draw is fixed, to put a draw exactly on a cumulative boundary."""

    def __init__(self, u: float) -> None:
        self.u = u

    def random(self) -> float:
        return self.u


def _small(w: int = 40, h: int = 30, mode: str = "RGB") -> Image.Image:
    arr = np.random.default_rng(w * 1000 + h).integers(0, 256, (h, w, 3), dtype=np.uint8)
    return Image.fromarray(arr).convert(mode)


def test_base_centre_crops_a_portrait_vertically_and_keeps_an_exact_size():
    arr = np.zeros((161, 100, 3), np.uint8)
    arr[:, :, 0] = np.arange(161, dtype=np.uint8)[:, None]  # each row tells its index
    out = np.asarray(base(Image.fromarray(arr), size=100))  # 61 rows too many: 30 off the top (round half to even)
    assert out.shape == (100, 100, 3) and np.array_equal(out, arr[30:130])
    square = _small(64, 64)
    assert np.array_equal(np.asarray(base(square, size=64)), np.asarray(square))  # already that size: untouched
    assert base(square, size=32).size == (32, 32)


def test_any_image_mode_becomes_rgb_and_empty_heights_are_refused():
    grey = _small(mode="L")
    for level in (0, 1):
        out, _, _ = challenge(grey, np.random.default_rng(0), level=level, wire_jpeg=False)
        assert out.mode == "RGB" and out.size == (224, 224)
    assert np.array_equal(np.asarray(base(grey)), np.asarray(base(grey.convert("RGB"))))
    assert wire(grey).mode == "RGB"  # the miner receives RGB
    with pytest.raises(ConfigError, match="Empty image") as exc:
        base(Image.new("RGB", (5, 0)))
    assert exc.value.fix == "pass an image with pixels."
    with pytest.raises(ConfigError, match="Expected a PIL image, got str") as exc:
        base("photo.jpg")
    assert exc.value.fix == "pass PIL.Image.open(path)."


def test_a_draw_on_a_cumulative_boundary_takes_the_lower_level():
    assert [draw_level(_FixedDraw(u)) for u in (0.0, 0.25, 0.2500001, 0.5, 0.75, 0.7500001, 1.0)] == [0, 0, 1, 1, 2,
                                                                                                      3, 3]
    assert draw_level(_FixedDraw(0.3), (0.0, 0.0, 1.0, 0.0)) == 2
    # probabilities whose float sum falls short of the draw still give the last level, never nothing
    assert sum((0.7, 0.1, 0.1, 0.1)) < 1.0 and draw_level(_FixedDraw(1.0), (0.7, 0.1, 0.1, 0.1)) == 3


def test_level_mix_accepts_zeros_and_refuses_negatives_or_a_wrong_sum():
    assert check_level_probs((1, 0, 0, 0)) == (1.0, 0.0, 0.0, 0.0)
    assert check_level_probs([0.7, 0.1, 0.1, 0.1]) == (0.7, 0.1, 0.1, 0.1)  # a float sum a hair under 1
    for bad in [(1.5, -0.5, 0.0, 0.0), (0.3, 0.3, 0.3, 0.3), (0.5, 0.5, 0.5, 0.5), (0.2, 0.2, 0.2, 0.2),
                (0.25, 0.25, 0.25, 0.25, 0.0)]:
        with pytest.raises(ConfigError, match="Level probabilities") as exc:
            check_level_probs(bad)
        assert exc.value.fix == "use e.g. [0.25, 0.25, 0.25, 0.25], the validator's mix."
    out = [challenge(_small(), np.random.default_rng(s), level_probs=(0.0, 0.0, 1.0, 0.0), wire_jpeg=False, size=16)
           for s in range(3)]
    assert [level for _, level, _ in out] == [2, 2, 2]


def _crop_reference(height: int, width: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """The crop as described: ten tries of a square of U(0.2, 1) of the area that fits, else the centred square."""
    for _ in range(10):
        side = int(round((height * width * rng.uniform(0.2, 1.0)) ** 0.5))
        if 1 <= side <= min(height, width):
            return int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1)), side, side
    side = min(height, width)
    return (height - side) // 2, (width - side) // 2, side, side


@pytest.mark.parametrize("height, width", [(1, 1), (2, 2), (3, 5), (5, 3), (12, 12), (30, 200)])
def test_crop_matches_its_description_and_stays_inside(height, width):
    boxes = []
    for seed in range(300):
        box = crop_params(height, width, np.random.default_rng(seed))
        assert box == _crop_reference(height, width, np.random.default_rng(seed))
        assert all(type(v) is int for v in box)
        boxes.append(box)
    top, left, side, _ = np.array(boxes).T
    assert (top >= 0).all() and (left >= 0).all() and (side >= 1).all()
    assert (top + side <= height).all() and (left + side <= width).all()


def test_crop_fallback_centres_with_integer_offsets():
    assert crop_params(10, 1001, np.random.default_rng(0)) == (0, 495, 10, 10)
    assert crop_params(1001, 10, np.random.default_rng(0)) == (495, 0, 10, 10)
    assert all(type(v) is int for v in crop_params(10, 1001, np.random.default_rng(0)))


def _rotate_reference(arr: np.ndarray, angle: float) -> np.ndarray:
    """Counter-clockwise about the centre, nearest source pixel (ties to even, as grid_sample), black outside."""
    h, w = arr.shape[:2]
    a = math.radians(angle)
    ys, xs = np.mgrid[0:h, 0:w]
    x, y = xs - (w - 1) / 2, ys - (h - 1) / 2
    j = np.rint(math.cos(a) * x - math.sin(a) * y + (w - 1) / 2).astype(int)
    i = np.rint(math.sin(a) * x + math.cos(a) * y + (h - 1) / 2).astype(int)
    inside = (j >= 0) & (j < w) & (i >= 0) & (i < h)
    out = np.zeros_like(arr)
    out[inside] = arr[i[inside], j[inside]]
    return out


@pytest.mark.parametrize("shape, angle", [((61, 83), 13.0), ((83, 61), -17.0), ((50, 50), 7.5), ((45, 64), 20.0)])
def test_rotation_matches_a_per_pixel_reference_without_warnings(shape, angle):
    import warnings

    arr = np.random.default_rng(0).integers(0, 256, (*shape, 3), dtype=np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every grid_sample setting is explicit
        out = to_uint8(rotate(to_float_tensor(Image.fromarray(arr)), angle))
    # float32 here and float64 there may round a source position that sits on a half pixel differently
    assert (out != _rotate_reference(arr, angle)).any(axis=2).mean() <= 0.005


def test_every_tensor_between_steps_is_float32_in_0_1(monkeypatch):
    import streetvision.validator.challenges as module

    seen = []

    def checked(t):
        seen.append((t.dtype, float(t.min()), float(t.max())))
        return to_uint8(t)

    monkeypatch.setattr(module, "to_uint8", checked)
    for seed in range(4):
        challenge(_small(), np.random.default_rng(seed), level=3, wire_jpeg=False, size=16)
    assert len(seen) > 4 and all(dtype == torch.float32 and 0.0 <= lo <= hi <= 1.0 for dtype, lo, hi in seen)


def test_rotation_is_nearest_neighbour_keeps_the_centre_and_works_on_any_shape():
    arr = (np.random.default_rng(1).integers(0, 2, (31, 47, 3)) * 255).astype(np.uint8)  # only 0 and 255
    t = to_float_tensor(Image.fromarray(arr))
    for angle in (7.5, -13.0, 20.0):
        out = to_uint8(rotate(t, angle))
        assert out.shape == arr.shape and set(np.unique(out)) <= {0, 255}  # nearest: no value is invented
        assert np.array_equal(out[15, 23], arr[15, 23])  # the centre pixel stays where it is
    assert np.array_equal(to_uint8(rotate(t, 0.0)), arr)
    assert np.array_equal(to_uint8(rotate(t, 180.0)), arr[::-1, ::-1])
    square = np.asarray(_small(30, 30))
    assert np.array_equal(to_uint8(rotate(to_float_tensor(Image.fromarray(square)), -90.0)), np.rot90(square, k=-1))


def test_tensor_round_trip_is_exact():
    arr = np.asarray(_small(17, 9))
    t = to_float_tensor(Image.fromarray(arr))
    assert t.shape == (3, 9, 17) and t.dtype.is_floating_point and float(t.max()) <= 1.0
    assert np.array_equal(to_uint8(t), arr)
    assert np.array_equal(to_uint8(t[:, :4, :5]), arr[:4, :5])


def test_resized_crop_cuts_the_box_and_resizes_to_the_size_asked():
    t = to_float_tensor(_small(50, 40))
    assert np.array_equal(to_uint8(resized_crop(t, (3, 5, 16, 16), size=16)), to_uint8(t)[3:19, 5:21])
    assert tuple(resized_crop(t, (0, 0, 40, 40), size=20).shape) == (3, 20, 20)
    up = resized_crop(t, (10, 10, 4, 4), size=8)  # bilinear, half-pixel centres: a 2x upscale keeps the mean
    assert abs(float(up.mean()) - float(t[:, 10:14, 10:14].mean())) < 0.02


def _expected(img: Image.Image, seed: int, level: int, size: int) -> tuple[np.ndarray, dict]:
    """The challenge as described, built from its pieces with the same draws in the same order."""
    from streetvision.validator.distortions import distort

    rng = np.random.default_rng(seed)
    angle = float(rng.uniform(-20, 20))
    t = rotate(to_float_tensor(img), angle)
    box = crop_params(t.shape[1], t.shape[2], rng)
    t = resized_crop(t, box, size)
    kinds = {2: ["CS", "CC", "JPEG"], 3: ["CS", "CC", "JPEG", "GNC", "GB"]}.get(level, [])
    drawn = {}
    for kind in kinds:
        drawn[kind] = int(rng.integers(0, level))  # level 2: {0, 1}; level 3: {0, 1, 2}
        if drawn[kind]:
            t = torch.from_numpy(distort(to_uint8(t), kind, drawn[kind], rng).astype(np.float32) / 255).permute(2, 0, 1)
    return to_uint8(t), drawn


@pytest.mark.parametrize("level", [2, 3])
def test_distorted_levels_are_geometry_then_their_distortions_in_order(level):
    img = _small(60, 45)
    seen = set()
    for seed in range(12):
        out, got, params = challenge(img, np.random.default_rng(seed), level=level, wire_jpeg=False, size=32)
        expected, drawn = _expected(img, seed, level, 32)
        assert got == level and out.size == (32, 32) and params["distortions"] == drawn and params["wire"] is None
        assert np.array_equal(np.asarray(out), expected), seed
        seen |= set(drawn.values())
    assert seen == set(range(level))  # every distortion level the validator draws at this challenge level


def test_level_is_an_int_of_0_to_3_and_level_one_has_no_distortions():
    zero, _, _ = challenge(_small(), np.random.default_rng(0), level=0, size=24)
    assert zero.size == (24, 24) and np.array_equal(np.asarray(zero), np.asarray(wire(base(_small(), 24))))
    out, level, params = challenge(_small(), np.random.default_rng(0), level=np.int64(1), size=24)
    assert type(level) is int and level == 1 and out.size == (24, 24) and "distortions" not in params
    assert params["crop"] == [int(v) for v in params["crop"]] and params["wire"] == "jpeg_q75"
    for bad in (True, -1, 1.0):
        with pytest.raises(ConfigError, match="Invalid challenge level") as exc:
            challenge(_small(), np.random.default_rng(0), level=bad)
        assert exc.value.fix == "pass level=None to draw it as the validator does."
