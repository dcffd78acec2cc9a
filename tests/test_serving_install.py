"""The serving install: `pip install streetvision` (no extras) gives Predictor, the miner's detector, predict, verify
and publish. Here a fresh interpreter sees this environment's packages less the training extra's (a site-packages
view without them, ``python -S``), as the serving install would, and serves a bundle and its export. `make
natix-compat` checks the same with a real serving-only install in NATIX's pinned environment."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
# the distributions of pyproject.toml's train extra (and what only they pull in)
TRAIN_DISTRIBUTIONS = ("hydra-core", "omegaconf", "lightning", "pytorch-lightning", "peft", "scikit-learn", "scipy",
                       "opencv-python-headless", "opencv-python", "imagehash", "onnx", "matplotlib", "jinja2")
BLOCKED_MODULES = ("hydra", "omegaconf", "lightning", "peft", "sklearn", "scipy", "cv2")


def serving_view(tmp: Path) -> Path:
    """A folder of links to every site-packages entry except those of the train extra's distributions."""
    site = Path(sysconfig.get_paths()["purelib"])
    hidden = set()
    for name in TRAIN_DISTRIBUTIONS:
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        hidden |= {Path(str(f)).parts[0] for f in dist.files or []}
    view = tmp / "site"
    view.mkdir()
    for entry in site.iterdir():
        if entry.name not in hidden and not entry.name.endswith(".pth"):
            (view / entry.name).symlink_to(entry)
    return view


SCRIPT = """
import importlib.util, sys
from PIL import Image
blocked = [m for m in {blocked!r} if importlib.util.find_spec(m) is not None]
assert not blocked, f"training modules importable: {{blocked}}"
import streetvision.miner
from streetvision import Predictor
from streetvision.bundle.predict_files import predict_files
from streetvision.bundle.publish import publish
from streetvision.bundle.verify import verify_bundle
bundle, hf = sys.argv[1], sys.argv[2]
image = Image.new("RGB", (224, 224), (200, 120, 40))
a, b = Predictor.from_bundle(bundle)(image), Predictor.from_pretrained(hf)(image)
assert abs(a - b) <= 1e-4, (a, b)
failed = [c for c in verify_bundle(bundle) if not c.ok]
assert not failed, failed
print("served", a, b, sorted(m for m in sys.modules if m.split(".")[0] in {blocked!r}))
"""


def test_the_serving_api_scores_and_verifies_without_the_training_stack(exportable_run, tmp_path):
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{serving_view(tmp_path)}"}
    bundle, hf = exportable_run / "export" / "bundle", exportable_run / "export" / "hf"
    done = subprocess.run([sys.executable, "-S", "-c", SCRIPT.format(blocked=BLOCKED_MODULES), str(bundle), str(hf)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("served") and done.stdout.rstrip().endswith("[]")


def test_a_training_command_in_the_serving_install_names_the_extra(tmp_path):
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{serving_view(tmp_path)}"}
    done = subprocess.run([sys.executable, "-S", "-m", "streetvision.cli", "run"], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 2 and "pip install 'streetvision[train]'" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("first", ["", "import streetvision.data.transforms"])  # a submodule loaded first, or not
def test_every_documented_validator_name_is_the_documented_object_in_a_fresh_interpreter(first):
    import streetvision.validator as validator

    checks = "\n".join(f"from streetvision.validator import {name}\n"
                        f"assert {name} is importlib.import_module('streetvision.validator.{module}').{name}, "
                        f"'{name}'" for name, module in validator._EXPORTS.items())
    done = subprocess.run([sys.executable, "-c", f"import importlib\n{first}\n{checks}"], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert sorted(validator._EXPORTS) == validator.__all__
