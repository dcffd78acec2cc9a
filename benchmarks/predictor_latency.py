"""Predictor latency on CPU: single-image latency and batch-32 throughput, torch vs ONNX Runtime, tiny backbone
(medians over repeated runs in one process). The bundle is trained in a child process, so the timed process only
loads and runs predictors, as a miner's does. On the shared 2-core machine single-image medians vary by up to 1.7x
between runs: compare backends within one run, and run it more than once.

    .venv/bin/python benchmarks/predictor_latency.py
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import median_seconds, report  # noqa: E402

from streetvision import Predictor  # noqa: E402
from streetvision.config import load_config  # noqa: E402
from streetvision.data.synthetic import render_scene  # noqa: E402
from streetvision.pipeline.artifacts import ArtifactSchema  # noqa: E402


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        overrides = [f"output_root={tmp}", "run_id=lat", "data.synthetic.n=120", "training.epochs=1",
                     "training.progress_bar=false", "pipeline.phases=[phase1,phase2,phase5,phase6]"]
        subprocess.run([sys.executable, "-m", "streetvision.cli", "run", *overrides],
                       check=True, stdout=subprocess.DEVNULL)
        cfg = load_config(overrides)
        bundle = ArtifactSchema.from_config(cfg).bundle_dir
        images = [render_scene(i, seed=9).image for i in range(32)]
        rows = []
        for backend in ("torch", "onnx"):
            predictor = Predictor.from_bundle(bundle, backend=backend)
            single, _ = median_seconds(lambda p=predictor: p(images[0]), repeats=50, warmup=5)
            batch, _ = median_seconds(lambda p=predictor: p.predict_batch(images), repeats=10, warmup=2)
            tensors = __import__("torch").stack([predictor.tensor(im) for im in images])
            model_only, _ = median_seconds(lambda p=predictor: p.logits(tensors), repeats=10, warmup=2)
            rows.append({"backend": backend, "single_image_latency_ms": 1000 * single,
                         "batch32_img_per_s": 32 / batch, "batch32_model_only_img_per_s": 32 / model_only})
    t, o = rows
    report("predictor_latency", rows, notes=f"dinov2-tiny (112 px) bundle, 224x224 PIL inputs (decode + resize "
           f"included except in model_only); ONNX/torch single-image speed-up {t['single_image_latency_ms'] / o['single_image_latency_ms']:.2f}x, "
           f"batch-32 {o['batch32_img_per_s'] / t['batch32_img_per_s']:.2f}x.")


if __name__ == "__main__":
    main()
