"""Shared pieces of the robustness suites: the CLI called as a user would, snapshots that prove nothing valid
changed, and a bundle editor that re-hashes bundle.json after an edit (so only deeper checks can catch it)."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from streetvision.cli import main
from streetvision.io import sha256_file

LEFTOVER = re.compile(r"^\..+\.(tmp|old)-[A-Za-z0-9_]+$")


@dataclass
class CliResult:
    """Exit code and captured output of one command."""

    code: int
    out: str
    err: str

    @property
    def error_lines(self) -> list[str]:
        """The lines of the one-paragraph error message (each starts with 'streetvision ')."""
        return [line for line in self.err.splitlines() if line.startswith("streetvision ")]


def cli(capfd, *args: str) -> CliResult:
    """Run ``streetvision ARGS`` in this process (as ``main`` does for the console script) and capture its
    output at the file-descriptor level, so library warnings are seen too. An exception escaping ``main`` (the
    traceback a user would see) fails the calling test."""
    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:  # argparse reports argument errors this way (exit 2)
        code = int(exc.code or 0)
    captured = capfd.readouterr()
    result = CliResult(code, captured.out, captured.err)
    assert "Traceback" not in result.out + result.err, result.err
    return result


def snapshot(root: Path) -> dict[str, str]:
    """SHA-256 of every file under ``root`` (hidden bookkeeping files such as the lock and hash memo aside)."""
    if not root.exists():
        return {}
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and not p.name.startswith(".")}


def leftovers(root: Path) -> list[str]:
    """Hidden temp files or directories of atomic writers under ``root``."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if LEFTOVER.match(p.name))


def rehash(bundle: Path) -> None:
    """Rewrite bundle.json so every listed file's SHA-256 and size match the files as they are now."""
    index = json.loads((bundle / "bundle.json").read_text())
    for entry in index["files"]:
        path = bundle / entry["path"]
        entry["sha256"], entry["size"] = sha256_file(path), path.stat().st_size
    (bundle / "bundle.json").write_text(json.dumps(index))
