"""Before a run directory is made: the data every configured source reads exists (a Hub dataset id is resolved, or
reported missing, by the splits phase)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from streetvision.config import DATA_PATH_KEYS, data_sources
from streetvision.data.hf_source import hub_dataset_id
from streetvision.errors import ConfigError


def check_data_paths(cfg: Any) -> None:
    """The data every source reads exists (before a run directory is made for it): ConfigError naming the key."""
    for tagged in data_sources(cfg.data):
        _check_source_path(tagged.spec, tagged.key)


def _check_source_path(spec: Any, where: str) -> None:
    field_name = DATA_PATH_KEYS.get(str(spec.source))
    if field_name is None:
        return
    key = f"{where}.{field_name.split('.', 1)[1]}"
    value = spec.hf.path if spec.source == "hf" else spec[field_name.rsplit(".", 1)[1]]
    if value is None:
        raise ConfigError(f"{where}.source is '{spec.source}' but {key} is not set.", f"set {key}=PATH.")
    if spec.source == "hf":
        if hub_dataset_id(str(value)):  # a Hub dataset id: resolved (or reported missing) by the splits phase
            return
    if not Path(str(value)).exists():
        raise ConfigError(f"{key}='{value}' does not exist (looked from {Path.cwd()}).",
                          f"set {key}= to the path of your data (absolute, or relative to where you run the command).")
