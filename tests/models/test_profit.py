"""PROFIT (models/profit.py). The property that defines it: the gradient the main optimizer steps with is the
gradient at the displaced point made orthogonal to the reference optimizer's displacement. Checked on a quadratic
whose every quantity is known in closed form, and on a linear loss, where that projection leaves nothing (PROFIT
has nothing to step with: the failure mode the paper names for near-linear loss surfaces)."""

from __future__ import annotations

import json

import pytest
import torch
from rich.console import Console

from streetvision.errors import ConfigError
from streetvision.models.profit import Profit
from streetvision.pipeline.artifacts import ArtifactSchema
from streetvision.pipeline.runner import run_pipeline


def one_step(loss_fn, theta0, lr=0.05, ref_lr=0.1):
    theta = torch.nn.Parameter(torch.tensor(theta0))
    opt = Profit([theta], lr=lr, ref_lr=ref_lr, ref_steps=1, weight_decay=0.0)

    def closure():
        opt.zero_grad()
        loss = loss_fn(theta)
        loss.backward()
        return loss

    opt.step(closure)
    return theta.detach(), theta.grad.detach()


def test_main_step_uses_the_gradient_orthogonal_to_the_reference_displacement():
    h = torch.tensor([1.0, 10.0])  # L = 0.5 * (x^2 + 10 y^2), gradient h * theta

    def loss(t):
        return 0.5 * (h * t * t).sum()

    theta, grad = one_step(loss, [1.0, 1.0])
    # reference SGD step from (1, 1): gradient (1, 10), displaced to (0.9, 0), delta = (-0.1, -1);
    # gradient there (0.9, 0); minus its component along delta: (0.9, 0) - (-0.09 / 1.01) * (-0.1, -1)
    delta = torch.tensor([-0.1, -1.0])
    expected = torch.tensor([0.9, 0.0]) - (-0.09 / 1.01) * delta
    assert torch.allclose(grad, expected, atol=1e-6)
    assert abs(float(grad @ delta)) < 1e-6
    # AdamW's first step is lr * sign(gradient), taken from the restored point (1, 1), not from the displaced one
    assert torch.allclose(theta, torch.tensor([1.0 - 0.05, 1.0 + 0.05]), atol=1e-6)


def test_on_a_linear_loss_nothing_is_left_to_step_with():
    a = torch.tensor([3.0, -2.0])
    _, grad = one_step(lambda t: (a * t).sum(), [0.5, 0.5])
    # the gradient is the same everywhere and the reference step moved exactly against it: projected, it vanishes
    # (to float rounding, which AdamW's scale invariance would still turn into a full-size step)
    assert torch.allclose(grad, torch.zeros(2), atol=1e-6)


def test_step_without_a_closure_is_refused():
    theta = torch.nn.Parameter(torch.ones(2))
    with pytest.raises(RuntimeError, match="closure"):
        Profit([theta]).step()


def test_phase1_trains_with_profit_end_to_end(make_cfg, monkeypatch):
    steps = []
    original = Profit.step

    def counted(self, closure=None):
        steps.append(1)
        return original(self, closure)

    monkeypatch.setattr(Profit, "step", counted)
    cfg = make_cfg("model=dinov2_micro", "data.synthetic.n=48", "training.batch_size=8", "training.epochs=2",
                   "training.progress_bar=false", "training.optimizer=profit",
                   "pipeline.phases=[phase1,phase2,phase5,phase6]")
    run_pipeline(cfg, Console(quiet=True))
    art = ArtifactSchema.from_config(cfg)
    metrics = json.loads(art.metrics_json("phase1").read_text())
    assert len(steps) == metrics["optimizer_steps"] > 0  # every optimizer step was a PROFIT step
    assert (art.bundle_dir / "model" / "head.safetensors").is_file()


def test_profit_with_gradient_accumulation_is_refused(make_cfg):
    with pytest.raises(ConfigError, match="training.optimizer=profit.*grad_accum"):
        make_cfg("training.optimizer=profit", "training.grad_accum=2")
