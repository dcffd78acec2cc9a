"""Do dashcam-style camera augmentations (``training.camera``) help across a camera shift?  (CPU, ~30 min)

Train on synthetic *source* scenes (daylight street photos), test on the *target* domain of the synthetic generator
(night / fog scenes through a wide-angle camera: ``data/synthetic.py``), which the training never sees. Two arms, the
same seeds, splits and validator augmentation (``training.augment=validator``, what the validator pays on):

- ``validator``: the default CPU preset (``model=dinov2_tiny``) with validator augmentation;
- ``validator+camera``: the same plus every ``training.camera`` option at ``training.camera_prob``.

Each run goes through the pipeline (splits -> phase1 -> phase2 -> phase6); its bundle is scored through the
Predictor, as the evaluation phase does, on (a) its own held-out *source* test split and (b) a fixed set of target
scenes, clean and under the validator's level mix: AUROC, and MCC and accuracy at the 50/50 prior. Per seed the
difference camera - validator is paired (same split, same target images, same challenge draws); reported: the mean
difference over seeds and a percentile bootstrap interval of it, plus each arm's mean.

    .venv/bin/python benchmarks/camera_shift.py [--seeds 0 1 2] [--n 1600] [--target-n 400] [--quick]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import report  # noqa: E402
from real_recipe import bootstrap_mean_ci, evaluate_bundle  # noqa: E402

from streetvision.config import CHOICES, load_config  # noqa: E402
from streetvision.data.synthetic import write_dataset  # noqa: E402
from streetvision.io import atomic_write_json, read_json  # noqa: E402

ARMS = {"validator": ["training.augment=validator"],
        "validator+camera": ["training.augment=validator", f"training.camera=[{','.join(CHOICES['training.camera'])}]"]}
PIPELINE = ["pipeline.phases=[phase1,phase2,phase6]", "phase6.onnx=false", "training.progress_bar=false",
            "deploy.prior_roadwork=0.5"]
QUICK = ["model=dinov2_micro", "training.epochs=1"]


def load(rows: list[tuple[Path, int]]) -> tuple[list[Image.Image], np.ndarray, list[Path]]:
    images = []
    for path, _ in rows:
        with Image.open(path) as img:
            images.append(img.convert("RGB"))
    return images, np.asarray([label for _, label in rows]), [path for path, _ in rows]


def run_arm(workdir: Path, arm: str, seed: int, n: int, extra: list[str], target) -> dict:
    from rich.console import Console

    from streetvision.data.splits import load_splits
    from streetvision.pipeline.artifacts import ArtifactSchema
    from streetvision.pipeline.runner import run_pipeline

    cfg = load_config([f"output_root={workdir}", f"run_id={arm.replace('+', '_')}_{seed}", f"seed={seed}",
                       f"data.synthetic.n={n}", f"data.split_seed={seed}", *PIPELINE, *ARMS[arm], *extra])
    start = time.perf_counter()
    run_pipeline(cfg, Console(quiet=True))
    train_s = time.perf_counter() - start
    art = ArtifactSchema.from_config(cfg)
    splits = load_splits(art.splits_json)
    source = load(list(zip(splits.paths("test"), splits.labels("test"))))
    row = {"arm": arm, "seed": seed, "train_wall_s": round(train_s, 1)}
    row.update({f"source_{k}": v for k, v in evaluate_bundle(art.bundle_dir, *source, seed).items()})
    row.update({f"target_{k}": v for k, v in evaluate_bundle(art.bundle_dir, *target, seed).items()})
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--n", type=int, default=1600, help="labelled source scenes per run")
    parser.add_argument("--target-n", type=int, default=400, help="target scenes (the shifted test set)")
    parser.add_argument("--camera-prob", type=float, default=0.3)
    parser.add_argument("--quick", action="store_true", help="micro model, 1 epoch, small sets (a smoke test)")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--name", default=None)
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.n, args.target_n = args.seeds[:1], 96, 32
    extra = [f"training.camera_prob={args.camera_prob}", *(QUICK if args.quick else [])]
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="camera_shift_"))
    target = load(write_dataset(workdir / "target", args.target_n, domain="target", seed=12345))
    rows = [run_arm(workdir, arm, seed, args.n, extra, target) for seed in args.seeds for arm in ARMS]
    summary = []
    for key in ("target_mix_mcc", "target_clean_mcc", "target_mix_auroc", "source_clean_mcc", "source_mix_mcc"):
        base = {r["seed"]: r[key] for r in rows if r["arm"] == "validator"}
        diffs = [r[key] - base[r["seed"]] for r in rows if r["arm"] == "validator+camera"]
        low, high = bootstrap_mean_ci(diffs, 10_000, 0) if len(diffs) > 1 else (float("nan"), float("nan"))
        summary.append({"metric": key, "validator": float(np.mean(list(base.values()))),
                        "validator+camera": float(np.mean([r[key] for r in rows if r["arm"] != "validator"])),
                        "mean_diff": float(np.mean(diffs)), "diff_ci95_low": low, "diff_ci95_high": high,
                        "seeds": len(diffs)})
    notes = (f"dinov2_tiny preset{' (quick: micro)' if args.quick else ''}, {args.n} source scenes per run "
             f"(train/val_select/val_calib/test at the pipeline's split), target: {args.target_n} night/fog "
             f"wide-angle scenes never trained on; camera options {CHOICES['training.camera']} at p="
             f"{args.camera_prob}; paired differences (camera - validator) over seeds {args.seeds}, percentile "
             f"bootstrap of the mean difference. Metrics at the 50/50 prior; mix = the validator's level mix.")
    path = report(args.name or ("camera_shift_quick" if args.quick else "camera_shift"), summary, notes)
    atomic_write_json(path, {**read_json(path), "runs": rows})  # every run's metrics beside the summary


if __name__ == "__main__":
    main()
