"""Shared fixtures: composed configs pointing at a temp output root."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import DictConfig

from streetvision.config import load_config


@pytest.fixture
def make_cfg(tmp_path: Path):
    """Compose the real config with overrides, writing runs under tmp_path."""

    def _make(*overrides: str, run_id: str = "t") -> DictConfig:
        return load_config([f"output_root={tmp_path / 'outputs'}", f"run_id={run_id}", *overrides])

    return _make


REAL_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "roadwork_real"


@pytest.fixture
def real_data() -> Path:
    """The shared real photos (read in place; never copied into the repo)."""
    if not (REAL_DATA / "roadwork").is_dir():
        pytest.skip(f"shared real data not found at {REAL_DATA}")
    return REAL_DATA
