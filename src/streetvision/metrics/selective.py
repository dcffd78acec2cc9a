"""Selective prediction with a distribution-free guarantee (Learn-then-Test, Angelopoulos et al. 2021).

An image is accepted when the calibrated probability of its decided class is at least lambda; the others are
deferred to a slower stage. For lambda on a fixed grid from 1 down to 0, the null "selective risk > target" is
tested with the exact binomial (Clopper-Pearson) p-value P(Binom(n_accepted, target) <= errors); fixed-sequence
testing rejects nulls in that order at level delta and stops at the first failure, so the chosen lambda (the last
rejected one, the largest coverage) has selective risk <= target with probability >= 1 - delta. The sequence starts
at the first lambda that accepts enough images for a zero-error set to reject at all (n_min).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

GRID = np.round(np.linspace(1.0, 0.0, 1001), 6)


@dataclass(frozen=True)
class SelectivePolicy:
    """The chosen confidence threshold (None: accept nothing) and its certificate."""

    threshold: float | None
    risk_upper_bound: float | None
    coverage: float
    risk: float
    n_accepted: int
    n: int
    target_risk: float
    delta: float
    n_tested: int


def clopper_pearson_upper(errors: int, n: int, delta: float) -> float:
    """One-sided (1 - delta) upper confidence bound on a binomial rate."""
    from scipy.stats import beta

    return 1.0 if errors >= n else float(beta.ppf(1 - delta, errors + 1, n - errors))


def min_accepted(target_risk: float, delta: float) -> int:
    """Fewest accepted images with which zero errors can certify ``target_risk`` at level ``delta``."""
    return int(math.ceil(math.log(delta) / math.log(1 - target_risk)))


def learn_then_test(confidence: np.ndarray, errors: np.ndarray, target_risk: float, delta: float) -> SelectivePolicy:
    """Fixed-sequence Learn-then-Test over GRID (see module docstring); vectorised over the grid."""
    from scipy.stats import binom

    conf = np.asarray(confidence, dtype=np.float64)
    err = np.asarray(errors).astype(bool)
    n, n_min = len(conf), min_accepted(target_risk, delta)
    order = np.argsort(-conf, kind="mergesort")
    sorted_conf, cum_err = conf[order], np.concatenate([[0], np.cumsum(err[order])])
    accepted = np.searchsorted(-sorted_conf, -GRID, side="right")  # images with conf >= lambda, per lambda
    errs = cum_err[accepted]
    testable = accepted >= n_min  # the sequence starts where a certificate is possible
    pvalues = binom.cdf(errs, np.maximum(accepted, 1), target_risk)
    rejected = pvalues[testable] <= delta
    n_rejected = int(np.argmin(rejected)) if not rejected.all() else len(rejected)  # stop at the first failure
    if n_rejected == 0:
        return SelectivePolicy(None, None, 0.0, 0.0, 0, n, target_risk, delta, min(1, len(rejected)))
    i = np.flatnonzero(testable)[n_rejected - 1]
    k, e = int(accepted[i]), int(errs[i])
    return SelectivePolicy(float(GRID[i]), clopper_pearson_upper(e, k, delta), k / n, e / k, k, n, target_risk,
                           delta, n_rejected + (0 if n_rejected == len(rejected) else 1))


def apply_policy(confidence: np.ndarray, errors: np.ndarray, threshold: float | None) -> dict[str, float]:
    """Coverage and selective risk of a confidence threshold on (other) data."""
    conf = np.asarray(confidence, dtype=np.float64)
    err = np.asarray(errors).astype(bool)
    accepted = conf >= threshold if threshold is not None else np.zeros(len(conf), dtype=bool)
    k = int(accepted.sum())
    return {"coverage": k / len(conf) if len(conf) else 0.0, "risk": float(err[accepted].mean()) if k else 0.0,
            "n_accepted": k, "n": len(conf)}


def risk_coverage_curve(confidence: np.ndarray, errors: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(coverage, selective risk) when accepting the k most confident, k = 1..n, and the area under it (AURC)."""
    order = np.argsort(-np.asarray(confidence, dtype=np.float64), kind="mergesort")
    err = np.asarray(errors, dtype=np.float64)[order]
    k = np.arange(1, len(err) + 1)
    risk = np.cumsum(err) / k
    return k / len(err), risk, float(risk.mean()) if len(err) else 0.0
