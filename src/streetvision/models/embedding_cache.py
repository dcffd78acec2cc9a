"""Cached backbone embeddings for the frozen (linear-probe) mode.

Embeddings of a split are computed once and stored as safetensors under ``<output_root>/.cache/embeddings/``,
keyed by the backbone's weight checksum, the preprocessing, the pooling and the split's file digest; any change
to one of them gives a new key, so a stale cache is never read.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch.utils.data import DataLoader

from streetvision.data.preprocess import Preprocess
from streetvision.io import atomic_write_safetensors
from streetvision.models.backbones import pooled_embedding, state_checksum


def cache_key(backbone_checksum: str, preprocess: Preprocess, split_digest: str, pooling: str = "cls") -> str:
    """Key of one split's embeddings."""
    blob = json.dumps([backbone_checksum, preprocess.as_dict(), split_digest, pooling], sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:32]


@torch.inference_mode()
def compute_embeddings(backbone: torch.nn.Module, loader: DataLoader, device: str = "cpu", pooling: str = "cls"
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """(embeddings [N, D], labels [N]) in loader order."""
    backbone.eval().to(device)
    feats, labels = [], []
    for batch in loader:
        feats.append(pooled_embedding(backbone, batch[0].to(device), pooling).float().cpu())
        labels.append(torch.as_tensor(batch[1]))
    return torch.cat(feats), torch.cat(labels)


def cached_embeddings(backbone: torch.nn.Module, loader: DataLoader, preprocess: Preprocess, split_digest: str,
                      cache_dir: Path, device: str = "cpu", pooling: str = "cls"
                      ) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """(embeddings, labels, hit): read from the cache when the key matches, else compute and store."""
    path = cache_dir / f"{cache_key(state_checksum(backbone), preprocess, split_digest, pooling)}.safetensors"
    if path.is_file():
        data = load_file(path)
        return data["embeddings"], data["labels"], True
    emb, labels = compute_embeddings(backbone, loader, device, pooling)
    atomic_write_safetensors(path, {"embeddings": emb, "labels": labels})
    return emb, labels, False
