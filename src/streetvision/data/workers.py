"""How many processes decode images: loader workers per training process, and the splits phase's scan pool
(``hardware.num_workers``; -1 is auto)."""

from __future__ import annotations

import os

AUTO = -1  # hardware.num_workers: one loader worker per core this process may use, less one for training
MAX_AUTO_WORKERS = 8


def usable_cpus() -> int:
    """Cores this process may run on (its CPU affinity; a container's limit shows here, not in os.cpu_count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def loader_workers(hardware, processes: int = 1) -> int:
    """DataLoader worker processes per training process: ``hardware.num_workers``, or for ``-1`` (auto) the cores
    each of ``processes`` training processes on this node gets, less the one that trains, at most 8 (0 on one
    core: loading then runs in the training process)."""
    value = int(hardware.num_workers)
    return auto_workers(processes) if value == AUTO else value


def auto_workers(processes: int = 1) -> int:
    """Loader workers for each of ``processes`` processes that also compute: their share of the usable cores less
    the one that computes, at most 8 (0 on one core)."""
    return max(0, min(MAX_AUTO_WORKERS, usable_cpus() // max(1, processes) - 1))


def scan_workers(hardware) -> int:
    """Processes that decode and hash files in the splits phase: ``hardware.num_workers``, or every usable core
    for ``-1`` (auto; nothing else runs meanwhile)."""
    value = int(hardware.num_workers)
    return usable_cpus() if value == AUTO else value
