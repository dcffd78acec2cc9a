"""Replay a validator stream against a miner's model and report what it would be paid.

Each step, as the validator's ``forward``: draw the label 50/50 (``deploy`` prior), pick an image of that class,
draw a challenge level with the published probabilities and distort it (:func:`challenge`, JPEG wire included),
ask the model for its float, and pay it with :class:`RewardTracker`. Images are drawn with replacement from the
labelled set given, so a stream of 1,000 steps over 33 test images re-uses each image under fresh distortions.

The per-step rewards are serially dependent (they share the last-100 MCC window), so the interval for the mean
is a moving-block bootstrap with blocks of one MCC window.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from streetvision.console import progress
from streetvision.errors import ConfigError, DataError
from streetvision.validator.challenges import LEVEL_PROBS, challenge
from streetvision.validator.prior import VALIDATOR_FAKE_PROB, VALIDATOR_PRIOR, check_prior
from streetvision.validator.reward import MCC_WINDOW, RewardTracker

if TYPE_CHECKING:
    from rich.console import Console

DEFAULT_STEPS = 1000
MAX_STREAM_STEPS = 1_000_000  # `simulate --n`: about a minute of scoring-free replay; more only grows memory


def block_bootstrap_mean(values: np.ndarray, block: int, n_resamples: int, seed: int,
                         confidence: float = 0.95) -> tuple[float, float]:
    """Moving-block bootstrap interval of the mean of a dependent series."""
    x = np.asarray(values, dtype=np.float64)
    n = len(x)
    if n == 0:
        return 0.0, 0.0
    block = max(1, min(block, n))
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, n - block + 1, size=(n_resamples, -(-n // block)))
    idx = (starts[:, :, None] + np.arange(block)).reshape(n_resamples, -1)[:, :n]
    means = x[idx].mean(axis=1)
    alpha = (1 - confidence) / 2
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


def _kind_pools(labels: np.ndarray, kinds: np.ndarray) -> dict[tuple[str, int], np.ndarray]:
    """Image indices per (kind, label); DataError naming the empty cells (the validator draws every one)."""
    pools = {(kind, label): np.flatnonzero((kinds == kind) & (labels == label))
             for kind in ("real", "generated") for label in (0, 1)}
    empty = [f"{kind} images of class {label}" for (kind, label), idx in pools.items() if len(idx) == 0]
    if empty:
        raise DataError(f"The stream draws real and generated images of both classes; there are no "
                        f"{', no '.join(empty)}.",
                        "add readable images there, or simulate with one kind only (no generated folder).")
    return pools


def simulate(score_batch: Callable[[list[Image.Image]], np.ndarray], images: Sequence[Image.Image],
             labels: np.ndarray, n_steps: int = DEFAULT_STEPS, seed: int = 0, prior: float = VALIDATOR_PRIOR,
             level_probs: tuple[float, ...] = LEVEL_PROBS, n_resamples: int = 1000, batch_size: int = 64,
             console: Console | None = None, kinds: Sequence[str] | None = None,
             fake_prob: float = VALIDATOR_FAKE_PROB) -> dict:
    """Stream ``n_steps`` challenges drawn from (``images``, ``labels``); ``score_batch`` maps images to floats; a
    ``console`` shows a progress bar.

    With ``kinds`` (real | generated per image) holding both kinds, each step then draws a generated image with
    probability ``fake_prob``, else a real one, of its label, as the validator's ``determine_challenge_type`` does
    (label first, then the cache).

    Returns the summary (mean reward with its block-bootstrap interval, p5 / p50 / p95, accuracy and MCC of the
    rounded answers, per-level mean reward; per-kind mean reward with kinds) and the per-step rows."""
    y_all = np.asarray(labels, dtype=np.int64)
    by_class = {c: np.flatnonzero(y_all == c) for c in (0, 1)}
    missing = [c for c, idx in by_class.items() if len(idx) == 0]
    if missing:
        which = "roadwork, the positive" if missing[0] == 1 else "no roadwork, the negative"
        raise DataError(f"The stream needs images of both classes; class {missing[0]} ({which} class) has no "
                        f"readable image.", "add readable images of that class: one sub-folder per class, named as "
                        "the bundle's class_names (e.g. no_roadwork/ and roadwork/).")
    if n_steps <= 0:
        raise ConfigError(f"n_steps must be positive, got {n_steps}.", "pass --n 1000 (or more).")
    prior = check_prior(prior)
    kind_array = np.asarray(kinds) if kinds is not None and len(set(kinds)) > 1 else None
    pools = _kind_pools(y_all, kind_array) if kind_array is not None else None
    rng = np.random.default_rng(seed)
    steps = []
    for _ in range(n_steps):
        label = int(rng.random() < prior)
        pool = by_class[label]
        if pools is not None:
            pool = pools[("generated" if rng.random() < fake_prob else "real", label)]
        index = int(pool[rng.integers(0, len(pool))])
        steps.append((label, index))
    answers = np.empty(n_steps)
    levels = np.empty(n_steps, dtype=np.int64)
    with progress("simulating the validator stream", n_steps, console) as advance:
        for start in range(0, n_steps, batch_size):
            batch = []
            for k in range(start, min(n_steps, start + batch_size)):
                img, levels[k], _ = challenge(images[steps[k][1]], np.random.default_rng([seed, k]),
                                              level_probs=level_probs)
                batch.append(img)
            answers[start:start + len(batch)] = np.asarray(score_batch(batch), dtype=np.float64)
            advance(len(batch))
    tracker = RewardTracker()
    rewards = np.array([tracker.update(a, label) for a, (label, _) in zip(answers, steps)])
    step_labels = np.array([label for label, _ in steps])
    from streetvision.metrics.classification import metrics_from_decisions  # pure numpy; imported here to keep layers

    overall = metrics_from_decisions(step_labels, np.round(answers) >= 1)
    low, high = block_bootstrap_mean(rewards, MCC_WINDOW, n_resamples, seed)
    summary = {
        "steps": n_steps, "seed": seed, "prior_roadwork": prior, "level_probs": list(level_probs),
        "mean_reward": float(rewards.mean()), "mean_reward_ci": {"low": low, "high": high,
                                                                  "method": f"moving-block bootstrap, block "
                                                                            f"{MCC_WINDOW}, {n_resamples} resamples"},
        "p5": float(np.quantile(rewards, 0.05)), "p50": float(np.quantile(rewards, 0.5)),
        "p95": float(np.quantile(rewards, 0.95)),
        "mean_reward_after_warmup": float(rewards[MCC_WINDOW:].mean()) if n_steps > MCC_WINDOW else None,
        "accuracy": overall["accuracy"], "mcc": overall["mcc"],
        "mean_reward_by_level": {str(lv): float(rewards[levels == lv].mean()) if (levels == lv).any() else None
                                 for lv in range(len(level_probs))},
    }
    if kind_array is not None:
        step_kinds = kind_array[[index for _, index in steps]]
        summary["fake_prob"] = fake_prob
        summary["mean_reward_by_kind"] = {k: float(rewards[step_kinds == k].mean()) if (step_kinds == k).any()
                                          else None for k in ("real", "generated")}
    rows = [{"step": k, "label": label, "image": index, "level": int(levels[k]), "answer": float(answers[k]),
             "reward": float(rewards[k])} for k, (label, index) in enumerate(steps)]
    if kind_array is not None:
        for row in rows:
            row["kind"] = str(kind_array[row["image"]])
    return {"summary": summary, "steps": rows}
