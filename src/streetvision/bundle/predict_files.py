"""Batch prediction over files and folders for the ``predict`` command: CSV or JSONL rows of path, probability,
decision, score, accepted, error, one row per input file in input order (folders expand to their image files,
sorted; a name that is not valid UTF-8 is written with those bytes as ``\\xNN``). A missing or unreadable file
gets a row with its error instead of stopping the batch; when nothing at all can be scored, nothing is written and
the command fails (exit 1)."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Console

from streetvision.bundle.predictor import Predictor
from streetvision.console import progress
from streetvision.data.decode import DecodeError, file_problem
from streetvision.data.sources import list_images, path_text
from streetvision.errors import DataError, UsageError
from streetvision.io import atomic_write_text, csv_text
from streetvision.io.outputs import check_output_file

FIELDS = ("path", "probability", "decision", "score", "accepted", "error")


@dataclass(frozen=True)
class Entry:
    """One input file, or an input that could not be expanded to one (``error`` says why)."""

    path: Path
    error: str | None = None


def collect(paths: list[str]) -> list[Entry]:
    """Files as given and image files under folders (recursive, sorted), in input order; a path that is not a
    readable file (missing, a broken link or loop, a FIFO, empty: ``file_problem``) or a folder without images
    becomes an entry carrying the error."""
    out: list[Entry] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            images = list_images(p)[0]
            out.extend([Entry(f) for f in images] or [Entry(p, "folder has no image files")])
        else:
            out.append(Entry(p, file_problem(p)))
    return out


def is_previous_prediction(path: Path) -> bool:
    """Whether ``path`` is a previous output of ``predict`` (its CSV header, or a JSONL row of its fields)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            first = handle.readline().strip()
    except OSError:
        return False
    if first == ",".join(FIELDS):
        return True
    try:
        return list(json.loads(first)) == list(FIELDS)
    except (ValueError, TypeError):
        return False


def check_output_path(out: str, protected: list[str] | None = None, force: bool = False) -> Path:
    """Fail before any scoring when ``--out`` may not or cannot be written: the output rule
    (:func:`streetvision.io.outputs.check_output_file`: new, or a previous prediction file with ``force``; never
    inside an input), then a missing or read-only folder."""
    target = check_output_file(out, "predict", is_previous_prediction, protected or [], force)
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{target.name}.probe-", dir=target.parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UsageError(f"--out '{out}' cannot be written: {exc.strerror or exc}.",
                         "pass a path in an existing folder you can write.") from exc
    return target


def _error_row(path: Path, reason: str) -> dict:
    return {"path": path_text(path), "probability": None, "decision": None, "score": None, "accepted": None,
            "error": reason}


def score_entries(predictor: Predictor, entries: list[Entry], batch_size: int,
                  console: Console | None = None) -> list[dict]:
    """One row per entry, in entry order: the prediction, or the reason it could not be scored; a ``console``
    shows a progress bar."""
    rows: list[dict | None] = [None] * len(entries)
    with progress("scoring images", len(entries), console) as advance:
        for start in range(0, len(entries), batch_size):
            tensors, kept = [], []
            for i in range(start, min(start + batch_size, len(entries))):
                entry = entries[i]
                if entry.error:
                    rows[i] = _error_row(entry.path, entry.error)
                    continue
                try:
                    tensors.append(predictor.tensor(entry.path))
                    kept.append(i)
                except DecodeError as exc:
                    rows[i] = _error_row(entry.path, exc.reason)
            if tensors:
                for i, pred in zip(kept, predictor.predict_tensor(torch.stack(tensors))):
                    rows[i] = {"path": path_text(entries[i].path), **pred.as_dict(), "error": None}
            advance(min(batch_size, len(entries) - start))
    return [r for r in rows if r is not None]


def format_rows(rows: list[dict], fmt: str) -> str:
    """CSV (header + rows, empty cells for None) or JSONL."""
    if fmt == "jsonl":
        return "".join(json.dumps(r) + "\n" for r in rows)
    return csv_text(list(FIELDS), ([("" if r.get(f) is None else r[f]) for f in FIELDS] for r in rows))


def predict_files(bundle: str, paths: list[str], out: str | None, fmt: str, backend: str, batch_size: int,
                  console: Console, err_console: Console, force: bool = False) -> int:
    """Score every file; return 0 when at least one was scored (the others are reported), else raise DataError."""
    if batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {batch_size}.", "pass e.g. --batch-size 32.")
    target = check_output_path(out, [bundle, *paths], force) if out else None
    predictor = Predictor.from_bundle(bundle, backend=backend)
    rows = score_entries(predictor, collect(paths), batch_size, err_console)  # the bar on stderr: stdout has rows
    failed = [r for r in rows if r["error"]]
    for r in failed:
        err_console.print(f"unreadable: {r['path']}: {r['error']}", markup=False, highlight=False)
    if len(failed) == len(rows):  # every input yields a row, so ``failed`` is not empty here
        raise DataError(f"None of the {len(rows)} input file(s) could be scored (first: '{failed[0]['path']}': "
                        f"{failed[0]['error']}); nothing was written.",
                        "pass readable image files (JPEG, PNG, ...) or folders of them.")
    text = format_rows(rows, fmt)
    if target is None:
        sys.stdout.write(text)
    else:
        try:
            atomic_write_text(target, text)
        except OSError as exc:
            raise UsageError(f"--out '{out}' cannot be written: {exc.strerror or exc}.",
                             "pass a path in an existing folder you can write.") from exc
    err_console.print(f"scored {len(rows) - len(failed)} image(s), {len(failed)} unreadable", markup=False)
    return 0
