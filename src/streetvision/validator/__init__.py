"""The published NATIX validator's semantics, the single source for the whole project.

- :mod:`.distortions`: the pixel distortions and their parameter table (``distort``).
- :mod:`.challenges`: the base transform, challenge levels 0-3 and the JPEG the image travels as (``base``,
  ``challenge``).
- :mod:`.reward`: the per-miner history and the per-step reward (``RewardTracker``).
- :mod:`.prior`: the 50/50 class balance and metrics at a deployment prior.
- :mod:`.stream`: replaying a validator stream against a Predictor (``simulate``).

Names are imported lazily, so ``streetvision.validator.reward`` stays a light (numpy) import. No submodule shares
a name with an export (``challenge`` lives in ``challenges``): the import system sets a loaded submodule as an
attribute of this package, which would shadow the function of the same name.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "base": "challenges", "challenge": "challenges", "draw_level": "challenges", "LEVELS": "challenges",
    "LEVEL_PROBS": "challenges", "SIZE": "challenges", "distort": "distortions", "KINDS": "distortions",
    "PARAMS": "distortions", "RewardTracker": "reward", "reward_from_metrics": "reward",
    "VALIDATOR_PRIOR": "prior", "prior_weights": "prior", "shift_log_odds": "prior", "simulate": "stream",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"streetvision.validator.{_EXPORTS[name]}"), name)
    raise AttributeError(name)
