"""Labelled sources (folder, csv, hf, synthetic) and unlabelled image trees, listed as :class:`Sample` rows.

Listing never decodes images; the splits phase decodes each file once and quarantines the bad ones.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

from streetvision.errors import ConfigError, DataError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})


@dataclass(frozen=True)
class Sample:
    """A labelled file: absolute path and class index (1 = positive/roadwork)."""

    path: Path
    label: int


@dataclass(frozen=True)
class HFSource:
    """A Hugging Face ``datasets`` dataset: a save_to_disk directory, a parquet file or a directory of parquet
    files (``path``); ``split`` picks one split of a DatasetDict (None: the first)."""

    path: str | None
    split: str | None
    image_column: str
    label_column: str


@dataclass
class Listing:
    """What a source found: the data root, usable candidates, and files skipped with a reason."""

    root: Path
    samples: list[Sample]
    skipped: list[dict[str, str]]


def list_images(root: Path) -> tuple[list[Path], list[Path]]:
    """Image-extension files under ``root`` (recursive, sorted, hidden skipped) and the other files."""
    images, others = [], []
    for path in sorted(root.rglob("*")):
        if not path.is_file() or any(part.startswith(".") for part in path.relative_to(root).parts):
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
    """One sub-folder per class under ``root``."""
    missing = [c for c in class_names if not (root / c).is_dir()]
    if missing:
        found = sorted(p.name for p in root.iterdir() if p.is_dir())
        raise DataError(
            f"Folder source '{root}' has no sub-folder for class(es) {missing}; found {found}.",
            "create one sub-folder per class, or set data.class_names=[negative,positive] to the folder names.",
        )
    samples, skipped = [], []
    for label, name in enumerate(class_names):
        images, others = list_images(root / name)
        samples += [Sample(p, label) for p in images]
        skipped += [{"path": str(p.relative_to(root)), "reason": "not an image extension"} for p in others]
    return Listing(root, samples, skipped)


def _parse_label(value: str, class_names: list[str], where: str) -> int:
    value = value.strip()
    if value in class_names:
        return class_names.index(value)
    if value in {"0", "1"}:
        return int(value)
    raise DataError(f"{where}: label '{value}' is not one of {class_names} or 0/1.", "fix the label column.")


def list_csv(csv_path: Path, class_names: list[str]) -> Listing:
    """A manifest with ``path,label`` columns; paths relative to the CSV's folder."""
    if not csv_path.is_file():
        raise DataError(f"CSV manifest '{csv_path}' does not exist.", "check data.csv_path.")
    root = csv_path.parent
    with open(csv_path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or not {"path", "label"} <= set(reader.fieldnames):
            raise DataError(f"CSV '{csv_path}' must have columns path,label; found {reader.fieldnames}.",
                            "rename the header row.")
        samples, skipped = [], []
        for line, row in enumerate(reader, start=2):
            path = (root / row["path"]).resolve()
            label = _parse_label(row["label"], class_names, f"{csv_path}:{line}")
            if not path.is_file():
                skipped.append({"path": row["path"], "reason": "listed in CSV but missing"})
                continue
            samples.append(Sample(path, label))
    return Listing(root, samples, skipped)


def list_hf(source: HFSource, cache_dir: Path, class_names: list[str]) -> Listing:
    """A `datasets` dataset (save_to_disk directory or parquet), its images written once into ``cache_dir``."""
    try:
        import datasets
    except ImportError as exc:
        raise ConfigError("data.source=hf needs the `datasets` library.",
                          "install the extra: pip install -e '.[hf]'.") from exc
    path = Path(source.path or "")
    if not source.path or not path.exists():
        raise ConfigError(f"data.hf.path '{source.path}' does not exist.", "set data.hf.path=PATH.")
    if path.is_file() or any(path.glob("*.parquet")):
        files = [str(path)] if path.is_file() else sorted(str(p) for p in path.glob("*.parquet"))
        ds = datasets.load_dataset("parquet", data_files=files, split="train")
    else:
        ds = datasets.load_from_disk(str(path))
        if isinstance(ds, datasets.DatasetDict):
            ds = ds[source.split or next(iter(ds))]
    for column in (source.image_column, source.label_column):
        if column not in ds.column_names:
            raise DataError(f"HF dataset has no column '{column}'; columns: {ds.column_names}.",
                            "set data.hf.image_column / data.hf.label_column.")
    ds = ds.cast_column(source.image_column, datasets.Image(decode=False))
    label_names = getattr(ds.features[source.label_column], "names", None)
    samples = []
    for i, row in enumerate(ds):
        raw = row[source.label_column]
        label = _parse_label(label_names[raw] if label_names else str(raw), class_names, f"row {i}")
        data = row[source.image_column]
        blob = data["bytes"] if data.get("bytes") is not None else Path(data["path"]).read_bytes()
        out = cache_dir / class_names[label] / f"{i:07d}_{hashlib.sha256(blob).hexdigest()[:12]}.img"
        if not out.exists():
            from streetvision.io import atomic_write_bytes

            atomic_write_bytes(out, blob)
        samples.append(Sample(out, label))
    return Listing(cache_dir, samples, [])


def folder_fingerprint(root: Path) -> str:
    """Digest of a folder's listing (relative path, size, mtime): changes when files are added or edited."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            st = path.stat()
            digest.update(f"{path.relative_to(root)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()
