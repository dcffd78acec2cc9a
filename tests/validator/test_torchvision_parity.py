"""Geometry against torchvision's functional ops (what the published validator calls). torchvision cannot load
beside this project's CPU torch wheel, so this runs where torchvision is importable (a GPU machine, or a separate
venv: `python -m pytest tests/validator/test_torchvision_parity.py` there) and skips elsewhere."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from streetvision.validator.challenges import base, resized_crop, rotate, to_float_tensor, to_uint8

try:  # pragma: no cover - depends on the environment
    import torchvision.transforms as T
    import torchvision.transforms.functional as TF
except Exception as exc:  # noqa: BLE001 - any import failure means "not here"
    pytest.skip(f"torchvision not importable here ({type(exc).__name__})", allow_module_level=True)


@pytest.mark.parametrize("seed", range(8))
def test_geometry_equals_torchvision(seed):
    rng = np.random.default_rng(seed)
    h, w = int(rng.integers(50, 400)), int(rng.integers(50, 400))
    img = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    t = T.ToTensor()(img)
    assert torch.equal(t, to_float_tensor(img))
    angle = float(rng.uniform(-20, 20))
    rotated = TF.rotate(t, angle)  # the validator's call: default (nearest) interpolation, no fill
    assert torch.equal(rotated, rotate(t, angle))
    side = int(min(h, w) * rng.uniform(0.5, 1))
    i, j = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    ref = TF.resized_crop(rotated, i, j, side, side, [224, 224], T.InterpolationMode.BILINEAR, antialias=True)
    assert torch.equal(ref, resized_crop(rotated, (i, j, side, side)))
    assert np.array_equal(np.asarray(T.ToPILImage()(ref)), to_uint8(ref))
    expected_base = T.ToPILImage()(T.ToTensor()(T.Resize((224, 224))(T.CenterCrop(min(img.size))(img))))
    assert np.array_equal(np.asarray(expected_base), np.asarray(base(img)))
