"""Temperature scaling (Guo et al., ICML 2017): the one-parameter fit, by LBFGS in torch; the calibrated
probabilities and the calibration metrics are in :mod:`streetvision.metrics.calibration`."""

from __future__ import annotations

import numpy as np
import torch

T_RANGE = (0.05, 100.0)


def fit_temperature(logits: np.ndarray, labels: np.ndarray, max_iter: int = 200) -> float:
    """Temperature T > 0 minimising the NLL of softmax(logits / T), by LBFGS over log T (float64), clipped to
    T_RANGE (uninformative logits drive T to infinity, which would squash every probability onto 0.5)."""
    z = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.5, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(z / log_t.exp(), y)
        loss.backward()
        return loss

    opt.step(closure)
    return float(np.clip(log_t.detach().exp().item(), *T_RANGE))
