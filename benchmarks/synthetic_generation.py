"""How fast is the embedded synthetic scene generator on one core? (target: >= 200 images/s, source domain)

    .venv/bin/python benchmarks/synthetic_generation.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import median_seconds, report  # noqa: E402

from streetvision.data.synthetic import render_scene, write_dataset  # noqa: E402


def main() -> None:
    torch.set_num_threads(1)
    n = 200
    rows = []
    for domain in ("source", "target"):
        render, _ = median_seconds(lambda d=domain: [render_scene(i, domain=d) for i in range(n)], repeats=3)
        with tempfile.TemporaryDirectory() as tmp:
            write, _ = median_seconds(lambda d=domain: write_dataset(Path(tmp) / d, n=n, domain=d), repeats=1,
                                      warmup=0)
        rows.append({"domain": domain, "images": n, "render_img_per_s": n / render,
                     "render_and_write_png_img_per_s": n / write})
    report("synthetic_generation", rows, notes="one process, 224x224, median of 3 renders; writing includes PNG "
                                             "encoding (compress_level=1) and the manifest.")


if __name__ == "__main__":
    main()
