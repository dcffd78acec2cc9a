"""Phase 1 from scratch on the synthetic default: which parts of the dinov2-tiny recipe matter?
(issue target: test MCC >= 0.8 in under 3 CPU minutes)

Runs the real pipeline (splits + phase1, `model=dinov2_tiny`, full fine-tuning) once per variant and seed on the
same data and split, and reports test MCC at the epoch chosen on val_select, with the phase1 wall time.

    .venv/bin/python benchmarks/phase1_recipe.py            # seeds 0 1 (about 13 minutes on 2 cores)
    .venv/bin/python benchmarks/phase1_recipe.py --seeds 0
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import report  # noqa: E402

from streetvision.config import load_config  # noqa: E402
from streetvision.pipeline.artifacts import ArtifactSchema  # noqa: E402
from streetvision.pipeline.runner import run_pipeline  # noqa: E402

VARIANTS = {
    "preset (max pooling, no clipping)": [],
    "cls pooling": ["model.pooling=cls"],
    "max pooling, gradient clip 1.0": ["training.gradient_clip=1.0"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, overrides in VARIANTS.items():
            mccs = []
            for seed in args.seeds:
                cfg = load_config([f"output_root={tmp}", f"run_id={len(rows)}", f"seed={seed}",
                                   "pipeline.phases=[phase1]", "training.progress_bar=false", *overrides])
                start = time.perf_counter()
                run_pipeline(cfg, Console(quiet=True))
                wall = time.perf_counter() - start
                metrics = json.loads(ArtifactSchema.from_config(cfg).metrics_json("phase1").read_text())
                test = metrics["splits"]["test"]
                mccs.append(test["mcc"])
                rows.append({"variant": name, "seed": seed, "test_mcc": test["mcc"], "test_acc": test["accuracy"],
                             "best_epoch": metrics["best_epoch"], "train_s": metrics["train_seconds"],
                             "splits_plus_phase1_s": wall})
            print(f"{name}: test MCC {statistics.mean(mccs):.3f} over seeds {args.seeds}", flush=True)
    report("phase1_recipe", rows, notes=(
        "streetvision pipeline, splits + phase1, dinov2-tiny full fine-tuning from random weights, 3200 synthetic "
        "source scenes (1920 train / 481 val_select / 479 test), 5 epochs; test MCC at the best val_select epoch. "
        "Run in one process, one variant after another; splits_plus_phase1_s excludes the ~8 s CLI start-up."))


if __name__ == "__main__":
    main()
