"""The NATIX miner detector: built the way the NATIX registry builds detectors, answering a float per PIL image."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from streetvision import Predictor
from streetvision.bundle.hf_export import parity_images
from streetvision.errors import ConfigError
from streetvision.miner import StreetVisionDetector, find_config, load_miner_config

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "natix_miner"


class StandInRegistry:
    """The shape of the NATIX detector registry: a decorator factory that files classes under a name."""

    def __init__(self) -> None:
        self.data: dict[str, type] = {}

    def register_module(self, module_name: str):
        def register(cls: type) -> type:
            self.data[module_name] = cls
            return cls

        return register


def write_config(folder: Path, **fields) -> Path:
    path = folder / "streetvision.yaml"
    path.write_text(yaml.safe_dump(fields))
    return path


def test_the_readme_lines_register_a_detector_the_miner_builds_and_calls(exportable_run, tmp_path):
    shutil.copytree(exportable_run / "export" / "hf", tmp_path / "model")
    config = write_config(tmp_path, model="model")  # a folder relative to the YAML
    readme = (EXAMPLE / "README.md").read_text()
    lines = re.search(r"```python\n(.*?)```", readme, re.S).group(1).strip().splitlines()
    registry = StandInRegistry()
    exec("\n".join(line.strip() for line in lines), {"DETECTOR_REGISTRY": registry})
    assert len(lines) == 2
    # neurons/miner.py: DETECTOR_REGISTRY[IMAGE_DETECTOR](config_name=IMAGE_DETECTOR_CONFIG, device=...)
    detector = registry.data["StreetVision"](config_name=str(config), device="cuda")
    image = parity_images(exportable_run / "export" / "bundle", n_per_level=1)[0]
    score = detector(image)
    assert type(score) is float and 0.0 <= score <= 1.0
    assert score == Predictor.from_pretrained(exportable_run / "export" / "hf")(image)
    assert detector.device in ("cpu", "cuda") and "bittensor" not in sys.modules


def test_a_bundle_with_onnx_and_the_natix_config_folder(exportable_run, tmp_path, monkeypatch):
    configs = tmp_path / "natix" / "base_miner" / "detectors" / "configs"
    configs.mkdir(parents=True)
    (configs.parents[1] / "__init__.py").write_text("raise ImportError('base_miner must not be imported')\n")
    write_config(configs, model=str(exportable_run / "export" / "bundle"), backend="onnx")
    monkeypatch.syspath_prepend(str(tmp_path / "natix"))
    monkeypatch.chdir(tmp_path)
    detector = StreetVisionDetector(config_name="streetvision.yaml")  # found in base_miner/detectors/configs/
    assert detector.config_path == configs / "streetvision.yaml" and detector.predictor.backend == "onnx"
    image = parity_images(exportable_run / "export" / "bundle", n_per_level=1)[1]
    assert detector(image) == Predictor.from_bundle(exportable_run / "export" / "bundle", backend="onnx")(image)


def test_the_example_config_is_valid():
    config = load_miner_config(EXAMPLE / "streetvision.yaml")
    assert config["backend"] == "torch" and config["revision"] is None and "/" in config["model"]


@pytest.mark.parametrize(("fields", "message"), [
    ({"backend": "torch"}, "has no 'model'"),
    ({"model": "org/name", "hf_repo": "org/name"}, "unknown key"),
    ({"model": "org/name", "backend": "tensorrt"}, "backend 'tensorrt'"),
    ({"model": "org/name", "revision": 3}, "'revision' is 3"),
])
def test_bad_detector_configs_name_the_problem(tmp_path, fields, message):
    with pytest.raises(ConfigError, match=message):
        load_miner_config(write_config(tmp_path, **fields))


def test_a_missing_config_names_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="'nowhere.yaml' not found"):
        find_config("nowhere.yaml")
