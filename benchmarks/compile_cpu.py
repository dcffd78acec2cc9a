"""hardware.compile=true on the CPU: how much faster is a training step of the tiny preset's classifier with its
backbone compiled (inductor) than eager, and what does compilation cost up front?

    .venv/bin/python benchmarks/compile_cpu.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import report  # noqa: E402
from _train_step import build_classifier, compile_backbone, make_step, time_steps  # noqa: E402

BACKBONE, BATCH, WARMUP, STEPS, SEED = "dinov2-tiny", 32, 2, 15, 0


def measure(compiled: bool) -> dict:
    """One row: first step (compilation included), median step and throughput."""
    torch.manual_seed(SEED)
    model, size = build_classifier(BACKBONE, "cpu", SEED)
    if compiled:
        compile_backbone(model, "inductor")
    timing = time_steps(make_step(model, BATCH, size, "cpu", None, SEED), "cpu", WARMUP, STEPS)
    return {"backbone": "compiled (inductor)" if compiled else "eager", "first_step_s": timing["first_step_s"],
            "median_step_ms": 1e3 * timing["median_step_s"], "img_per_s": BATCH / timing["median_step_s"],
            "timed_steps": timing["timed_steps"]}


def main() -> None:
    rows = [measure(False), measure(True)]
    speedup = rows[0]["median_step_ms"] / rows[1]["median_step_ms"]
    for row in rows:
        row["speedup"] = rows[0]["median_step_ms"] / row["median_step_ms"]
    report("compile_cpu", rows, notes=(
        f"{BACKBONE} classifier (full fine-tuning, AdamW, fp32) at {build_classifier(BACKBONE, 'cpu')[1]} px, batch "
        f"{BATCH}, {torch.get_num_threads()} torch threads; median of {STEPS} steps after {WARMUP} warm-up steps in "
        f"one process, on a CPU shared with other jobs (noisy). Compiled / eager speed-up: {speedup:.2f}x; "
        f"compilation costs the first step ({rows[1]['first_step_s']:.0f} s)."))


if __name__ == "__main__":
    main()
