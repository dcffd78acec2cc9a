"""Console hygiene for the command line: third-party noise (Lightning's tips and device banners, deprecation and
tracer warnings, transformers' weight-loading bars) is filtered here, at the CLI, never in the library; ``--verbose``
leaves everything as the libraries print it. Nothing heavy is imported, so a config error stays instant."""

from __future__ import annotations

import logging
import os
import warnings

# (category, message regex) of warnings that say nothing about the user's run; messages instead of classes such as
# torch.jit.TracerWarning, whose import would cost a second before every command
NOISY_WARNINGS: tuple[tuple[type[Warning], str], ...] = (
    (FutureWarning, ""),
    (DeprecationWarning, ""),
    (Warning, r".*does not have many workers"),
    (Warning, r".*isinstance\(treespec, LeafSpec\)"),
    (Warning, r"(Converting a tensor to a Python|Iterating over a tensor|torch\.tensor results are registered"
              r"|Converting a tensor to a NumPy)"),  # ONNX export's TracerWarnings
)
# Lightning sets the level of "lightning.pytorch" when it is imported but leaves these children alone; they carry
# its device banners ("GPU available ..."), tips ("litlogger") and loop notes ("`Trainer.fit` stopped ...")
QUIET_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero",
                 "lightning.pytorch.accelerators.cuda", "lightning.fabric.accelerators.cuda")


def quiet_third_party() -> None:
    """Hide third-party warnings, Lightning's info lines and transformers' progress bars for this process (and
    deprecation warnings in processes it spawns, through PYTHONWARNINGS)."""
    for category, message in NOISY_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
    os.environ.setdefault("PYTHONWARNINGS", "ignore::FutureWarning,ignore::DeprecationWarning")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # read when transformers is imported
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # the "Loading weights" bar
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
