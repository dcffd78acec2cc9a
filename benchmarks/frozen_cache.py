"""Linear probe (model.finetune=frozen): how much faster is an epoch on cached embeddings than an epoch that
recomputes them? (target: >= 10x)

    .venv/bin/python benchmarks/frozen_cache.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import median_seconds, report  # noqa: E402

from streetvision.data.datamodules import ImageDataset  # noqa: E402
from streetvision.data.synthetic import write_dataset  # noqa: E402
from streetvision.data.transforms import EvalTransform  # noqa: E402
from streetvision.models.backbones import build_builtin, preprocess_for  # noqa: E402
from streetvision.models.classifier import make_head  # noqa: E402
from streetvision.models.embedding_cache import cached_embeddings, compute_embeddings  # noqa: E402


def head_epoch(head: torch.nn.Module, loader: DataLoader, opt: torch.optim.Optimizer) -> None:
    for x, y in loader:
        loss = torch.nn.functional.cross_entropy(head(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()


def main() -> None:
    n = 480
    backbone = build_builtin("dinov2-tiny").eval()
    pre = preprocess_for(backbone, "dinov2-tiny")
    with tempfile.TemporaryDirectory() as tmp:
        rows = write_dataset(Path(tmp) / "imgs", n=n)
        images = DataLoader(ImageDataset([p for p, _ in rows], [y for _, y in rows], EvalTransform(pre)),
                            batch_size=64)
        head = make_head("linear", 192, 2, 256, 0.0)
        opt = torch.optim.AdamW(head.parameters(), lr=1e-3)
        first, _ = median_seconds(lambda: cached_embeddings(backbone, images, pre, "bench", Path(tmp) / "cache"),
                                  repeats=1, warmup=0)
        hit_read, _ = median_seconds(lambda: cached_embeddings(backbone, images, pre, "bench", Path(tmp) / "cache"),
                                     repeats=3, warmup=0)
        emb, labels = compute_embeddings(backbone, images)
        cached = DataLoader(TensorDataset(emb, labels), batch_size=32, shuffle=True)
        recompute, _ = median_seconds(lambda: compute_embeddings(backbone, images), repeats=3, warmup=0)
        epoch_cached, _ = median_seconds(lambda: head_epoch(head, cached, opt), repeats=5)
    rows = [{"epoch": "first (compute + write cache)", "seconds": first + epoch_cached},
            {"epoch": "later, recomputing embeddings", "seconds": recompute + epoch_cached},
            {"epoch": "later, cached embeddings", "seconds": epoch_cached},
            {"epoch": "cache read at the start of a new run", "seconds": hit_read}]
    speedup = (recompute + epoch_cached) / epoch_cached
    report("frozen_cache", rows, notes=f"dinov2-tiny, {n} images at 112 px, batch 32 for the head; "
                                       f"speed-up of a cached epoch over a recomputing one: {speedup:.0f}x "
                                       f"(medians of 3-5 runs in one process).")


if __name__ == "__main__":
    main()
