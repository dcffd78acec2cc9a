"""Torch datasets and Lightning data modules for labelled splits and for unlabelled images.

A file that fails to decode at training time (changed after the splits phase) is reported with a warning and
replaced by the next decodable sample, so an epoch never crashes on one bad file. The unlabelled dataset is given
image paths only and never opens a label file.

Decoded images of the datasets a fit reads every epoch (train, and the validation split) are kept in memory, so
later epochs skip file decoding (about 2 ms per 224 px PNG on this CPU, a fifth of a tiny-model training step per
image; far more for a full-HD JPEG); augmentation still runs on every sample. ``hardware.decode_cache_mb`` bounds
the cache of all loading processes together: it is shared out evenly over the cached datasets and, with loader
workers, over each loader's workers (each worker holds its own copy of the dataset), so a fit's decoded images take
at most that much memory per training process whatever the number of images or workers. Datasets read once (scoring
a split after training) cache nothing.
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
from torch.utils.data import DataLoader, Dataset, Sampler

from streetvision.data.decode import DecodeError, decode_image
from streetvision.data.sources import list_images
from streetvision.data.splits import Splits
from streetvision.data.workers import loader_workers
from streetvision.errors import DataError

log = logging.getLogger(__name__)
Transform = Callable[..., object]


class SeededSampler(Sampler):
    """The training order: (index, sample seed) pairs, shuffled, both drawn from (seed, epoch) alone. The seed
    draws each sample's augmentation, so an epoch's batches and augmentations are the same with any number of
    loader workers (each worker would otherwise draw from its own stream) and after resuming at that epoch
    (Lightning calls :meth:`set_epoch`; under DDP its sampler wrapper forwards it). ``seed`` defaults to one draw
    from torch's global RNG, made once, when the sampler is built (after ``seed_everything``)."""

    def __init__(self, n: int, seed: int | None = None) -> None:
        self.n = n
        self.seed = int(torch.randint(0, 2**62, (1,)).item()) if seed is None else seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        order, seeds = rng.permutation(self.n), rng.integers(0, 2**62, self.n)
        return iter(zip(order.tolist(), seeds.tolist()))


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

    def __getitem__(self, item: int | tuple[int, int]):
        """``item``: (index, seed) from :class:`SeededSampler` (training: the seed draws the sample's augmentation),
        or an index alone (evaluation; a transform that augments then draws from the index)."""
        index, seed = item if isinstance(item, tuple) else (item, item)
        i, img = self._load(index)
        x = self.transform(img, np.random.default_rng(seed))
        if self.labels is None:
            return x
        return x, self.labels[i], i


class OwnSeedLoader(DataLoader):
    """A DataLoader that draws its workers' base seed from a generator of its own, not from torch's global RNG:
    a loader without persistent workers draws once per epoch, one with them once per fit (and once more after a
    resume), so drawing from the global RNG would shift dropout's stream with the number of workers. The generator
    is made at the first iteration: a torch.Generator passed to a ddp_spawn child breaks its start-up."""

    def _get_iterator(self):
        if self.generator is None:
            self.generator = torch.Generator().manual_seed(0)
        return super()._get_iterator()


PREFETCH_FACTOR = 2  # batches each loader worker keeps ready (DataLoader's default, stated)


@dataclass(frozen=True)
class LoaderOptions:
    """How images are read and batched, shared by every data module: loader workers (persistent, prefetching),
    pinned memory, the JPEG draft size floor and the decode-cache budget of all loading processes together."""

    num_workers: int = 0
    pin_memory: bool = False
    decode_min_size: int | None = None
    cache_mb: float = 0.0

    @classmethod
    def from_hardware(cls, hardware, input_size: int, processes: int = 1) -> LoaderOptions:
        """From ``cfg.hardware`` for a model with square input ``input_size`` (JPEGs decode at >= twice it), in one
        of ``processes`` training processes on this node (auto workers share its cores among them)."""
        return cls(loader_workers(hardware, processes), bool(hardware.pin_memory), input_size * 2,
                   float(hardware.decode_cache_mb))

    def cache_share_mb(self, cached_datasets: int) -> float:
        """Decode cache of one process's copy of one of ``cached_datasets`` datasets (module docstring)."""
        return self.cache_mb / max(1, cached_datasets) / max(1, self.num_workers)

    def dataset(self, paths: Sequence[Path], labels: Sequence[int] | None, transform: Transform,
                cached_datasets: int = 0) -> ImageDataset:
        """An ImageDataset read with these options; it caches decoded images when it is one of the
        ``cached_datasets`` (> 0) datasets a fit reads every epoch."""
        share = self.cache_share_mb(cached_datasets) if cached_datasets else 0.0
        return ImageDataset(paths, labels, transform, self.decode_min_size, share)

    def loader(self, dataset: Dataset, batch_size: int, shuffle: bool, drop_last: bool = False) -> DataLoader:
        """A DataLoader batched with these options: ``shuffle`` in :class:`SeededSampler`'s order (training),
        else in index order. Its own generator feeds the workers' base seed, so loading never draws from the
        global RNG (whose later draws, e.g. dropout's, then do not depend on the number of workers)."""
        workers = self.num_workers
        return OwnSeedLoader(dataset, batch_size=batch_size, sampler=SeededSampler(len(dataset)) if shuffle else None,
                             num_workers=workers, pin_memory=self.pin_memory, persistent_workers=workers > 0,
                             prefetch_factor=PREFETCH_FACTOR if workers > 0 else None, drop_last=drop_last)

    def describe(self, cached_datasets: int) -> dict[str, object]:
        """What a training phase records about its data loading."""
        return {"loader_workers": self.num_workers, "persistent_workers": self.num_workers > 0,
                "prefetch_factor": PREFETCH_FACTOR if self.num_workers > 0 else None,
                "decode_cache_mb": self.cache_mb, "cached_datasets": cached_datasets,
                "decode_cache_mb_per_dataset_process": self.cache_share_mb(cached_datasets)}


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

    FIT_DATASETS = 2  # train and the validation split: read every epoch, so they share the decode cache

    def dataset(self, split: str, augment: bool = False, cached: bool = False) -> ImageDataset:
        """Dataset of one split (augmented with the training transform when ``augment``; decoded images cached when
        ``cached``: a split a fit reads every epoch)."""
        transform = self.train_transform if augment else self.eval_transform
        return self.options.dataset(self.splits.paths(split), self.splits.labels(split), transform,
                                    self.FIT_DATASETS if cached else 0)

    def loader(self, split: str, augment: bool = False, shuffle: bool = False, cached: bool = False) -> DataLoader:
        """A DataLoader over one split (read once unless ``cached``)."""
        return self.options.loader(self.dataset(split, augment, cached), self.batch_size, shuffle)

    def train_dataloader(self) -> DataLoader:
        return self.loader("train", augment=True, shuffle=True, cached=True)

    def val_dataloader(self, split: str = "val_select") -> DataLoader:
        return self.loader(split, cached=True)

    def describe(self) -> dict[str, object]:
        """What phase1 records about data loading (:meth:`LoaderOptions.describe`)."""
        return self.options.describe(self.FIT_DATASETS)


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
        dataset = self.options.dataset(self.paths, None, self.transform, cached_datasets=1)
        return self.options.loader(dataset, self.batch_size, shuffle=True, drop_last=True)
