import sys

import numpy as np
import torch

from streetvision.data.datamodules import ImageDataset, LoaderOptions, UnlabeledDataModule, unlabeled_paths
from streetvision.data.synthetic import write_dataset
from streetvision.data.preprocess import Preprocess
from streetvision.data.transforms import EvalTransform, TrainTransform

PRE = Preprocess(size=56, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))

_opened: list[str] = []
_recording = [False]


def _audit(event, args):
    if _recording[0] and event == "open" and isinstance(args[0], str):
        _opened.append(str(args[0]))


sys.addaudithook(_audit)


def test_unlabeled_module_never_opens_label_files(tmp_path):
    root = tmp_path / "unlabeled"
    write_dataset(root, n=12, domain="target")  # writes class folders and a manifest.csv with labels
    (root / "labels.json").write_text('{"a": 1}')
    _opened.clear()
    _recording[0] = True
    try:
        module = UnlabeledDataModule(unlabeled_paths(root), EvalTransform(PRE), batch_size=4)
        batches = list(module.train_dataloader())
    finally:
        _recording[0] = False
    assert len(batches) == 3 and isinstance(batches[0], torch.Tensor) and batches[0].shape == (4, 3, 56, 56)
    under_root = [p for p in _opened if p.startswith(str(root))]
    assert len(under_root) >= 12 and all(p.endswith(".png") for p in under_root), under_root


def test_dataset_substitutes_a_file_that_went_bad_after_scanning(tmp_path):
    rows = write_dataset(tmp_path, n=4)
    rows[1][0].write_bytes(b"garbage")
    ds = ImageDataset([p for p, _ in rows], [y for _, y in rows], EvalTransform(PRE))
    items = [ds[i] for i in range(len(ds))]
    assert [i for _, _, i in items] == [0, 2, 2, 3]
    assert list(ds.failures) == [str(rows[1][0])]
    assert np.isfinite(torch.stack([x for x, _, _ in items]).numpy()).all()


def test_decoded_images_are_cached_within_the_budget(tmp_path):
    rows = write_dataset(tmp_path, n=4)  # 224 x 224 RGB: 147 KiB decoded each
    paths, labels = [p for p, _ in rows], [y for _, y in rows]
    cached = ImageDataset(paths, labels, EvalTransform(PRE), cache_mb=0.3)  # room for two images
    first = [cached[i][0] for i in range(4)]
    assert sorted(cached._cache) == [0, 1]
    for p in paths[:2]:
        p.unlink()  # served from memory from now on
    torch.testing.assert_close(torch.stack([cached[i][0] for i in range(4)]), torch.stack(first))
    assert cached.failures == {}
    uncached = ImageDataset(paths[2:], labels[2:], EvalTransform(PRE))
    uncached[0]
    assert uncached._cache == {}


def test_augmentation_never_alters_a_cached_image(tmp_path):
    rows = write_dataset(tmp_path, n=2)
    ds = ImageDataset([p for p, _ in rows], [y for _, y in rows], TrainTransform(PRE, "validator"), cache_mb=10)
    ds[0]
    before = ds._cache[0].tobytes()
    for _ in range(20):
        ds[0]
    assert ds._cache[0].tobytes() == before


def _train_batches(paths, labels, workers: int, epoch: int, seed: int = 7) -> list[torch.Tensor]:
    options = LoaderOptions(num_workers=workers, cache_mb=1.0)
    ds = options.dataset(paths, labels, TrainTransform(PRE, "validator"), cached_datasets=2)
    loader = options.loader(ds, batch_size=4, shuffle=True)
    loader.sampler.seed = seed
    loader.sampler.set_epoch(epoch)
    return [torch.cat([x.flatten(1), y[:, None].float(), i[:, None].float()], 1) for x, y, i in loader]


def test_an_epochs_batches_and_augmentations_do_not_depend_on_loader_workers(tmp_path):
    rows = write_dataset(tmp_path / "d", n=12)
    paths, labels = [p for p, _ in rows], [y for _, y in rows]
    inline = _train_batches(paths, labels, workers=0, epoch=3)
    with_workers = _train_batches(paths, labels, workers=2, epoch=3)
    assert len(inline) == 3
    for a, b in zip(inline, with_workers):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    other_epoch = _train_batches(paths, labels, workers=0, epoch=4)
    assert not torch.equal(torch.cat(inline), torch.cat(other_epoch))


def test_the_decode_cache_budget_is_shared_by_the_cached_datasets_and_each_loaders_workers():
    assert LoaderOptions(num_workers=0, cache_mb=1024).cache_share_mb(2) == 512
    assert LoaderOptions(num_workers=4, cache_mb=1024).cache_share_mb(2) == 128
    options = LoaderOptions(num_workers=3, cache_mb=600)
    assert options.dataset([], [], EvalTransform(PRE), cached_datasets=1).cache_bytes == 200 * 2**20
    assert options.dataset([], [], EvalTransform(PRE)).cache_bytes == 0  # read once: nothing cached
    assert options.describe(2)["decode_cache_mb_per_dataset_process"] == 100


def test_auto_loader_workers_leave_a_core_for_training(monkeypatch, make_cfg):
    from streetvision.data import workers as devices

    hardware = make_cfg().hardware
    assert int(hardware.num_workers) == devices.AUTO
    for cpus, processes, expected in ((1, 1, 0), (2, 1, 1), (16, 1, 8), (16, 2, 7), (4, 4, 0)):
        monkeypatch.setattr(devices, "usable_cpus", lambda cpus=cpus: cpus)
        assert devices.loader_workers(hardware, processes) == expected, (cpus, processes)
    assert devices.scan_workers(hardware) == 4
    hardware.num_workers = 0
    assert devices.loader_workers(hardware, 1) == devices.scan_workers(hardware) == 0
