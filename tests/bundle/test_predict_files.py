"""``predict`` over many files: decoded in loader workers, large JPEGs at a reduced DCT scale (or in full with
``full_decode``), rows in input order whatever the workers, unreadable files reported in place."""

import numpy as np
from PIL import Image

from streetvision import Predictor
from streetvision.bundle.predict_files import DRAFT_FACTOR, collect, score_entries
from streetvision.data.synthetic import render_scene


def _photos(folder, n=6):
    """Large JPEGs (shorter side >= 4x the micro model's input: drafted), a PNG and a broken file."""
    folder.mkdir()
    for i in range(n):
        render_scene(i).image.resize((960, 720), Image.BILINEAR).save(folder / f"a_{i}.jpg", quality=90)
    render_scene(99).image.save(folder / "b.png")
    (folder / "c_broken.jpg").write_bytes(b"\xff\xd8\xff\xe0garbage")
    return folder


def test_rows_are_the_same_with_and_without_loader_workers_and_in_input_order(micro_bundle, tmp_path):
    predictor = Predictor.from_bundle(micro_bundle)
    entries = collect([str(_photos(tmp_path / "imgs"))])
    inline = score_entries(predictor, entries, batch_size=3, workers=0)
    parallel = score_entries(predictor, entries, batch_size=3, workers=2)
    assert inline == parallel
    assert [r["path"] for r in inline] == [str(e.path) for e in entries]
    assert [r["error"] is None for r in inline] == [True] * 7 + [False]


def test_full_decode_is_the_predictor_and_drafting_stays_within_a_hundredth(micro_bundle, tmp_path):
    predictor = Predictor.from_bundle(micro_bundle)
    assert min(960, 720) >= 2 * DRAFT_FACTOR * predictor.preprocess.size  # these JPEGs are drafted
    entries = collect([str(_photos(tmp_path / "imgs"))])[:-1]
    full = score_entries(predictor, entries, batch_size=4, workers=0, full_decode=True)
    draft = score_entries(predictor, entries, batch_size=4, workers=0)
    expected = predictor.predict_batch([e.path for e in entries])
    assert [r["probability"] for r in full] == [p.probability for p in expected]
    p_full = np.array([r["probability"] for r in full])
    p_draft = np.array([r["probability"] for r in draft])
    assert not np.array_equal(p_full[:-1], p_draft[:-1])  # the JPEGs were decoded at another scale
    assert p_full[-1] == p_draft[-1]  # the PNG is decoded in full either way
    assert np.abs(p_full - p_draft).max() < 0.02
