import sys

import numpy as np
import torch

from streetvision.data.datamodules import ImageDataset, UnlabeledDataModule, unlabeled_paths
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
