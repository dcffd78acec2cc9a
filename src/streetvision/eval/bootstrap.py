"""Seeded bootstrap confidence intervals over images: BCa (bias-corrected and accelerated, Efron 1987) through
``scipy.stats.bootstrap``, with the percentile interval of the same resamples only where BCa is undefined.

Every interval resamples whole images (rows): the quantities computed from one image's columns (label,
probability, decision, ...) or from two models' answers on the same image are resampled together (``paired``).
BCa is undefined when the bootstrap distribution is degenerate (every resample gives the same value: a constant
predictor's MCC, say), when the jackknife gives no acceleration (all leave-one-out values equal) or when the
statistic is undefined on some resamples (AUROC of a resample holding one class); each interval records its
``method`` and, for a percentile interval, the ``reason``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np
from scipy import stats

BCA = "BCa"
PERCENTILE = "percentile"
MAX_BATCH_ELEMENTS = 2_000_000  # resamples x images per vectorised call (memory bound)


def _percentile(values: np.ndarray, level: float) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if not len(finite):
        return float("nan"), float("nan")
    alpha = (1 - level) / 2
    low, high = np.quantile(finite, [alpha, 1 - alpha])
    return float(low), float(high)


def _why_not_bca(values: np.ndarray) -> str:
    finite = values[np.isfinite(values)]
    if len(finite) < len(values):
        return f"undefined on {len(values) - len(finite)} resamples"
    if len(finite) and np.all(finite == finite[0]):
        return "every resample gives the same value"
    return "no jackknife acceleration (all leave-one-out values equal)"


def bootstrap_intervals(data: Sequence[np.ndarray], statistic: Callable[..., np.ndarray], names: Sequence[str],
                        n_resamples: int = 1000, seed: int = 0, level: float = 0.95,
                        share_above_zero: bool = False) -> dict[str, dict]:
    """Paired BCa intervals for every output of a vectorised ``statistic``.

    ``data``: per-image columns of equal length (resampled together). ``statistic(*columns)`` must reduce the last
    axis and return an array of shape ``[len(names), *batch]`` (one row per named quantity). Returns, per name,
    ``{estimate, low, high, level, n_resamples, method[, reason][, share_above_zero]}``; ``share_above_zero``
    (for differences) is the share of resamples in which the quantity is positive.
    """
    columns = [np.asarray(c) for c in data]
    n = len(columns[0])
    estimate = np.asarray(statistic(*columns), dtype=np.float64).reshape(len(names))
    out: dict[str, dict] = {}
    if n < 2 or n_resamples < 1:
        for name, value in zip(names, estimate):
            out[name] = {"estimate": float(value), "low": float(value), "high": float(value), "level": level,
                         "n_resamples": 0, "method": PERCENTILE, "reason": f"{n} image(s): nothing to resample"}
            if share_above_zero:
                out[name]["share_above_zero"] = float(value > 0)
        return out

    def stat(*cols: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.asarray(statistic(*cols), dtype=np.float64)

    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        res = stats.bootstrap(columns, stat, n_resamples=n_resamples, paired=True, vectorized=True,
                              confidence_level=level, method="BCa", rng=np.random.default_rng(seed),
                              batch=max(16, MAX_BATCH_ELEMENTS // n))
    dist = np.asarray(res.bootstrap_distribution, dtype=np.float64).reshape(len(names), -1)
    lows = np.atleast_1d(res.confidence_interval.low)
    highs = np.atleast_1d(res.confidence_interval.high)
    for k, name in enumerate(names):
        row = {"estimate": float(estimate[k]), "level": level, "n_resamples": int(n_resamples)}
        if np.isfinite(lows[k]) and np.isfinite(highs[k]) and np.all(np.isfinite(dist[k])):
            row.update(low=float(lows[k]), high=float(highs[k]), method=BCA)
        else:
            low, high = _percentile(dist[k], level)
            row.update(low=low, high=high, method=PERCENTILE, reason=_why_not_bca(dist[k]))
        if share_above_zero:
            row["share_above_zero"] = float(np.mean(dist[k] > 0))
        out[name] = row
    return out


def _rows_statistic(statistics: Callable[[np.ndarray], dict[str, float | None]],
                    names: list[str]) -> Callable[[np.ndarray], np.ndarray]:
    """Vectorise a statistic of row indices by looping over the batch (for statistics that are not vectorised)."""
    def stat(rows: np.ndarray) -> np.ndarray:
        flat = np.asarray(rows).reshape(-1, np.asarray(rows).shape[-1])
        values = np.full((len(names), len(flat)), np.nan)
        for j, r in enumerate(flat):
            d = statistics(r)
            for k, name in enumerate(names):
                v = d.get(name)
                values[k, j] = np.nan if v is None else v
        return values.reshape(len(names), *np.asarray(rows).shape[:-1])
    return stat


def bootstrap_many(statistics: Callable[[np.ndarray], dict[str, float | None]], n: int, n_resamples: int = 1000,
                   seed: int = 0, level: float = 0.95) -> dict[str, dict[str, float]]:
    """Intervals for every numeric key of ``statistics(rows)`` (a function of row indices, called once per
    resample and per jackknife sample; prefer :func:`bootstrap_intervals` with a vectorised statistic)."""
    full = statistics(np.arange(n))
    names = [k for k, v in full.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return bootstrap_intervals([np.arange(n)], _rows_statistic(statistics, names), names, n_resamples, seed, level)


def bootstrap_ci(statistic: Callable[[np.ndarray], float], n: int, n_resamples: int = 1000, seed: int = 0,
                 level: float = 0.95) -> dict[str, float]:
    """Interval of one scalar statistic of row indices."""
    return bootstrap_many(lambda rows: {"value": statistic(rows)}, n, n_resamples, seed, level)["value"]
