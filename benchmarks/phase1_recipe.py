"""Phase 1 from scratch on the synthetic default: which parts of the dinov2-tiny recipe matter?
(issue target: test MCC >= 0.8 in under 3 CPU minutes)

Runs the real pipeline (splits + phase1, `model=dinov2_tiny`, full fine-tuning) once per variant and seed on the
same data and split, and reports test MCC at the epoch chosen on val_select (clean images) and under the
validator's level mix (each test image through :func:`streetvision.validator.challenges` at a drawn level, JPEG wire
included, decision at 0.5), with the phase1 wall time.

    .venv/bin/python benchmarks/phase1_recipe.py            # every variant, seeds 0 1 (about 25 minutes on 2 cores)
    .venv/bin/python benchmarks/phase1_recipe.py --seeds 0 --variants "validator augmentation"
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
    "validator augmentation": ["training.augment=validator"],
    "cls_mean pooling (exportable)": ["model.pooling=cls_mean"],
}


def validator_mix_mcc(art: ArtifactSchema, seed: int) -> float:
    """MCC at 0.5 of phase1's model on the test split under the validator's level mix."""
    import numpy as np
    import torch

    from streetvision.data.splits import load_splits
    from streetvision.data.preprocess import Preprocess
    from streetvision.eval.evaluate import load_labelled_images
    from streetvision.metrics.classification import metrics_from_decisions, softmax_probs
    from streetvision.models.classifier import load_classifier
    from streetvision.validator.challenges import challenge

    model = load_classifier(art.phase1_model_dir).eval()
    pre = Preprocess.from_dict(json.loads((art.phase1_model_dir / "model.json").read_text())["preprocess"])
    splits = load_splits(art.splits_json)
    images, labels, _ = load_labelled_images(list(zip(splits.paths("test"), splits.labels("test"))))
    batch = torch.stack([pre.to_tensor(challenge(im, np.random.default_rng([seed, i]))[0])
                         for i, im in enumerate(images)])
    with torch.inference_mode():
        logits = torch.cat([model(batch[i:i + 128]) for i in range(0, len(batch), 128)]).numpy()
    return float(metrics_from_decisions(labels, softmax_probs(logits) >= 0.5)["mcc"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--name", default="phase1_recipe", help="results/<name>.json")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.variants:
            overrides = VARIANTS[name]
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
                             "test_mcc_validator_mix": validator_mix_mcc(ArtifactSchema.from_config(cfg), seed),
                             "best_epoch": metrics["best_epoch"], "train_s": metrics["train_seconds"],
                             "splits_plus_phase1_s": wall})
            print(f"{name}: test MCC {statistics.mean(mccs):.3f} over seeds {args.seeds}", flush=True)
    report(args.name, rows, notes=(
        "streetvision pipeline, splits + phase1, dinov2-tiny full fine-tuning from random weights, 3200 synthetic "
        "source scenes (1920 train / 481 val_select / 479 test), 5 epochs; test MCC at the best val_select epoch, clean "
        "and under the validator's level mix (streetvision.validator.challenges, decision at 0.5). "
        "Run in one process, one variant after another; splits_plus_phase1_s excludes the ~8 s CLI start-up."))


if __name__ == "__main__":
    main()
