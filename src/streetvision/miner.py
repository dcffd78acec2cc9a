"""The NATIX miner's detector: a StreetVision model behind the constructor the NATIX detector registry calls.

The NATIX base miner (``natixnetwork/streetvision-subnet``, ``neurons/miner.py``) builds its image detector as
``DETECTOR_REGISTRY[IMAGE_DETECTOR](config_name=IMAGE_DETECTOR_CONFIG, device=IMAGE_DETECTOR_DEVICE)`` and sends
each challenge image, a PIL image, to ``detector(image)``, which returns the float the validator rounds at 0.5.
Registering this class (two lines, ``examples/natix_miner/README.md``) serves a bundle or a published Hub repo
without bittensor being imported here.

The YAML (``examples/natix_miner/streetvision.yaml``)::

    model: my-org/streetvision-roadwork   # a Hub repo id, or a folder: a bundle or a Hugging Face export
    revision: null                        # a branch, tag or commit of the Hub repo (null: main)
    backend: torch                        # torch | onnx (onnx: bundles only)
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from streetvision.bundle.predictor import BACKENDS, Predictor
from streetvision.errors import ConfigError

CONFIG_KEYS = {"model": str, "revision": (str, type(None)), "backend": str}
NATIX_CONFIGS = ("detectors", "configs")  # where the NATIX base miner keeps detector YAMLs, under base_miner/


def find_config(config_name: str | Path) -> Path:
    """``config_name`` as a path, else in the NATIX miner's ``base_miner/detectors/configs/`` (found without
    importing it), as the NATIX detectors look up theirs."""
    tried = [Path(config_name)]
    spec = importlib.util.find_spec("base_miner")
    if spec is not None and spec.submodule_search_locations:
        tried += [Path(loc).joinpath(*NATIX_CONFIGS, str(config_name)) for loc in spec.submodule_search_locations]
    for path in tried:
        if path.is_file():
            return path
    raise ConfigError(f"Detector config '{config_name}' not found (looked at {', '.join(str(p) for p in tried)}).",
                      "copy examples/natix_miner/streetvision.yaml to base_miner/detectors/configs/, or set "
                      "IMAGE_DETECTOR_CONFIG to its absolute path.")


def load_miner_config(path: Path) -> dict[str, Any]:
    """Read and check the detector YAML; a relative local ``model`` folder is taken from the YAML's folder."""
    import yaml

    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"Detector config '{path}' is not readable YAML ({exc}).",
                          "see examples/natix_miner/streetvision.yaml.") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("model"), str) or not raw["model"]:
        raise ConfigError(f"Detector config '{path}' has no 'model' (a Hub repo id or a folder).",
                          "add e.g. `model: my-org/streetvision-roadwork`.")
    unknown = sorted(set(raw) - set(CONFIG_KEYS))
    if unknown:
        raise ConfigError(f"Detector config '{path}': unknown key(s) {', '.join(unknown)}. Valid keys: "
                          f"{', '.join(CONFIG_KEYS)}.", "remove them.")
    config = {"revision": None, "backend": "torch", **raw}
    for key, kind in CONFIG_KEYS.items():
        if not isinstance(config[key], kind):
            raise ConfigError(f"Detector config '{path}': '{key}' is {config[key]!r}.",
                              "model and backend are strings; revision is a string or null.")
    if config["backend"] not in BACKENDS:
        raise ConfigError(f"Detector config '{path}': backend '{config['backend']}'. Valid choices: "
                          f"{', '.join(BACKENDS)}.", "set backend: torch (or onnx for a bundle).")
    beside = path.parent / config["model"]
    if not Path(config["model"]).is_absolute() and beside.is_dir():
        config["model"] = str(beside)
    return config


class StreetVisionDetector:
    """``StreetVisionDetector(config_name=..., device=...)(pil_image) -> float``: the validator's float, > 0.5
    exactly when the model decides roadwork."""

    def __init__(self, model_name: str = "StreetVision", config_name: str = "streetvision.yaml",
                 device: str = "cpu") -> None:
        import torch

        self.model_name = model_name
        self.config_path = find_config(config_name)
        self.config = load_miner_config(self.config_path)
        # as the NATIX detectors do: CUDA when asked for and present, else the CPU
        self.device = str(device) if str(device).startswith("cuda") and torch.cuda.is_available() else "cpu"
        self.predictor = Predictor.from_pretrained(self.config["model"], revision=self.config["revision"],
                                                   backend=self.config["backend"], device=self.device)

    def __call__(self, image: Image.Image | np.ndarray) -> float:
        """The validator's float for one challenge image: a PIL image, or an HxWx3 uint8 RGB array."""
        return float(self.predictor(as_image(image)))


def as_image(image: Any) -> Any:
    """A PIL image (or an image path) as it is, an HxWx3 uint8 RGB array as a PIL image; ConfigError naming what
    was given otherwise."""
    if isinstance(image, (Image.Image, str, Path)):
        return image
    if isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8:
        return Image.fromarray(image)
    what = (f"a {image.dtype} array of shape {image.shape}" if isinstance(image, np.ndarray)
            else f"a {type(image).__name__}")
    raise ConfigError(f"StreetVisionDetector takes a PIL image or an HxWx3 uint8 RGB array; got {what}.",
                      "pass the challenge image as the NATIX miner does (a PIL image), or convert it first, e.g. "
                      "Image.fromarray(array.astype('uint8')).convert('RGB').")
