"""The validator's class balance, and metrics at a deployment prior.

The validator draws its label 50/50 (``CHALLENGE_TYPE`` {0: "None", 1: "Roadwork"}, ``np.random.choice``), while
training folders are rarely balanced. Accuracy, MCC and the MCC-best threshold all depend on the class prior, so
we report them at the deployment prior ``deploy.prior_roadwork`` (0.5 by default) as well as at the data's own.

Method: importance weights per class (each positive weighs ``prior / share_of_positives``, each negative
``(1 - prior) / share_of_negatives``). Under label shift (the images of each class look the same, only their
proportion changes) the weighted confusion matrix is an unbiased estimate of the one at the deployment prior, for
any decision rule; it needs no calibrated probability and leaves the ranking (AUROC) untouched. A log-odds shift
of the probabilities would move the threshold by the same amount only if the model were calibrated at the data's
prior, which small validation splits cannot promise.
"""

from __future__ import annotations

import numpy as np

from streetvision.errors import ConfigError

VALIDATOR_PRIOR = 0.5  # the validator draws roadwork / no roadwork 50/50
VALIDATOR_FAKE_PROB = 0.5  # then a generated ("synthetic") image with this probability, else a real one
CHALLENGE_TYPE = {0: "None", 1: "Roadwork"}  # the validator's class names (the miner answers "Roadwork")


def check_prior(prior: float) -> float:
    """A prior strictly between 0 and 1, else ConfigError."""
    prior = float(prior)
    if not 0.0 < prior < 1.0:
        raise ConfigError(f"deploy.prior_roadwork must be strictly between 0 and 1, got {prior}.",
                          "use 0.5, the validator's 50/50 draw.")
    return prior


def prior_weights(labels: np.ndarray, prior: float | None) -> np.ndarray | None:
    """Per-sample weights that re-balance ``labels`` to P(roadwork) = ``prior`` (None: no re-weighting, or a
    single class present, where no weighting can help)."""
    if prior is None:
        return None
    prior = check_prior(prior)
    y = np.asarray(labels).astype(bool)
    share = y.mean() if len(y) else 0.0
    if share in (0.0, 1.0):
        return None
    return np.where(y, prior / share, (1.0 - prior) / (1.0 - share))


def shift_log_odds(probs: np.ndarray, from_prior: float, to_prior: float) -> np.ndarray:
    """P(roadwork) calibrated at ``from_prior`` -> at ``to_prior`` (Bayes' rule on the odds)."""
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1 - 1e-12)
    a, b = check_prior(from_prior), check_prior(to_prior)
    logit = np.log(p) - np.log1p(-p) + np.log(b / (1 - b)) - np.log(a / (1 - a))
    return 1.0 / (1.0 + np.exp(-logit))
