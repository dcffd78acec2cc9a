"""Experiment tracking through Lightning's loggers (``logging.loggers``): ``csv`` by default, ``tensorboard``,
``mlflow`` (a local file store) and ``wandb`` (offline mode), all written under ``<run>/logs/``. Nothing here needs
a network; a selected logger whose package is missing is a config error before any work."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from lightning.pytorch.loggers import CSVLogger, Logger

from streetvision.config import CHOICES
from streetvision.errors import ConfigError

LOGGERS = CHOICES["logging.loggers"]
PACKAGES = {"tensorboard": ("tensorboard", "tensorboardX"), "mlflow": ("mlflow",), "wandb": ("wandb",)}


def check_loggers(names: list[str]) -> None:
    """ConfigError naming the pip package when a selected logger's package is not installed."""
    for name in names:
        modules = PACKAGES.get(name, ())
        if modules and not any(importlib.util.find_spec(m) for m in modules):
            raise ConfigError(f"logging.loggers includes '{name}', which needs the '{modules[0]}' package; it is not "
                              f"installed.", f"pip install {modules[0]}, or drop it: logging.loggers=[csv].")


def make_loggers(names: list[str], log_dir: Path, phase: str, experiment: str, run_id: str,
                 wandb_project: str = "streetvision") -> list[Logger]:
    """One Lightning logger per name, each writing under ``log_dir`` (a new version per run of the phase)."""
    loggers: list[Logger] = []
    for name in names:
        if name == "csv":
            loggers.append(CSVLogger(log_dir, name=phase))
        elif name == "tensorboard":
            from lightning.pytorch.loggers import TensorBoardLogger

            loggers.append(TensorBoardLogger(log_dir / "tensorboard", name=phase, default_hp_metric=False))
        elif name == "mlflow":
            from lightning.pytorch.loggers import MLFlowLogger

            loggers.append(MLFlowLogger(experiment_name=experiment, run_name=f"{run_id}/{phase}",
                                        tracking_uri=(log_dir / "mlruns").absolute().as_uri()))
        elif name == "wandb":
            from lightning.pytorch.loggers import WandbLogger

            loggers.append(WandbLogger(project=wandb_project, name=f"{run_id}/{phase}", save_dir=str(log_dir),
                                       offline=True))
        else:
            raise ConfigError(f"Unknown logger '{name}' in logging.loggers. Valid choices: {', '.join(LOGGERS)}.",
                              "set logging.loggers=[csv] (or any of the choices).")
    return loggers
