"""The validator stream replay: its arithmetic on a fixed scorer, and the simulate command on a micro bundle.

Most tests replace the pixel work by ``quick_challenge`` (the level drawn as the validator does, the image passed
through): the stream's own bookkeeping at a few ms a step, which keeps them fast enough for mutation testing;
test_challenge.py covers the challenge itself and one test here runs the real one."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
# the reward tracker imports scikit-learn lazily; importing it here, at collection, spares each forked
# mutation-test run (benchmarks/mutation.py) the import
from sklearn.metrics import matthews_corrcoef  # noqa: F401

from streetvision.data.synthetic import write_dataset
from streetvision.errors import ConfigError, DataError
from streetvision.validator import stream
from streetvision.validator.challenges import LEVEL_PROBS, check_level_probs, draw_level
from streetvision.validator.reward import RewardTracker
from streetvision.validator.stream import block_bootstrap_mean, simulate


def _images(n: int) -> list[Image.Image]:
    return [Image.new("RGB", (40, 30), (10 * i, 0, 0)) for i in range(n)]


@pytest.fixture
def quick_challenge(monkeypatch) -> list[dict]:
    """simulate's challenge as a recorder: draws the level from the rng it is given, returns the image untouched."""
    calls: list[dict] = []

    def fake(image, rng, level=None, level_probs=LEVEL_PROBS, wire_jpeg=True, size=224):
        state = rng.bit_generator.state["state"]["state"]
        drawn = draw_level(rng, check_level_probs(level_probs))
        calls.append({"image": image, "rng_state": state, "level_probs": level_probs, "level": drawn,
                      "defaults": (level, wire_jpeg, size)})
        return image, drawn, {"level": drawn}

    monkeypatch.setattr(stream, "challenge", fake)
    return calls


def test_a_perfect_answerer_is_paid_the_replayed_tracker_rewards(quick_challenge):
    labels = np.array([0, 1] * 5)
    images = _images(10)
    truth = {im.tobytes(): y for im, y in zip(images, labels)}  # not used by the scorer: it sees distorted images

    calls = []

    def oracle(batch):
        calls.append(len(batch))
        return np.full(len(batch), 0.9)  # always "roadwork"

    out = simulate(oracle, images, labels, n_steps=150, seed=1, n_resamples=200)
    rows = out["steps"]
    tracker = RewardTracker()
    assert [r["reward"] for r in rows] == pytest.approx([tracker.update(0.9, r["label"]) for r in rows])
    s = out["summary"]
    assert s["mcc"] == 0.0 and s["accuracy"] == pytest.approx(np.mean([r["label"] for r in rows]))
    assert sum(calls) == 150 and truth


def test_labels_follow_the_prior_and_levels_the_published_mix(quick_challenge):
    out = simulate(lambda b: np.zeros(len(b)), _images(6), np.array([0, 0, 0, 1, 1, 1]), n_steps=400, seed=0,
                   prior=0.3, n_resamples=50)
    labels = np.array([r["label"] for r in out["steps"]])
    levels = np.bincount([r["level"] for r in out["steps"]], minlength=4)
    assert 0.25 < labels.mean() < 0.35 and levels.min() > 70


def test_block_bootstrap_is_wider_for_a_dependent_series():
    rng = np.random.default_rng(0)
    dependent = np.repeat(rng.random(20), 50)  # 1000 values in 20 constant runs
    low, high = block_bootstrap_mean(dependent, 100, 500, 0)
    naive_low, naive_high = block_bootstrap_mean(dependent, 1, 500, 0)
    assert low <= dependent.mean() <= high and (high - low) > 2 * (naive_high - naive_low)


def test_a_single_class_or_no_steps_is_refused():
    with pytest.raises(DataError, match="both classes"):
        simulate(lambda b: np.zeros(len(b)), _images(3), np.array([1, 1, 1]))
    with pytest.raises(ConfigError, match="n_steps must be positive"):
        simulate(lambda b: np.zeros(len(b)), _images(2), np.array([0, 1]), n_steps=0)


def test_simulate_command_reports_and_writes_the_stream(micro_bundle, tmp_path):
    write_dataset(tmp_path / "folder", n=12, seed=4)
    proc = subprocess.run([sys.executable, "-m", "streetvision.cli", "simulate", str(micro_bundle), "--folder",
                           str(tmp_path / "folder"), "--n", "120", "--out", str(tmp_path / "out")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "120 challenges over 12 images" in proc.stdout and "mean reward" in proc.stdout
    summary = json.loads((tmp_path / "out" / "stream_summary.json").read_text())
    assert summary["steps"] == 120 and 0.0 <= summary["mean_reward"] <= 1.0
    bad = subprocess.run([sys.executable, "-m", "streetvision.cli", "simulate", str(micro_bundle), "--folder",
                          str(tmp_path / "folder"), "--prior", "1.5"], capture_output=True, text=True)
    assert bad.returncode == 2 and "strictly between 0 and 1" in bad.stderr and "Traceback" not in bad.stderr


def _coloured(n: int) -> tuple[list[Image.Image], np.ndarray]:
    """Class 1 red, class 0 blue (shades differ per image): the colour survives every challenge level."""
    labels = np.array([i % 2 for i in range(n)])
    images = [Image.new("RGB", (40, 30), (150 + 10 * i, 20, 40) if y else (40, 20, 150 + 10 * i))
              for i, y in enumerate(labels)]
    return images, labels


def _redness(batch) -> np.ndarray:
    return np.array([float(np.asarray(im)[..., 0].mean() > np.asarray(im)[..., 2].mean()) for im in batch])


def test_the_scorer_sees_the_drawn_image_under_its_own_seeded_challenge():
    from streetvision.validator.challenges import challenge

    images, labels = _coloured(4)
    seen = []

    def scorer(batch):
        seen.extend(batch)
        return _redness(batch) * 0.8 + 0.1

    out = simulate(scorer, images, labels, n_steps=10, seed=3, n_resamples=20, batch_size=4)
    rows = out["steps"]
    assert out["summary"]["accuracy"] == 1.0 and len(seen) == 10  # the real challenge keeps the colour
    for k in (0, 9):
        again, level, _ = challenge(images[rows[k]["image"]], np.random.default_rng([3, k]))
        assert np.array_equal(np.asarray(again), np.asarray(seen[k])) and level == rows[k]["level"]


def test_each_step_challenges_its_own_image_with_its_own_rng(quick_challenge):
    images, labels = _coloured(6)
    mix = (0.1, 0.2, 0.3, 0.4)
    out = simulate(lambda b: _redness(b) * 0.8 + 0.1, images, labels, n_steps=40, seed=3, level_probs=mix,
                   n_resamples=20, batch_size=16)
    rows = out["steps"]
    assert [r["step"] for r in rows] == list(range(40)) and len(quick_challenge) == 40
    assert all(labels[r["image"]] == r["label"] for r in rows)
    assert {r["image"] for r in rows} == set(range(6))  # drawn with replacement from the whole set
    for k, (row, call) in enumerate(zip(rows, quick_challenge)):
        assert call["image"] is images[row["image"]] and call["level"] == row["level"]
        assert call["rng_state"] == np.random.default_rng([3, k]).bit_generator.state["state"]["state"]
        assert call["level_probs"] == mix and call["defaults"] == (None, True, 224)
    assert [r["answer"] for r in rows] == pytest.approx([0.9 if r["label"] else 0.1 for r in rows])
    assert out["summary"]["accuracy"] == 1.0 and out["summary"]["mcc"] == 1.0


def test_batches_hold_at_most_batch_size_images_in_step_order(quick_challenge):
    images, labels = _coloured(4)
    sizes = []

    def scorer(batch):
        sizes.append(len(batch))
        return _redness(batch) * 0.5 + 0.25

    default = simulate(scorer, images, labels, n_steps=70, seed=0, n_resamples=10)
    assert sizes == [64, 6]
    sizes.clear()
    small = simulate(scorer, images, labels, n_steps=70, seed=0, n_resamples=10, batch_size=16)
    assert sizes == [16, 16, 16, 16, 6] and small["steps"] == default["steps"]
    one = simulate(scorer, images, labels, n_steps=1, seed=0, n_resamples=10)
    assert len(one["steps"]) == 1 and one["summary"]["steps"] == 1 and one["steps"][0] == default["steps"][0]


def test_the_summary_is_the_statistics_of_the_rows(quick_challenge):
    images, labels = _coloured(4)
    out = simulate(lambda b: np.full(len(b), 0.6), images, labels, n_steps=120, seed=5, prior=0.4,
                   level_probs=(0.0, 0.5, 0.0, 0.5), n_resamples=30)
    s, rows = out["summary"], out["steps"]
    rewards = np.array([r["reward"] for r in rows])
    levels = np.array([r["level"] for r in rows])
    assert set(levels) == {1, 3}
    assert (s["steps"], s["seed"], s["prior_roadwork"], s["level_probs"]) == (120, 5, 0.4, [0.0, 0.5, 0.0, 0.5])
    assert s["mean_reward"] == pytest.approx(rewards.mean())
    assert [s["p5"], s["p50"], s["p95"]] == pytest.approx(list(np.quantile(rewards, [0.05, 0.5, 0.95])))
    assert s["mean_reward_after_warmup"] == pytest.approx(rewards[100:].mean())
    low, high = block_bootstrap_mean(rewards, 100, 30, 5)
    assert s["mean_reward_ci"] == {"low": low, "high": high, "method": "moving-block bootstrap, block 100, 30 resamples"}
    assert s["mean_reward_by_level"] == {"0": None, "1": pytest.approx(rewards[levels == 1].mean()), "2": None,
                                         "3": pytest.approx(rewards[levels == 3].mean())}
    y = np.array([r["label"] for r in rows])
    assert s["accuracy"] == pytest.approx(y.mean())  # 0.6 rounds to "roadwork" every time
    short = simulate(lambda b: np.full(len(b), 0.4), images, labels, n_steps=100, seed=5, n_resamples=30)
    assert short["summary"]["mean_reward_after_warmup"] is None  # nothing after the first MCC window
    assert short["summary"]["accuracy"] == pytest.approx(1 - np.mean([r["label"] for r in short["steps"]]))


def test_the_seed_decides_the_stream(quick_challenge):
    images, labels = _coloured(4)
    a = simulate(_redness, images, labels, n_steps=30, seed=1, n_resamples=10)["steps"]
    b = simulate(_redness, images, labels, n_steps=30, seed=2, n_resamples=10)["steps"]
    assert [r["label"] for r in a] != [r["label"] for r in b]
    default = simulate(_redness, images, labels, n_steps=30)  # seed 0, 1000 resamples
    assert default["steps"] == simulate(_redness, images, labels, n_steps=30, seed=0, n_resamples=10)["steps"]
    assert default["summary"]["seed"] == 0 and default["summary"]["mean_reward_ci"]["method"].endswith(
        "1000 resamples")


def test_roadwork_is_a_draw_below_the_prior(quick_challenge):
    images, labels = _coloured(4)
    first = float(np.random.default_rng(7).random())  # the stream's first draw decides the first label
    on = simulate(_redness, images, labels, n_steps=1, seed=7, prior=first, n_resamples=10)["steps"][0]
    above = simulate(_redness, images, labels, n_steps=1, seed=7, prior=float(np.nextafter(first, 1.0)),
                     n_resamples=10)["steps"][0]
    assert (on["label"], above["label"]) == (0, 1)


def _block_reference(x: np.ndarray, block: int, n_resamples: int, seed: int, confidence: float) -> tuple:
    """Moving-block bootstrap by a loop: ceil(n / block) blocks with uniform starts, cut to n, mean per resample."""
    n, rng = len(x), np.random.default_rng(seed)
    starts = rng.integers(0, n - block + 1, size=(n_resamples, -(-n // block)))
    means = [np.concatenate([x[s:s + block] for s in row])[:n].mean() for row in starts]
    return tuple(np.quantile(means, [(1 - confidence) / 2, (1 + confidence) / 2]))


@pytest.mark.parametrize("n, block, confidence", [(7, 3, 0.9), (10, 1, 0.95), (50, 7, 0.8), (30, 30, 0.5)])
def test_block_bootstrap_matches_a_loop(n, block, confidence):
    x = np.random.default_rng(n).random(n)
    expected = _block_reference(x, block, 200, 4, confidence)
    assert block_bootstrap_mean(x, block, 200, 4, confidence) == pytest.approx(expected, abs=1e-12)
    if confidence == 0.95:
        assert block_bootstrap_mean(x, block, 200, 4) == pytest.approx(expected, abs=1e-12)


def test_block_bootstrap_edge_cases():
    assert block_bootstrap_mean(np.array([]), 100, 50, 0) == (0.0, 0.0)
    x = np.random.default_rng(0).random(9)
    assert block_bootstrap_mean(x, 100, 50, 0) == pytest.approx((x.mean(), x.mean()))  # one block: the series
    assert block_bootstrap_mean(x, 0, 50, 0) == block_bootstrap_mean(x, 1, 50, 0)  # a block is at least 1 long
    assert block_bootstrap_mean([1, 2, 3], 1, 50, 0) == block_bootstrap_mean(np.array([1.0, 2, 3]), 1, 50, 0)
    single = np.random.default_rng(1).random(50).astype(np.float32)  # means in double precision whatever the input
    assert block_bootstrap_mean(single, 7, 200, 0) == block_bootstrap_mean(single.astype(np.float64), 7, 200, 0)


def test_a_missing_class_is_named_with_the_fix():
    with pytest.raises(DataError, match=r"class 1 \(roadwork, the positive class\) has no readable image") as exc:
        simulate(lambda b: np.zeros(len(b)), _images(3), np.array([0, 0, 0]))
    assert exc.value.fix == ("add readable images of that class: one sub-folder per class, named as the bundle's "
                             "class_names (e.g. no_roadwork/ and roadwork/).")
    with pytest.raises(ConfigError, match="got -3") as exc:
        simulate(lambda b: np.zeros(len(b)), _images(2), np.array([0, 1]), n_steps=-3)
    assert exc.value.fix == "pass --n 1000 (or more)."
