"""Labelled sources (folder, csv; hf in :mod:`streetvision.data.hf_source`) and unlabelled image trees, listed as
:class:`Sample` rows.

Listing never decodes images; the splits phase decodes each file once and quarantines the bad ones.
"""

from __future__ import annotations

import csv
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from streetvision.errors import ConfigError, DataError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})


@dataclass(frozen=True)
class Sample:
    """A labelled file: absolute path, class index (1 = positive/roadwork) and the name of its source."""

    path: Path
    label: int
    source: str = "real"


@dataclass
class Listing:
    """What a source found: the data root, usable candidates, and files skipped with a reason."""

    root: Path
    samples: list[Sample]
    skipped: list[dict[str, str]]

    def sample_id(self, path: Path) -> str:
        """``path`` relative to ``root`` (POSIX); with ``..`` segments for a CSV row that points outside it."""
        return Path(os.path.relpath(path, self.root)).as_posix()


def merge_listings(listings: dict[str, Listing]) -> Listing:
    """Several sources' listings (by source name) as one: its root the deepest folder holding every root (sample
    ids stay unique and relative), each sample tagged with its source, skipped entries prefixed ``name:``."""
    if len(listings) == 1:
        name, listing = next(iter(listings.items()))
        return Listing(listing.root, [replace(s, source=name) for s in listing.samples], listing.skipped)
    root = Path(os.path.commonpath([str(listing.root.absolute()) for listing in listings.values()]))
    samples = [replace(s, source=name) for name, listing in listings.items() for s in listing.samples]
    skipped = [dict(entry, path=f"{name}:{entry['path']}") for name, listing in listings.items()
               for entry in listing.skipped]
    return Listing(root, samples, skipped)


def path_text(path: str | os.PathLike[str]) -> str:
    """A file path as text that every UTF-8 writer (CSV, JSON, the console) accepts: unchanged when the name is
    valid UTF-8; else each byte that is not (Python keeps it as a lone surrogate) written as ``\\xNN``."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def list_images(root: Path) -> tuple[list[Path], list[Path]]:
    """Image-extension entries under ``root`` (recursive, sorted, hidden skipped) and the other files. Entries that
    are not regular files (a FIFO, a broken link, a symlink loop) are listed too, so that decoding names what is
    wrong with them (``data.decode.file_problem``) instead of their vanishing; directories are not."""
    images, others = [], []
    for path in sorted(root.rglob("*")):
        if path.is_dir() or any(part.startswith(".") for part in path.relative_to(root).parts):
            continue
        (images if path.suffix.lower() in IMAGE_EXTENSIONS else others).append(path)
    return images, others


def _require_dir(value: str | None, key: str) -> Path:
    if not value:
        raise ConfigError(f"'{key}' is not set.", f"pass {key}=PATH on the command line.")
    path = Path(value).expanduser()
    if not path.is_dir():
        raise DataError(f"'{key}' points to '{path}', which is not a directory.", f"check {key}.")
    return path


def list_folder(root: Path, class_names: list[str]) -> Listing:
    """One sub-folder per class under ``root``; any other (non-hidden) sub-folder is listed in ``skipped`` with
    the number of images it holds, which are not used."""
    missing = [c for c in class_names if not (root / c).is_dir()]
    folders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if missing:
        raise DataError(
            f"Folder source '{root}' has no sub-folder for class(es) {missing}; found {folders}.",
            f"create one sub-folder per class under '{root}', named {', '.join(class_names)}, each holding its "
            f"images (to train on other folder names, set data.class_names=[negative,positive] to them).",
        )
    samples, skipped = [], []
    for label, name in enumerate(class_names):
        images, others = list_images(root / name)
        samples += [Sample(p, label) for p in images]
        skipped += [{"path": str(p.relative_to(root)), "reason": "not an image extension"} for p in others]
    for name in (f for f in folders if f not in class_names):
        n = len(list_images(root / name)[0])
        skipped.append({"path": f"{name}/", "reason": f"not a class folder (the classes are {class_names}): its {n} "
                                                      f"image file(s) are not used"})
    return Listing(root, samples, skipped)


def _parse_label(value: str, class_names: list[str], where: str) -> int:
    value = value.strip()
    if value in class_names:
        return class_names.index(value)
    if value in {"0", "1"}:
        return int(value)
    raise DataError(f"{where}: label '{value}' is not one of {class_names} or 0/1.", "fix the label column.")


def _csv_rows(csv_path: Path) -> Iterator[tuple[int, str, str]]:
    """(line, path, label) of each row of a ``path,label`` manifest (UTF-8, a byte-order mark allowed, as
    spreadsheets write it); DataError naming the file (and line) when it cannot be read that way."""
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            if not reader.fieldnames or not {"path", "label"} <= set(reader.fieldnames):
                raise DataError(f"CSV '{csv_path}' must have columns path,label; found {reader.fieldnames}.",
                                "rename the header row.")
            for line, row in enumerate(reader, start=2):
                if row["path"] is None or row["label"] is None:
                    raise DataError(f"{csv_path}:{line}: the row has no path or no label.",
                                    "give every row a path and a label.")
                yield line, row["path"], row["label"]
    except UnicodeDecodeError as exc:
        raise DataError(f"CSV '{csv_path}' is not UTF-8 text ({exc.reason} at byte {exc.start}).",
                        "save it as UTF-8 (spreadsheets: CSV UTF-8).") from exc


def _csv_target(root: Path, listed: str) -> Path:
    """The file a CSV row names: relative to the CSV's folder (absolute paths as they are), links resolved."""
    try:
        return (root / listed).resolve()
    except (OSError, RuntimeError):  # a symlink loop: kept unresolved, for decoding to report
        return Path(os.path.abspath(root / listed))


def list_csv(csv_path: Path, class_names: list[str]) -> Listing:
    """A manifest with ``path,label`` columns; paths relative to the CSV's folder (they may leave it, e.g.
    ``../images/a.png``, or be absolute). A row repeating an earlier row's file and label is skipped with the
    reason; the same file under two labels stays listed twice, for the splits phase to quarantine as a conflict."""
    if not csv_path.is_file():
        raise DataError(f"CSV manifest '{csv_path}' does not exist.", "check data.csv_path.")
    root = csv_path.parent
    samples, skipped = [], []
    first: dict[tuple[Path, int], int] = {}
    for line, listed, value in _csv_rows(csv_path):
        path = _csv_target(root, listed)
        label = _parse_label(value, class_names, f"{csv_path}:{line}")
        if not os.path.lexists(path):
            skipped.append({"path": listed, "reason": "listed in CSV but missing"})
            continue
        earlier = first.setdefault((path, label), line)
        if earlier != line:
            skipped.append({"path": listed, "reason": f"duplicate row: line {line} repeats line {earlier} (same file "
                                                      f"and label), counted once"})
            continue
        samples.append(Sample(path, label))
    return Listing(root, samples, skipped)


def csv_fingerprint(csv_path: Path) -> str:
    """:func:`folder_fingerprint` of the CSV's folder, plus the size and mtime of every listed file outside it (rows
    may point there), so that editing one of those files is noticed too."""
    root = csv_path.parent
    digest = folder_fingerprint(root)
    try:
        inside = root.resolve()
        outside = sorted({t for _, listed, _ in _csv_rows(csv_path) if not (t := _csv_target(root, listed))
                          .is_relative_to(inside) and t.is_file()})
    except (DataError, OSError):
        return digest  # the splits phase reports an unreadable CSV
    if not outside:
        return digest
    extra = hashlib.sha256(digest.encode())
    for path in outside:
        st = path.stat()
        extra.update(f"{path}|{st.st_size}|{st.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
    return extra.hexdigest()


def folder_fingerprint(root: Path) -> str:
    """Digest of a folder's listing (relative path, size, mtime): changes when files are added or edited (a name
    that is not valid UTF-8 is hashed as its bytes)."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            st = path.stat()
            line = f"{path.relative_to(root)}|{st.st_size}|{st.st_mtime_ns}\n"
            digest.update(line.encode("utf-8", "surrogateescape"))
    return digest.hexdigest()
