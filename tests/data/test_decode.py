import numpy as np
import pytest
from PIL import Image

from streetvision.data.decode import DecodeError, decode_image
from tests.data.corpus import build_corpus


def test_every_bad_or_odd_file_decodes_to_rgb_or_is_quarantined_with_reason(tmp_path):
    expected = build_corpus(tmp_path)
    for name, outcome in expected.items():
        if outcome == "ok":
            img = decode_image(tmp_path / name)
            assert img.mode == "RGB", name
            assert np.asarray(img).dtype == np.uint8
        else:
            with pytest.raises(DecodeError) as exc:
                decode_image(tmp_path / name)
            assert outcome in exc.value.reason, (name, exc.value.reason)


def test_exif_orientation_is_applied(tmp_path):
    build_corpus(tmp_path)
    assert decode_image(tmp_path / "exif_rotated.jpg").size == (64, 80)  # stored 80x64, displayed rotated


def test_sixteen_bit_png_keeps_its_dynamic_range(tmp_path):
    build_corpus(tmp_path)
    arr = np.asarray(decode_image(tmp_path / "png16.png"))
    assert arr.min() == 0 and arr.max() == 255


def test_transparent_pixels_become_white(tmp_path):
    img = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    assert decode_image(img).getpixel((0, 0)) == (255, 255, 255)


def test_jpeg_draft_decodes_at_reduced_size(tmp_path):
    Image.new("RGB", (800, 600), (10, 20, 30)).save(tmp_path / "big.jpg")
    img = decode_image(tmp_path / "big.jpg", min_size=112)
    assert 112 <= min(img.size) < 600
