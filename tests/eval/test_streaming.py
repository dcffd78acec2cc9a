"""Streaming evaluation: every file decoded once, scored under every condition while its batch is in memory, so
the number of decoded images held is bounded whatever the number of files, with the same outputs as decoding
everything first."""

from __future__ import annotations

import weakref

import numpy as np
import pytest

from streetvision.bundle.predictor import Predictor
from streetvision.data.synthetic import write_dataset
from streetvision.eval import evaluate
from streetvision.eval.evaluate import FileImages, load_samples, score_conditions, score_files


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """23 small scenes with two unreadable files among them."""
    root = tmp_path_factory.mktemp("stream")
    samples = write_dataset(root / "images", n=23, seed=5, size=64)
    (root / "images" / "bad_a.png").write_bytes(b"not an image")
    (root / "images" / "bad_b.jpg").write_bytes(b"")
    return samples[:7] + [(root / "images" / "bad_a.png", 1)] + samples[7:15] + [(root / "images" / "bad_b.jpg", 0)] \
        + samples[15:]


def test_streamed_scoring_equals_scoring_everything_in_memory(files, micro_bundle):
    predictor = Predictor.from_bundle(micro_bundle)
    images, labels, paths, skipped = load_samples(files)
    expected = score_conditions(predictor, images, labels, seed=3, batch_size=4)
    got, got_labels, got_paths, got_skipped = score_files(predictor, files, seed=3, batch_size=4)
    assert got_paths == paths and got_skipped == skipped and len(skipped) == 2
    np.testing.assert_array_equal(got_labels, labels)
    assert got.keys() == expected.keys()
    for name in expected:
        np.testing.assert_array_equal(got[name].logits, expected[name].logits)
        np.testing.assert_array_equal(got[name].levels, expected[name].levels)
        assert got[name].params == expected[name].params


def test_at_most_a_batch_of_decoded_images_is_alive(files, micro_bundle, monkeypatch):
    alive, most = [0], [0]
    decode = evaluate.decode_image

    def counted(path):
        image = decode(path)
        alive[0] += 1
        most[0] = max(most[0], alive[0])
        weakref.finalize(image, lambda: alive.__setitem__(0, alive[0] - 1))
        return image

    monkeypatch.setattr(evaluate, "decode_image", counted)
    score_files(Predictor.from_bundle(micro_bundle), files, seed=0, batch_size=4)
    assert most[0] <= 2 * 4  # the batch being scored and the next one being decoded
    alive[0] = most[0] = 0
    images, *_ = load_samples(files)  # what evaluation did before: every image at once
    assert most[0] == len(images) == 23


def test_file_images_decode_on_demand_and_keep_only_the_last_few(files):
    paths = [p for p, _ in files if p.suffix == ".png" and not p.name.startswith("bad")][:6]
    images = FileImages(paths, keep=2)
    first = images[0]
    assert images[0] is first and len(images) == 6
    images[1], images[2]
    assert images[0] is not first and np.array_equal(np.asarray(images[0]), np.asarray(first))
    assert len(images._cache) == 2
