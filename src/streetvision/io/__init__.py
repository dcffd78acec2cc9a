"""Crash-safe file IO (atomic writers with checksums) and step manifests. Nothing ML-specific lives here."""

from streetvision.io.atomic import (
    atomic_path,
    atomic_write_csv,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_safetensors,
    atomic_write_text,
    csv_text,
    read_json,
    read_verified,
    remove_stale_temps,
    replace_dir,
    sha256_bytes,
    sha256_file,
)
from streetvision.io.manifest import FileRecord, StepManifest, config_hash

__all__ = [
    "FileRecord",
    "StepManifest",
    "atomic_path",
    "atomic_write_csv",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_safetensors",
    "atomic_write_text",
    "config_hash",
    "csv_text",
    "read_json",
    "read_verified",
    "remove_stale_temps",
    "replace_dir",
    "sha256_bytes",
    "sha256_file",
]
