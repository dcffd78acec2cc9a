"""Step manifests: the commit record of a phase.

A manifest names every input and output of a step (path relative to the run directory, SHA-256, size), the hash
of the config slice the step used, its metrics, library versions and the code's git commit. It is written LAST
and atomically, so if a manifest exists and ``verify()`` reports nothing, every output it names exists and is
exactly the file that the step wrote.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import subprocess
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from streetvision.errors import IntegrityError
from streetvision.io.atomic import atomic_write_json, dumps_json, read_json, sha256_file

MANIFEST_VERSION = 1
TRACKED_LIBRARIES = (
    "streetvision", "torch", "transformers", "peft", "lightning", "numpy", "pillow", "safetensors",
    "scikit-learn", "onnxruntime",
)


@dataclass(frozen=True)
class FileRecord:
    """One file: path relative to the run directory, SHA-256 and size in bytes."""

    path: str
    sha256: str
    size: int

    @classmethod
    def of(cls, file: Path, root: Path) -> FileRecord:
        """Hash ``file`` (through the memo) and record it relative to ``root``."""
        rel = os.path.relpath(file, root)
        return cls(path=Path(rel).as_posix(), sha256=sha256_stat_cached(file), size=file.stat().st_size)


def records_for(paths: list[Path], root: Path) -> list[FileRecord]:
    """FileRecords for files and for every file under directories, sorted by path; hidden temp files skipped."""
    out: list[FileRecord] = []
    for path in paths:
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
            out.extend(FileRecord.of(f, root) for f in files)
        elif path.is_file():
            out.append(FileRecord.of(path, root))
        else:
            raise IntegrityError(f"Cannot record '{path}': it does not exist.", "the step must write it first.")
    return sorted(set(out), key=lambda r: r.path)


_HASH_CACHE: dict[tuple[str, int, int, int], str] = {}
_HASHED_SINCE_SAVE = [0]  # hashes computed since the memo was last loaded or saved
MEMO_VERSION = 1
RACY_NS = 2_000_000_000  # files modified this close to a memo write are not persisted (git's "racily clean" rule)


def _stat_key(path: str | os.PathLike[str]) -> tuple[str, int, int, int]:
    absolute = os.path.abspath(path)  # no symlink resolution: another spelling of a path is only a cache miss
    st = os.stat(absolute)
    return absolute, st.st_size, st.st_mtime_ns, st.st_ino


def sha256_stat_cached(path: Path) -> str:
    """SHA-256 of a file, memoised on (path, size, mtime_ns, inode) as DVC does: re-verifying unchanged files
    (thousands of images per manifest) is a stat, while any rewrite changes the key and is re-hashed."""
    key = _stat_key(path)
    if key not in _HASH_CACHE:
        _HASH_CACHE[key] = sha256_file(path)
        _HASHED_SINCE_SAVE[0] += 1
    return _HASH_CACHE[key]


def load_hash_memo(memo: Path, root: Path) -> int:
    """Merge the memo persisted at ``memo`` (paths relative to ``root``) into the in-memory one; return how many
    entries it held. It is only a cache: a missing or malformed file counts as empty."""
    try:
        raw = read_json(memo)
        entries = raw["entries"] if raw.get("version") == MEMO_VERSION else []
        base = os.path.abspath(root)
        for rel, size, mtime_ns, inode, digest in entries:
            _HASH_CACHE[(os.path.join(base, rel), int(size), int(mtime_ns), int(inode))] = str(digest)
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return 0
    _HASHED_SINCE_SAVE[0] = 0
    return len(entries)


def save_hash_memo(memo: Path, root: Path) -> int | None:
    """Persist, atomically, the memo entries of files under ``root`` whose stat still matches (stale entries are
    dropped, recently modified files skipped, see RACY_NS); return how many were written, or None when nothing
    was hashed since the memo was loaded or saved (a no-op rerun then writes nothing)."""
    if not _HASHED_SINCE_SAVE[0] and memo.is_file():
        return None
    base = os.path.abspath(root) + os.sep
    newest = time.time_ns() - RACY_NS
    entries = []
    for key, digest in _HASH_CACHE.items():
        path, _, mtime_ns, _ = key
        if not path.startswith(base) or mtime_ns > newest:
            continue
        try:
            if _stat_key(path) != key:
                continue
        except OSError:
            continue
        entries.append([Path(path[len(base):]).as_posix(), *key[1:], digest])
    atomic_write_json(memo, {"version": MEMO_VERSION, "entries": sorted(entries)})
    _HASHED_SINCE_SAVE[0] = 0
    return len(entries)


def config_hash(config_slice: Any) -> str:
    """SHA-256 of the canonical JSON of a (plain) config slice."""
    return hashlib.sha256(dumps_json(config_slice).encode()).hexdigest()


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries that shape results."""
    versions = {}
    for name in TRACKED_LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def git_commit(cwd: Path | None = None) -> str | None:
    """The code's git commit (with ``-dirty`` when the tree has changes), or None outside a checkout."""
    here = cwd or Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=here, capture_output=True, text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{sha}-dirty" if dirty else sha


def utc_now() -> str:
    """ISO-8601 UTC timestamp."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class StepManifest:
    """The record of one completed step; see the module docstring for the invariant."""

    step: str
    status: str
    started_at: str
    finished_at: str
    config_hash: str
    inputs: list[FileRecord] = field(default_factory=list)
    outputs: list[FileRecord] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    git_commit: str | None = None
    manifest_version: int = MANIFEST_VERSION

    @classmethod
    def build(
        cls, step: str, root: Path, inputs: list[Path], outputs: list[Path], config_slice: Any,
        metrics: dict[str, Any], started_at: str,
    ) -> StepManifest:
        """Hash inputs and outputs (relative to ``root``) and fill lineage fields."""
        return cls(
            step=step, status="completed", started_at=started_at, finished_at=utc_now(),
            config_hash=config_hash(config_slice), inputs=records_for(inputs, root),
            outputs=records_for(outputs, root), metrics=metrics, versions=library_versions(),
            git_commit=git_commit(),
        )

    def save(self, path: Path) -> str:
        """Write atomically; return the SHA-256. Call after every output is written."""
        return atomic_write_json(path, asdict(self))

    @classmethod
    def load(cls, path: Path) -> StepManifest:
        """Read a manifest; raise IntegrityError naming the field when it is malformed."""
        try:
            raw = read_json(path)
            raw["inputs"] = [FileRecord(**r) for r in raw.get("inputs", [])]
            raw["outputs"] = [FileRecord(**r) for r in raw.get("outputs", [])]
            return cls(**raw)
        except (OSError, json.JSONDecodeError, TypeError, KeyError) as exc:
            raise IntegrityError(
                f"Manifest '{path}' is unreadable or malformed ({exc}).",
                "delete it and rerun the step (pipeline.force=true).",
            ) from exc

    def verify(self, root: Path) -> list[str]:
        """Re-hash every input and output under ``root``; return one line per difference (empty: all good)."""
        problems: list[str] = []
        for kind, records in (("output", self.outputs), ("input", self.inputs)):
            for rec in records:
                file = root / rec.path
                if not file.is_file():
                    problems.append(f"{kind} missing: {rec.path}")
                    continue
                size = file.stat().st_size
                if size != rec.size:
                    problems.append(f"{kind} changed: {rec.path} (size {rec.size} -> {size})")
                elif sha256_stat_cached(file) != rec.sha256:
                    problems.append(f"{kind} changed: {rec.path} (sha256 differs)")
        return problems

    def output_paths(self) -> list[str]:
        """Relative paths of all outputs."""
        return [r.path for r in self.outputs]
