"""Console hygiene for the command line: third-party noise (Lightning's tips and device banners, deprecation and
tracer warnings, transformers' weight-loading bars) is filtered here, at the CLI, never in the library; ``--verbose``
leaves everything as the libraries print it. :func:`progress` is the one progress bar of our own long loops.
Nothing heavy is imported, so a config error stays instant."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

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


def _no_advance(n: int = 1) -> None:
    """``advance`` when no bar is shown."""


@contextmanager
def progress(description: str, total: int | None, console: Console | None) -> Iterator[Callable[[int], None]]:
    """A transient progress bar of ``total`` items on ``console``; yields ``advance(n=1)``, to call as items finish.

    No bar (a no-op ``advance``) without a console, or when it is quiet or not an interactive terminal
    (``Console(force_terminal=True)`` enables one). The bar is erased when the block ends, and redirects only
    the console's own stream while it shows (stdout may carry ``predict``'s rows)."""
    if console is None or console.quiet or not console.is_interactive:
        yield _no_advance
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console, transient=True, redirect_stdout=console.file is sys.stdout,
                  redirect_stderr=console.file is sys.stderr) as bar:
        task = bar.add_task(description, total=total)

        def advance(n: int = 1) -> None:
            bar.advance(task, n)

        yield advance
