"""PROFIT (Chakravarthy et al., "PROFIT: A Specialized Optimizer for Deep Fine Tuning", arXiv 2412.01930, NeurIPS
2025): fine-tuning as a two-task problem over time, "stay near the converged model" and "fit the new data".

One PROFIT step on a batch, as built here:

1. ``theta_ref <- theta``; ``ref_steps`` steps of the reference optimizer (plain SGD at ``ref_lr``) on the batch;
2. ``delta <- theta - theta_ref``, the displacement the new data asks for; the gradient ``g`` at the displaced point;
3. ``theta <- theta_ref`` (restored), and ``g`` projected orthogonally to ``delta``, per parameter tensor:
   ``g <- g - (<g, delta> / <delta, delta>) delta``;
4. the main optimizer (AdamW, with its schedule and weight decay) steps with the projected gradient.

So the update the main optimizer takes is orthogonal to the direction the reference steps moved (the property the
unit test checks on a quadratic where the answer is known in closed form). A tensor the reference steps did not move
(``delta = 0``) keeps its gradient. Each step costs ``ref_steps + 1`` forward/backward passes of the batch (the
closure Lightning passes re-runs it); gradient accumulation would mix batches and is refused.
"""

from __future__ import annotations

from typing import Callable, Iterable

import torch


class Profit(torch.optim.AdamW):
    """AdamW whose gradient is first orthogonalised against a reference displacement (module docstring). Needs the
    closure that recomputes the loss and gradients (Lightning's automatic optimisation passes one)."""

    def __init__(self, params: Iterable, ref_lr: float = 1e-2, ref_steps: int = 1, **adamw: float) -> None:
        if ref_lr <= 0 or ref_steps < 1:
            raise ValueError(f"PROFIT needs ref_lr > 0 and ref_steps >= 1 (got {ref_lr}, {ref_steps})")
        super().__init__(params, **adamw)
        self.ref_lr, self.ref_steps = float(ref_lr), int(ref_steps)

    def _params(self) -> list[torch.Tensor]:
        return [p for group in self.param_groups for p in group["params"] if p.requires_grad]

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:  # type: ignore[override]
        if closure is None:
            raise RuntimeError("PROFIT recomputes the loss at displaced weights: call step(closure).")
        params = self._params()
        anchor = [p.detach().clone() for p in params]
        with torch.enable_grad():
            loss = closure()
        for _ in range(self.ref_steps):  # the reference optimizer: plain SGD
            for p in params:
                if p.grad is not None:
                    p.add_(p.grad, alpha=-self.ref_lr)
            with torch.enable_grad():
                closure()  # the gradient at the displaced point (after the last reference step: the one used)
        for p, a in zip(params, anchor):
            delta = p - a
            p.copy_(a)  # restored
            if p.grad is None:
                continue
            norm2 = float(delta.pow(2).sum())
            if norm2 > 0:
                p.grad.sub_(delta, alpha=float((p.grad * delta).sum()) / norm2)
        super().step()
        return loss
