"""One training step of the project's classifier (backbone + linear head, every backbone parameter training, AdamW
as phase1 uses it) on synthetic tensors: eager or with the backbone compiled in place as phase1 compiles it, on the
CPU or a CUDA GPU, plus the model FLOPs of that step (forward + backward, counted by FlopCounterMode)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from streetvision.models.backbones import build_builtin, preprocess_for
from streetvision.models.classifier import ClassifierSpec, RoadworkClassifier, apply_finetune_mode
from streetvision.models.devices import compile_in_place

CLASS_NAMES = ["no_roadwork", "roadwork"]


def build_classifier(backbone: str, device: str, seed: int = 0) -> tuple[RoadworkClassifier, int]:
    """(full fine-tuning classifier on ``device`` in train mode, its input size) for a built-in backbone."""
    net = build_builtin(backbone, seed)
    size = preprocess_for(net, backbone).size
    model = apply_finetune_mode(RoadworkClassifier(net, ClassifierSpec(class_names=list(CLASS_NAMES))), "full")
    return model.to(device).train(), size


def sync(device: str) -> None:
    """Wait for queued GPU work (no-op on the CPU)."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def make_step(model: torch.nn.Module, batch_size: int, size: int, device: str,
              autocast_dtype: torch.dtype | None, seed: int = 0) -> Callable[[], float]:
    """A closure running forward, loss, backward and an AdamW step on one fixed random batch; returns nothing
    that forces a device sync (the loss stays on the device)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch_size, 3, size, size, generator=gen).to(device)
    y = torch.randint(0, 2, (batch_size,), generator=gen).to(device)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, weight_decay=0.05)
    device_type = "cuda" if device.startswith("cuda") else "cpu"

    def step() -> torch.Tensor:
        with torch.autocast(device_type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
            loss = torch.nn.functional.cross_entropy(model(x).float(), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.detach()

    return step


def time_steps(step: Callable[[], object], device: str, warmup: int, steps: int,
               deadline: float | None = None) -> dict[str, float | int | list[float]]:
    """First step (includes compilation), then ``warmup`` untimed steps, then up to ``steps`` timed ones (fewer
    when ``time.monotonic()`` passes ``deadline``); each timed step ends with a device sync."""
    sync(device)
    start = time.perf_counter()
    step()
    sync(device)
    first_s = time.perf_counter() - start
    for _ in range(warmup):
        step()
    sync(device)
    samples: list[float] = []
    for _ in range(steps):
        if deadline is not None and samples and time.monotonic() > deadline:
            break
        start = time.perf_counter()
        step()
        sync(device)
        samples.append(time.perf_counter() - start)
    return {"first_step_s": first_s, "median_step_s": statistics.median(samples), "timed_steps": len(samples),
            "step_s_samples": samples}


def step_flops(model: torch.nn.Module, size: int, device: str, autocast_dtype: torch.dtype | None,
               batch_size: int, count_batch: int = 4) -> float:
    """Model FLOPs of one training step at ``batch_size`` (forward + backward, matmuls and attention as
    FlopCounterMode counts them), counted eagerly at ``count_batch`` images and scaled linearly."""
    x = torch.randn(count_batch, 3, size, size, device=device)
    y = torch.zeros(count_batch, dtype=torch.long, device=device)
    device_type = "cuda" if device.startswith("cuda") else "cpu"
    counter = FlopCounterMode(display=False)
    with counter:
        with torch.autocast(device_type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
            loss = torch.nn.functional.cross_entropy(model(x).float(), y)
        loss.backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() * batch_size / count_batch


def compile_backbone(model: RoadworkClassifier, backend: str = "inductor") -> None:
    """Compile the backbone in place, as phase1 does with hardware.compile=true."""
    compile_in_place(model.backbone, backend)
