"""An exclusive lock on a run directory (``fcntl.flock``: released by the OS even if the holder crashes)."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from streetvision.errors import LockError


@contextlib.contextmanager
def run_lock(lock_file: Path) -> Iterator[None]:
    """Hold the lock for the duration of the block; raise LockError naming the holder's pid if taken."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            raise LockError(
                f"Run directory '{lock_file.parent}' is in use by another streetvision process (pid {holder}).",
                "wait for it to finish, or choose another run_id=...",
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the flock
