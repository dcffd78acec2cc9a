"""The one rule for the paths a command writes at the user's request (``--out``, ``--dry-run``).

A command writes a folder only where it is new, or empty, or holds a previous output of the same command (its
marker file, ``.streetvision-output.json``, names the command and lists every file it wrote); never into a run
directory, one of the command's inputs, or a folder that holds either. Anything else is refused with exit 2 before
any work, naming the folder and the rule. A previous output of the same command is replaced only with ``--force``,
and only the files its marker lists are removed: a file someone else put there blocks it. A single output file
(``predict --out``) follows the same rule: new, or a previous output of the command (recognised by its content).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from streetvision.errors import UsageError
from streetvision.io.atomic import atomic_write_json, settle_files

OUTPUT_MARKER = ".streetvision-output.json"
# the two files every run directory holds (pipeline.artifacts names its paths from these)
RUN_CONFIG, RUN_LOCK = "config.yaml", ".lock"


def is_run_dir(path: Path) -> bool:
    """Whether ``path`` is a StreetVision run directory (``config.yaml`` and the run lock file)."""
    return (path / RUN_CONFIG).is_file() and (path / RUN_LOCK).is_file()


def _real(path: str | os.PathLike[str]) -> Path:
    return Path(os.path.realpath(os.path.abspath(path)))


def _refuse(out: Path, why: str, fix: str, flag: str = "--out") -> UsageError:
    return UsageError(f"{flag} '{out}' {why}: a command writes only into a new or empty folder, or one "
                      f"holding its own previous output (replaced with --force), never into a run directory, an "
                      f"input, or a folder that holds one.", fix)


def _check_protected(out: Path, protected: Iterable[str | os.PathLike[str]], flag: str,
                     what: str = "folder") -> None:
    """Refuse an output inside, equal to or above a protected path, or inside / above a run directory."""
    real = _real(out)
    for item in protected:
        guarded = _real(item)
        if real == guarded or guarded in real.parents:
            raise _refuse(out, f"is inside the input '{item}'", f"choose an output {what} outside it.", flag)
        if real in guarded.parents:
            raise _refuse(out, f"holds the input '{item}'", f"choose an output {what} that does not contain it.",
                          flag)
    for ancestor in (real, *real.parents):
        if is_run_dir(ancestor):
            raise _refuse(out, f"is inside the run directory '{ancestor}'",
                          f"choose an output {what} outside the run (the run's own outputs are rebuilt by "
                          f"`streetvision run` / `streetvision export RUN`).", flag)


def previous_output(folder: Path) -> dict | None:
    """The marker of a previous command output in ``folder`` (command, files), or None."""
    try:
        raw = json.loads((folder / OUTPUT_MARKER).read_text())
    except (OSError, ValueError):
        return None
    ok = isinstance(raw, dict) and isinstance(raw.get("command"), str) and isinstance(raw.get("files"), list)
    return raw if ok else None


def _files_under(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                  if (p.is_file() or p.is_symlink()) and p.name != OUTPUT_MARKER)


def check_output_dir(path: str | os.PathLike[str], command: str, protected: Iterable[str | os.PathLike[str]] = (),
                     force: bool = False, flag: str = "--out") -> Path:
    """Apply the rule (module docstring) to an output folder; UsageError (exit 2) unless ``command`` may write
    there. Returns the folder."""
    out = Path(path)
    protected = list(protected)
    _check_protected(out, protected, flag)
    if out.is_symlink() and not out.exists():
        raise _refuse(out, "is a dangling symbolic link", "pass a folder path.", flag)
    if out.exists() and not out.is_dir():
        raise _refuse(out, "is a file", "pass a folder path (new, or empty).", flag)
    if not out.is_dir() or not any(out.iterdir()):
        return out
    marker = previous_output(out)
    if marker is None:
        raise _refuse(out, "is not empty and holds no StreetVision output",
                      "pass a new or empty folder; nothing in this one is touched.", flag)
    if marker["command"] != command:
        raise _refuse(out, f"holds the output of `streetvision {marker['command']}`",
                      f"pass another folder for `streetvision {command}`.", flag)
    foreign = sorted(set(_files_under(out)) - set(marker["files"]))
    if foreign:
        raise _refuse(out, f"holds files `streetvision {command}` did not write ({', '.join(foreign[:5])})",
                      "move them away, or pass another folder.", flag)
    if not force:
        raise _refuse(out, f"holds a previous output of `streetvision {command}`",
                      "pass --force to replace it, or another folder.", flag)
    return out


@contextlib.contextmanager
def output_dir(path: str | os.PathLike[str], command: str, protected: Iterable[str | os.PathLike[str]] = (),
               force: bool = False, flag: str = "--out") -> Iterator[Path]:
    """Check the rule, remove the files of a previous output of ``command`` (``force``), yield the folder to write
    into, and record every file written there in its marker (also when the command fails, so that ``--force``
    can replace a partial output)."""
    out = check_output_dir(path, command, protected, force, flag)
    previous = previous_output(out) if out.is_dir() else None
    if previous is not None:
        for rel in previous["files"]:
            with contextlib.suppress(FileNotFoundError):
                (out / rel).unlink()
        for folder in sorted((p for p in out.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                folder.rmdir()  # only the folders the removal left empty
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / OUTPUT_MARKER, {"command": command, "complete": False, "files": []})
    complete = False
    try:
        yield out
        complete = True
    finally:
        settle_files(out)
        atomic_write_json(out / OUTPUT_MARKER, {"command": command, "complete": complete,
                                                 "files": _files_under(out)})


def check_output_file(path: str | os.PathLike[str], command: str, is_previous: Callable[[Path], bool],
                      protected: Iterable[str | os.PathLike[str]] = (), force: bool = False) -> Path:
    """The rule for a single output file: new, or (with ``force``) a previous output of ``command`` as
    ``is_previous`` recognises it; never inside or above an input or a run directory. UsageError otherwise."""
    out = Path(path)
    _check_protected(out, protected, "--out", "file")
    if out.is_dir():
        raise UsageError(f"--out '{out}' is a directory.", "pass a file path, e.g. --out predictions.csv.")
    if out.exists() or out.is_symlink():
        if not out.is_file() or not is_previous(out):
            raise UsageError(f"--out '{out}' exists and is not a previous output of `streetvision {command}`: a "
                             f"command never overwrites a file it did not write.", "pass a new file path.")
        if not force:
            raise UsageError(f"--out '{out}' holds a previous output of `streetvision {command}`.",
                             "pass --force to replace it, or a new file path.")
    return out
