"""bundle.json: the bundle's index. Every file is listed with its relative path, SHA-256 and size; loading checks
the schema, refuses paths that escape the bundle and formats that could unpickle, and re-hashes every file.

Allowed formats: JSON, safetensors, ONNX, PNG, CSV, text. Anything else (a ``.bin``, ``.pt``, ``.pkl``, ``.ckpt``
or a file starting with a pickle opcode) is refused, so loading a bundle never runs pickle.
"""

from __future__ import annotations

import json
import re
from pathlib import Path, PurePosixPath
from typing import Any

from streetvision.errors import IntegrityError
from streetvision.io import sha256_file

BUNDLE_INDEX = "bundle.json"
SCHEMA_VERSION = 1
ALLOWED_SUFFIXES = frozenset({".json", ".safetensors", ".onnx", ".png", ".jpg", ".csv", ".txt", ".md"})
REQUIRED: dict[str, type] = {
    "schema_version": int, "files": list, "policy": dict, "class_names": list, "model": dict, "preprocess": str,
    "probes": str, "lineage": dict,
}
PICKLE_MAGIC = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05", b"PK\x03\x04")


def load_index(bundle_dir: Path) -> dict[str, Any]:
    """Read bundle.json and check its schema; errors name the field."""
    path = bundle_dir / BUNDLE_INDEX
    if bundle_dir.exists() and not bundle_dir.is_dir():
        raise IntegrityError(f"'{bundle_dir}' is a file, not a directory: not a StreetVision bundle.",
                             "point at the export/bundle directory of a run (or an export/hf folder).")
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise IntegrityError(f"'{path}' not found: not a StreetVision bundle.",
                             "point at the export/bundle directory of a run.") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise IntegrityError(f"'{path}' cannot be read ({exc.strerror if isinstance(exc, OSError) else exc}).",
                             "check its permissions, or re-export the bundle.") from exc
    except json.JSONDecodeError as exc:
        raise IntegrityError(f"'{path}' is not valid JSON ({exc}).", "re-export the bundle.") from exc
    except RecursionError as exc:  # e.g. 200,000 '[': no bundle.json we write nests more than a few levels
        raise IntegrityError(f"'{path}' is not a bundle index: its JSON nests too deeply to read.",
                             "re-export the bundle.") from exc
    if not isinstance(index, dict):
        raise IntegrityError(f"'{path}' is not a bundle index: it holds a JSON {type(index).__name__}, not an object.",
                             "re-export the bundle.")
    for key, kind in REQUIRED.items():
        if key not in index:
            raise IntegrityError(f"bundle.json: missing field '{key}'.", "re-export the bundle.")
        if not isinstance(index[key], kind):
            raise IntegrityError(f"bundle.json: field '{key}' must be a {kind.__name__}, got "
                                 f"{type(index[key]).__name__}.", "re-export the bundle.")
    if index["schema_version"] != SCHEMA_VERSION:
        raise IntegrityError(f"bundle.json: field 'schema_version' is {index['schema_version']}, this version of "
                             f"streetvision reads {SCHEMA_VERSION}.", "upgrade streetvision or re-export.")
    for i, entry in enumerate(index["files"]):
        for key, kind in (("path", str), ("sha256", str), ("size", int)):
            if not isinstance(entry, dict) or not isinstance(entry.get(key), kind):
                raise IntegrityError(f"bundle.json: field 'files[{i}].{key}' is missing or not a {kind.__name__}.",
                                     "re-export the bundle.")
    for key in ("policy_type", "policy_path"):
        if not isinstance(index["policy"].get(key), str):
            raise IntegrityError(f"bundle.json: field 'policy.{key}' is missing.", "re-export the bundle.")
    return index


def safe_member(bundle_dir: Path, rel: str) -> Path:
    """Resolve a recorded path inside the bundle; refuse absolute paths, '..' and links out of it."""
    pure = PurePosixPath(rel)
    if not rel or pure.is_absolute() or rel.startswith("\\") or re.match(r"^[A-Za-z]:", rel):
        raise IntegrityError(f"bundle.json lists an absolute path '{rel}'.", "bundle paths must be relative.")
    if ".." in pure.parts:
        raise IntegrityError(f"bundle.json lists a path that escapes the bundle: '{rel}'.",
                             "bundle paths must stay inside the bundle directory.")
    root = bundle_dir.resolve()
    resolved = (root / rel).resolve()
    if not resolved.is_relative_to(root):
        raise IntegrityError(f"'{rel}' resolves outside the bundle (a link?).", "remove the link.")
    return resolved


def check_format(path: Path, rel: str) -> None:
    """Refuse formats that could carry a pickle."""
    if path.suffix.lower() not in ALLOWED_SUFFIXES:
        raise IntegrityError(f"'{rel}' has a disallowed format ({path.suffix or 'no extension'}); bundles hold only "
                             f"{', '.join(sorted(ALLOWED_SUFFIXES))}.", "remove it: weights must be safetensors.")
    with open(path, "rb") as handle:
        head = handle.read(4)
    if path.suffix.lower() != ".onnx" and any(head.startswith(m) for m in PICKLE_MAGIC):
        raise IntegrityError(f"'{rel}' looks like a pickle / torch.save payload.", "remove it; never unpickle.")
    if path.suffix.lower() == ".safetensors":
        check_safetensors_header(path, rel)


def check_safetensors_header(path: Path, rel: str) -> None:
    """A safetensors file starts with an 8-byte little-endian header length, then that many bytes of a JSON
    object; anything else (a pickle under a .safetensors name, random bytes) is refused, naming the file."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        length = int.from_bytes(handle.read(8), "little") if size >= 8 else -1
        header = handle.read(length) if 0 < length <= size - 8 else b""
    try:
        ok = isinstance(json.loads(header), dict) if header else False
    except ValueError:
        ok = False
    if not ok:
        raise IntegrityError(f"'{rel}' is not a safetensors file (its header is not a length-prefixed JSON object).",
                             "restore the original file or re-export the bundle; weights must be safetensors.")


def check_files(bundle_dir: Path, index: dict[str, Any]) -> int:
    """Check every listed file (path safety, format, size, SHA-256) and that nothing unlisted is present.
    Returns the number of files checked; raises IntegrityError naming the first bad file."""
    listed = set()
    for entry in index["files"]:
        rel = entry["path"]
        path = safe_member(bundle_dir, rel)
        if not path.is_file():
            raise IntegrityError(f"'{rel}' is listed in bundle.json but missing.", "restore it or re-export.")
        check_format(path, rel)
        if path.stat().st_size != entry["size"] or sha256_file(path) != entry["sha256"]:
            raise IntegrityError(f"'{rel}' does not match its SHA-256 in bundle.json (modified or corrupted).",
                                 "restore the original file or re-export the bundle.")
        listed.add(path)
    for path in bundle_dir.resolve().rglob("*"):
        if path.is_file() and path.name != BUNDLE_INDEX and path not in listed:
            rel = path.relative_to(bundle_dir.resolve()).as_posix()
            raise IntegrityError(f"'{rel}' is in the bundle but not listed in bundle.json.",
                                 "remove it, or re-export the bundle.")
    check_class_names(bundle_dir, index)
    return len(listed)


def check_class_names(bundle_dir: Path, index: dict[str, Any]) -> None:
    """bundle.json's class_names must be the model's (its checksummed model.json): bundle.json is not covered by
    its own checksums, and swapped names would invert what every score means."""
    rel = f"{index['model']['dir'].rstrip('/')}/model.json"
    try:
        model_names = json.loads(safe_member(bundle_dir, rel).read_text())["class_names"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise IntegrityError(f"'{rel}' is missing or has no class_names ({exc}).", "re-export the bundle.") from exc
    if list(index["class_names"]) != list(model_names):
        raise IntegrityError(f"bundle.json's class_names {list(index['class_names'])} differ from the model's "
                             f"{list(model_names)} ('{rel}'): the negative and positive class would be misread.",
                             "restore bundle.json or re-export the bundle.")
