"""The only place that knows where a run's artifacts live.

Layout: ``<output_root>/<experiment_name>/runs/<run_id>/`` holding ``config.yaml``, ``splits.json`` and one
directory per phase (the ``dir`` each phase declares). Paths written inside artifacts are relative to the run directory (see :meth:`rel`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from streetvision.config import StreetVisionConfig, check_config
from streetvision.errors import ConfigError
from streetvision.io.outputs import RUN_CONFIG, RUN_LOCK
from streetvision.pipeline.registry import phase_dirs



def default_run_id() -> str:
    """A sortable timestamp id for a new run."""
    return datetime.now().strftime("%Y%m%d-%H%M%S")


@dataclass(frozen=True)
class ArtifactSchema:
    """Every artifact path of one run directory."""

    run_dir: Path

    @classmethod
    def from_config(cls, cfg: DictConfig) -> ArtifactSchema:
        """Run directory from the top-level keys; ``cfg.run_id`` must be set (the CLI fills a timestamp)."""
        return cls(Path(cfg.output_root) / cfg.experiment_name / "runs" / str(cfg.run_id))

    @classmethod
    def from_run_dir(cls, run_dir: Path | str) -> ArtifactSchema:
        """The schema of an existing run directory, wherever it now lives."""
        return cls(Path(run_dir).resolve())

    def identity(self) -> dict[str, str]:
        """The top-level config keys that name this run directory (inverse of :meth:`from_config`)."""
        return {"output_root": str(self.run_dir.parents[2]), "experiment_name": self.run_dir.parents[1].name,
                "run_id": self.run_dir.name}

    # run level
    @property
    def config_yaml(self) -> Path:
        return self.run_dir / RUN_CONFIG

    @property
    def splits_json(self) -> Path:
        return self.run_dir / "splits.json"

    @property
    def lock_file(self) -> Path:
        return self.run_dir / RUN_LOCK

    @property
    def hash_memo_json(self) -> Path:
        """File hashes keyed on (path, size, mtime_ns, inode): a no-op rerun re-verifies by stat alone."""
        return self.run_dir / ".hash_memo.json"

    def phase_dir(self, phase: str) -> Path:
        return self.run_dir / phase_dirs()[phase]

    @property
    def logs_dir(self) -> Path:
        """Experiment-tracking output of the training phases (logging.loggers): logs/<phase>/..., mlruns/, ..."""
        return self.run_dir / "logs"

    def checkpoint_dir(self, phase: str) -> Path:
        """Per-epoch training checkpoints of an unfinished phase (deleted when the phase finishes)."""
        return self.phase_dir(phase) / "checkpoints"

    def manifest(self, phase: str) -> Path:
        return self.phase_dir(phase) / "manifest.json"

    # data (splits phase)
    @property
    def data_report_json(self) -> Path:
        return self.phase_dir("splits") / "data_report.json"

    @property
    def synthetic_dir(self) -> Path:
        return self.phase_dir("splits") / "synthetic"

    def unlabeled_synthetic_dir(self, phase: str) -> Path:
        """Synthetic unlabelled images generated for a self-supervised phase (phase4, pretrain)."""
        return self.phase_dir(phase) / "synthetic_unlabeled"

    @property
    def cache_dir(self) -> Path:
        """Shared across runs of one output root (embedding caches)."""
        return Path(self.identity()["output_root"]) / ".cache"

    # phase1
    @property
    def phase1_model_dir(self) -> Path:
        return self.phase_dir("phase1")

    def logits_csv(self, split: str) -> Path:
        return self.phase_dir("phase1") / "logits" / f"{split}.csv"

    def metrics_json(self, phase: str) -> Path:
        return self.phase_dir(phase) / "metrics.json"

    @property
    def training_curve_csv(self) -> Path:
        return self.phase_dir("phase1") / "training_curve.csv"

    # crossfit
    @property
    def crossfit_logits_csv(self) -> Path:
        """Out-of-fold logits of every train / val_select / val_calib image (phase1's logits format)."""
        return self.phase_dir("crossfit") / "logits" / "oof.csv"

    @property
    def crossfit_folds_csv(self) -> Path:
        """Each cross-fitted image's fold, split of origin and duplicate group."""
        return self.phase_dir("crossfit") / "folds.csv"

    def crossfit_curve_csv(self, fold: int) -> Path:
        """The learning curve (training loss per epoch) of one fold's model."""
        return self.phase_dir("crossfit") / "curves" / f"fold{fold}.csv"

    # phase2 / phase5
    @property
    def thresholds_json(self) -> Path:
        return self.phase_dir("phase2") / "thresholds.json"

    @property
    def threshold_sweep_csv(self) -> Path:
        return self.phase_dir("phase2") / "threshold_sweep.csv"

    @property
    def scrcparams_json(self) -> Path:
        return self.phase_dir("phase5") / "scrcparams.json"

    @property
    def calibration_metrics_json(self) -> Path:
        return self.phase_dir("phase5") / "calibration_metrics.json"

    @property
    def risk_coverage_csv(self) -> Path:
        return self.phase_dir("phase5") / "risk_coverage.csv"

    # pretrain / phase4
    @property
    def pretrain_backbone_dir(self) -> Path:
        return self.phase_dir("pretrain") / "backbone"

    @property
    def explora_backbone_dir(self) -> Path:
        return self.phase_dir("phase4") / "backbone"

    @property
    def explora_adapter_dir(self) -> Path:
        return self.phase_dir("phase4") / "adapter"

    # phase6 / evaluation
    @property
    def bundle_dir(self) -> Path:
        return self.phase_dir("phase6") / "bundle"

    @property
    def bundle_pointer_json(self) -> Path:
        return self.phase_dir("phase6") / "bundle.json"

    @property
    def hf_export_dir(self) -> Path:
        """The Hugging Face folder (streetvision.bundle.hf_export), beside the bundle."""
        return self.phase_dir("phase6") / "hf"

    @property
    def evaluation_dir(self) -> Path:
        return self.phase_dir("evaluation")

    def rel(self, path: Path | str) -> str:
        """``path`` relative to the run directory, POSIX style (what artifacts record)."""
        return Path(os.path.relpath(Path(path).absolute(), self.run_dir.absolute())).as_posix()

    def resolve(self, rel_path: str) -> Path:
        """Inverse of :meth:`rel`."""
        return (self.run_dir / rel_path).resolve()


def load_run_config(run_dir: Path, overrides: list[str] | None = None) -> DictConfig:
    """The saved config of an existing run directory (``config.yaml``), re-rooted where the directory is now,
    with Hydra-style dotted overrides applied and validated against the schema."""
    from omegaconf.errors import OmegaConfBaseException

    art = ArtifactSchema.from_run_dir(run_dir)
    if not art.config_yaml.is_file():
        raise ConfigError(f"'{run_dir}' is not a run directory (no config.yaml).",
                          "pass outputs/<experiment>/runs/<run_id>.")
    try:
        cfg = OmegaConf.merge(OmegaConf.structured(StreetVisionConfig), OmegaConf.load(art.config_yaml))
        cfg.merge_with_dotlist(list(overrides or []))
    except OmegaConfBaseException as exc:
        raise ConfigError(f"Cannot apply the saved config or overrides: {exc}".splitlines()[0],
                          "check the override keys against `streetvision config`.") from exc
    for key, value in art.identity().items():
        cfg[key] = value
    check_config(cfg)
    return cfg
