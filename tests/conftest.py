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


@pytest.fixture(scope="session")
def micro_run(tmp_path_factory) -> Path:
    """A complete micro run (phase1, phase2, phase5, phase6), built once per session; returns the run dir."""
    from rich.console import Console

    from streetvision.pipeline.artifacts import ArtifactSchema
    from streetvision.pipeline.runner import run_pipeline

    root = tmp_path_factory.mktemp("micro_run")
    cfg = load_config([f"output_root={root}", "run_id=b", "model=dinov2_micro", "data.synthetic.n=120",
                       "training.progress_bar=false", "pipeline.phases=[phase1,phase2,phase5,phase6]"])
    run_pipeline(cfg, Console(quiet=True))
    return ArtifactSchema.from_config(cfg).run_dir


@pytest.fixture(scope="session")
def micro_bundle(micro_run) -> Path:
    """The micro run's bundle directory (do not modify: copy it first)."""
    return micro_run / "export" / "bundle"


@pytest.fixture(scope="session")
def exportable_run(tmp_path_factory) -> Path:
    """A micro run with the exportable pooling (cls_mean + linear head): phase6 writes export/hf. Tests read it (or
    rebuild it with the same config); copy it before editing files."""
    from rich.console import Console

    from streetvision.pipeline.artifacts import ArtifactSchema
    from streetvision.pipeline.runner import run_pipeline

    root = tmp_path_factory.mktemp("hf_run")
    cfg = load_config([f"output_root={root}", "run_id=h", "model=dinov2_micro", "model.pooling=cls_mean",
                       "data.synthetic.n=120", "training.progress_bar=false",
                       "pipeline.phases=[phase1,phase2,phase5,phase6]"])
    run_pipeline(cfg, Console(quiet=True))
    return ArtifactSchema.from_config(cfg).run_dir
