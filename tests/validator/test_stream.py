"""The validator stream replay: its arithmetic on a fixed scorer, and the simulate command on a micro bundle."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from streetvision.data.synthetic import write_dataset
from streetvision.errors import ConfigError
from streetvision.validator.reward import RewardTracker
from streetvision.validator.stream import block_bootstrap_mean, simulate


def _images(n: int) -> list[Image.Image]:
    return [Image.new("RGB", (40, 30), (10 * i, 0, 0)) for i in range(n)]


def test_a_perfect_answerer_is_paid_the_replayed_tracker_rewards():
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


def test_labels_follow_the_prior_and_levels_the_published_mix():
    out = simulate(lambda b: np.zeros(len(b)), _images(6), np.array([0, 0, 0, 1, 1, 1]), n_steps=800, seed=0,
                   prior=0.3, n_resamples=50)
    labels = np.array([r["label"] for r in out["steps"]])
    levels = np.bincount([r["level"] for r in out["steps"]], minlength=4)
    assert 0.25 < labels.mean() < 0.35 and levels.min() > 150


def test_block_bootstrap_is_wider_for_a_dependent_series():
    rng = np.random.default_rng(0)
    dependent = np.repeat(rng.random(20), 50)  # 1000 values in 20 constant runs
    low, high = block_bootstrap_mean(dependent, 100, 500, 0)
    naive_low, naive_high = block_bootstrap_mean(dependent, 1, 500, 0)
    assert low <= dependent.mean() <= high and (high - low) > 2 * (naive_high - naive_low)


def test_a_single_class_or_no_steps_is_refused():
    with pytest.raises(ConfigError, match="both classes"):
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
