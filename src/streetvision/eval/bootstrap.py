"""Seeded percentile-bootstrap confidence intervals over images (resampling with replacement)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Metric = Callable[[np.ndarray], float]  # receives resampled row indices, returns the statistic


def bootstrap_ci(statistic: Metric, n: int, n_resamples: int = 1000, seed: int = 0,
                 level: float = 0.95) -> dict[str, float]:
    """Point estimate (all rows) and the ``level`` percentile interval of ``statistic`` over resampled rows."""
    rng = np.random.default_rng(seed)
    all_rows = np.arange(n)
    samples = np.array([statistic(rng.integers(0, n, n)) for _ in range(n_resamples)], dtype=np.float64)
    samples = samples[np.isfinite(samples)]
    alpha = (1 - level) / 2
    lo, hi = (np.quantile(samples, [alpha, 1 - alpha]) if len(samples) else (np.nan, np.nan))
    return {"estimate": float(statistic(all_rows)), "low": float(lo), "high": float(hi), "level": level,
            "n_resamples": n_resamples}
