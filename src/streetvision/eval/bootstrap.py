"""Seeded percentile-bootstrap confidence intervals over images (resampling rows with replacement)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def _interval(estimate: float, samples: list[float], level: float, n_resamples: int) -> dict[str, float]:
    values = np.array([s for s in samples if s is not None and np.isfinite(s)], dtype=np.float64)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(values, [alpha, 1 - alpha]) if len(values) else (np.nan, np.nan)
    return {"estimate": float(estimate), "low": float(lo), "high": float(hi), "level": level,
            "n_resamples": n_resamples}


def bootstrap_many(statistics: Callable[[np.ndarray], dict[str, float | None]], n: int, n_resamples: int = 1000,
                   seed: int = 0, level: float = 0.95) -> dict[str, dict[str, float]]:
    """Intervals for every key of ``statistics(rows)`` (computed once per resample) with its full-data estimate."""
    rng = np.random.default_rng(seed)
    full = statistics(np.arange(n))
    draws = [statistics(rng.integers(0, n, n)) for _ in range(n_resamples)]
    return {key: _interval(value, [d.get(key) for d in draws], level, n_resamples)
            for key, value in full.items() if isinstance(value, (int, float)) and value is not None}


def bootstrap_ci(statistic: Callable[[np.ndarray], float], n: int, n_resamples: int = 1000, seed: int = 0,
                 level: float = 0.95) -> dict[str, float]:
    """Interval of one scalar statistic."""
    return bootstrap_many(lambda rows: {"value": statistic(rows)}, n, n_resamples, seed, level)["value"]
