"""Torch datasets and Lightning data modules for labelled splits and for unlabelled images.

A file that fails to decode at training time (changed after the splits phase) is reported with a warning and
replaced by the next decodable sample, so an epoch never crashes on one bad file. The unlabelled dataset is given
image paths only and never opens a label file. Decoded images are kept in memory up to ``cache_mb`` per dataset
(``hardware.decode_cache_mb``), so later epochs skip file decoding (about 2 ms per 224 px PNG on this CPU, a fifth
of a tiny-model training step per image); augmentation still runs on every sample.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from streetvision.data.decode import DecodeError, decode_image
from streetvision.data.sources import list_images
from streetvision.data.splits import Splits
from streetvision.errors import DataError

log = logging.getLogger(__name__)
Transform = Callable[..., object]


def _sample_rng() -> np.random.Generator:
    """Per-sample numpy generator drawn from torch's RNG (seeded per worker by Lightning's seed_everything)."""
    return np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item()))


class ImageDataset(Dataset):
    """(image tensor, label, index) for labelled files, or image tensor(s) only when ``labels`` is None."""

    def __init__(self, paths: Sequence[Path], labels: Sequence[int] | None, transform: Transform,
                 decode_min_size: int | None = None, cache_mb: float = 0.0) -> None:
        self.paths = list(paths)
        self.labels = None if labels is None else list(labels)
        self.transform = transform
        self.decode_min_size = decode_min_size
        self.failures: dict[str, str] = {}
        self.cache_bytes = int(cache_mb * 2**20)
        self._cache: dict[int, Image.Image] = {}
        self._cached_bytes = 0

    def __len__(self) -> int:
        return len(self.paths)

    def _load(self, index: int):
        for step in range(len(self.paths)):
            i = (index + step) % len(self.paths)
            if i in self._cache:
                return i, self._cache[i]
            try:
                img = decode_image(self.paths[i], min_size=self.decode_min_size)
            except DecodeError as exc:
                if str(self.paths[i]) not in self.failures:
                    self.failures[str(self.paths[i])] = exc.reason
                    log.warning("skipping undecodable file %s (%s); using the next sample", self.paths[i],
                                exc.reason)
                continue
            size = img.width * img.height * len(img.getbands())
            if self._cached_bytes + size <= self.cache_bytes:
                self._cache[i] = img
                self._cached_bytes += size
            return i, img
        raise DataError("No file in this dataset can be decoded.", "rerun the splits phase to quarantine them.")

    def __getitem__(self, index: int):
        i, img = self._load(index)
        x = self.transform(img, _sample_rng())
        if self.labels is None:
            return x
        return x, self.labels[i], i


@dataclass(frozen=True)
class LoaderOptions:
    """How images are read and batched, shared by every data module: loader workers, pinned memory, the JPEG
    draft size floor and the per-dataset decode cache."""

    num_workers: int = 0
    pin_memory: bool = False
    decode_min_size: int | None = None
    cache_mb: float = 0.0

    @classmethod
    def from_hardware(cls, hardware, input_size: int) -> LoaderOptions:
        """From ``cfg.hardware`` for a model with square input ``input_size`` (JPEGs decode at >= twice it)."""
        return cls(int(hardware.num_workers), bool(hardware.pin_memory), input_size * 2,
                   float(hardware.decode_cache_mb))

    def dataset(self, paths: Sequence[Path], labels: Sequence[int] | None, transform: Transform) -> ImageDataset:
        """An ImageDataset read with these options."""
        return ImageDataset(paths, labels, transform, self.decode_min_size, self.cache_mb)

    def loader(self, dataset: Dataset, batch_size: int, shuffle: bool, drop_last: bool = False) -> DataLoader:
        """A DataLoader batched with these options."""
        return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=self.num_workers,
                          pin_memory=self.pin_memory, persistent_workers=self.num_workers > 0, drop_last=drop_last)


class LabeledDataModule(L.LightningDataModule):
    """Splits from splits.json: augmented ``train``, plain ``val_select`` / ``val_calib`` / ``test``."""

    def __init__(self, splits: Splits, train_transform: Transform, eval_transform: Transform, batch_size: int,
                 options: LoaderOptions = LoaderOptions()) -> None:
        super().__init__()
        self.splits = splits
        self.train_transform = train_transform
        self.eval_transform = eval_transform
        self.batch_size = batch_size
        self.options = options

    def dataset(self, split: str, augment: bool = False) -> ImageDataset:
        """Dataset of one split (augmented with the training transform when ``augment``)."""
        transform = self.train_transform if augment else self.eval_transform
        return self.options.dataset(self.splits.paths(split), self.splits.labels(split), transform)

    def loader(self, split: str, augment: bool = False, shuffle: bool = False) -> DataLoader:
        """A DataLoader over one split."""
        return self.options.loader(self.dataset(split, augment), self.batch_size, shuffle)

    def train_dataloader(self) -> DataLoader:
        return self.loader("train", augment=True, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self.loader("val_select")


def unlabeled_paths(root: Path) -> list[Path]:
    """Every image file under ``root`` (any folder tree); no label file is opened."""
    images, _ = list_images(root)
    if not images:
        raise DataError(f"No images found under '{root}'.", "point data.unlabeled.root at a folder of images.")
    return images


class UnlabeledDataModule(L.LightningDataModule):
    """Unlabelled images for self-supervised training: yields only what ``transform`` makes of each image."""

    def __init__(self, paths: Sequence[Path], transform: Transform, batch_size: int,
                 options: LoaderOptions = LoaderOptions()) -> None:
        super().__init__()
        self.paths = list(paths)
        self.transform = transform
        self.batch_size = batch_size
        self.options = options

    def train_dataloader(self) -> DataLoader:
        dataset = self.options.dataset(self.paths, None, self.transform)
        return self.options.loader(dataset, self.batch_size, shuffle=True, drop_last=True)
