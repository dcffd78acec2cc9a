"""Atomic writers: temp file in the target's directory, flush + fsync, ``os.replace``, fsync of the directory.

A reader therefore sees either the previous file or the complete new one, never a partial write, even if the
process is killed between the write and the replace. Every writer returns the SHA-256 of what it wrote.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import math
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from streetvision.errors import IntegrityError

_CHUNK = 1 << 20
# Names of the hidden siblings the writers below create: ``.NAME.tmp-XXXX`` (file or directory being written) and
# ``.NAME.old-XXXX`` (a directory being swapped out). A process killed mid-write leaves them behind.
_TMP, _OLD = ".tmp-", ".old-"
_LEFTOVER = re.compile(rf"^\..+({re.escape(_TMP)}|{re.escape(_OLD)})[A-Za-z0-9_]+$")


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem allows opening a directory
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], fsync: bool = True) -> Iterator[Path]:
    """Yield a temp path beside ``path`` for a library that writes files itself; commit it on success.

    On an exception the temp file is removed and ``path`` keeps its previous content. ``fsync=False`` keeps
    atomicity against a crashed process but not against power loss (for regenerable bulk files).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}{_TMP}{uuid.uuid4().hex[:12]}"
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
        os.replace(tmp, target)
        if fsync:
            _fsync_dir(target.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> str:
    """Write ``data`` to ``path`` atomically; return its SHA-256."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    return sha256_bytes(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> str:
    """Write UTF-8 ``text`` atomically; return its SHA-256."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def csv_text(header: list[str], rows: Iterable[Iterable[Any]]) -> str:
    """A CSV document (header + rows) as text."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def atomic_write_csv(path: str | os.PathLike[str], header: list[str], rows: Iterable[Iterable[Any]]) -> str:
    """Write a CSV (header + rows) atomically; return its SHA-256."""
    return atomic_write_text(path, csv_text(header, rows))


def _json_safe(value: Any) -> Any:
    """Replace non-finite floats by None (strict JSON) and make containers plain."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        return _json_safe(value.item())
    if isinstance(value, Path):
        return value.as_posix()
    return value


def dumps_json(obj: Any) -> str:
    """Canonical JSON used by every artifact: sorted keys, indent 2, strict (NaN becomes null)."""
    return json.dumps(_json_safe(obj), indent=2, sort_keys=True, allow_nan=False) + "\n"


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> str:
    """Write ``obj`` as canonical JSON atomically; return its SHA-256."""
    return atomic_write_text(path, dumps_json(obj))


def atomic_write_safetensors(
    path: str | os.PathLike[str], tensors: Mapping[str, Any], metadata: Mapping[str, str] | None = None
) -> str:
    """Serialise torch tensors with safetensors and write them atomically; return the SHA-256."""
    from safetensors.torch import save

    data = save({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, metadata=dict(metadata or {}))
    return atomic_write_bytes(path, data)


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file."""
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def read_verified(path: str | os.PathLike[str], expected_sha256: str) -> bytes:
    """Read a file and check its SHA-256; raise IntegrityError naming the file on mismatch."""
    data = Path(path).read_bytes()
    actual = sha256_bytes(data)
    if actual != expected_sha256:
        raise IntegrityError(
            f"Checksum mismatch for '{path}': expected {expected_sha256[:16]}..., found {actual[:16]}...",
            "the file was modified or corrupted after it was written; regenerate it or restore it.",
        )
    return data


@contextlib.contextmanager
def replace_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a fresh temp directory beside ``path``; on success swap it in place of ``path``.

    Used for directory outputs (``save_pretrained``). Each file inside is settled (:func:`settle_files`: the
    umask's mode, fsynced); the swap is two renames,
    so a crash leaves either the old directory or the new one under ``path`` (plus a hidden leftover), and the
    phase manifest, written last, is what commits the result.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}{_TMP}", dir=target.parent))
    try:
        tmp.chmod(default_dir_mode())  # mkdtemp makes it 0700; a bundle is meant to be copied and served
        yield tmp
        settle_files(tmp)
        old = None
        if target.exists():
            old = target.parent / f".{target.name}{_OLD}{uuid.uuid4().hex[:12]}"
            os.replace(target, old)
        os.replace(tmp, target)
        _fsync_dir(target.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def settle_files(folder: Path) -> None:
    """Give every file under ``folder`` the mode the umask gives (libraries that write through temp files leave
    0600; the files a process writes are not executables) and fsync it."""
    file_mode = default_dir_mode() & 0o666
    for file in Path(folder).rglob("*"):
        if file.is_file() and not file.is_symlink():
            file.chmod(file_mode)
            with open(file, "rb+") as handle:
                os.fsync(handle.fileno())


def default_dir_mode() -> int:
    """The mode ``mkdir`` gives a new directory under the current umask (0755 under the usual 022)."""
    umask = os.umask(0o022)  # reading the umask means setting it; restored at once
    os.umask(umask)
    return 0o777 & ~umask


def remove_stale_temps(root: str | os.PathLike[str]) -> list[Path]:
    """Remove the temp files and directories that writers killed mid-write left under ``root`` (see ``_LEFTOVER``);
    return what was removed. Call it only while no writer can be active there (the runner holds the run lock)."""
    removed: list[Path] = []
    for directory, dirs, files in os.walk(root):
        for name in [d for d in dirs if _LEFTOVER.match(d)]:
            shutil.rmtree(Path(directory) / name, ignore_errors=True)
            removed.append(Path(directory) / name)
            dirs.remove(name)
        for name in files:
            if _LEFTOVER.match(name):
                with contextlib.suppress(FileNotFoundError):
                    (Path(directory) / name).unlink()
                removed.append(Path(directory) / name)
    return removed
