"""Batch prediction over files and folders for the ``predict`` command: CSV or JSONL rows of path, probability,
decision, score, accepted, error, one row per input file in input order (folders expand to their image files,
sorted; a name that is not valid UTF-8 is written with those bytes as ``\\xNN``). A missing or unreadable file
gets a row with its error instead of stopping the batch; when nothing at all can be scored, nothing is written and
the command fails (exit 1).

Files are decoded and preprocessed in loader worker processes (``workers``; default: one per core but one, at most
8) while the model scores the previous batch; at most a few batches are in memory whatever the number of files.
A JPEG is decoded at the smallest DCT scale whose shorter side is still at least twice the model's input
(:data:`DRAFT_FACTOR`), as training decodes it: 2-3x faster on full-HD photos. That changes the pixels only for
JPEGs whose shorter side is at least four times the input (448 px for a 112 px model, 896 px for 224 px); there
the probability can differ from ``Predictor(Image.open(f))`` by about 0.01 (max 0.0135, no decision changed, on 64
full-HD scenes with the tiny preset). ``full_decode`` decodes every file at full size and returns exactly the
predictor's numbers. A validator image (224 x 224) is decoded the same either way."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Console
from torch.utils.data import DataLoader, Dataset

from streetvision.bundle.predictor import Predictor
from streetvision.console import progress
from streetvision.data.decode import DecodeError, decode_image, file_problem
from streetvision.data.preprocess import Preprocess
from streetvision.data.sources import list_images, path_text
from streetvision.errors import DataError, UsageError
from streetvision.io import atomic_write_text, csv_text
from streetvision.io.outputs import check_output_file

FIELDS = ("path", "probability", "decision", "score", "accepted", "error")
DRAFT_FACTOR = 2  # JPEGs decode at >= this many times the model's input side (as training decodes them)


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


class DecodedEntries(Dataset):
    """(position, preprocessed tensor or None, error or None) per entry; runs in loader workers."""

    def __init__(self, entries: list[Entry], preprocess: Preprocess, min_size: int | None) -> None:
        self.entries, self.preprocess, self.min_size = entries, preprocess, min_size

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor | None, str | None]:
        entry = self.entries[i]
        if entry.error:
            return i, None, entry.error
        try:
            return i, self.preprocess.to_tensor(decode_image(entry.path, min_size=self.min_size)), None
        except DecodeError as exc:
            return i, None, exc.reason


def _as_list(items: list) -> list:
    return items


def score_entries(predictor: Predictor, entries: list[Entry], batch_size: int, console: Console | None = None,
                  workers: int = 0, full_decode: bool = False) -> list[dict]:
    """One row per entry, in entry order: the prediction, or the reason it could not be scored; decoded in
    ``workers`` loader processes (module docstring: draft decoding unless ``full_decode``); a ``console`` shows a
    progress bar."""
    min_size = None if full_decode else predictor.preprocess.size * DRAFT_FACTOR
    loader = DataLoader(DecodedEntries(entries, predictor.preprocess, min_size), batch_size=batch_size,
                        num_workers=workers, collate_fn=_as_list)
    rows: list[dict] = []
    with progress("scoring images", len(entries), console) as advance:
        for batch in loader:
            scored = [(i, t) for i, t, _ in batch if t is not None]
            preds = iter(predictor.predict_tensor(torch.stack([t for _, t in scored]))) if scored else iter(())
            for i, tensor, error in batch:
                if tensor is None:
                    rows.append(_error_row(entries[i].path, error or "unreadable"))
                else:
                    rows.append({"path": path_text(entries[i].path), **next(preds).as_dict(), "error": None})
            advance(len(batch))
    return rows


def format_rows(rows: list[dict], fmt: str) -> str:
    """CSV (header + rows, empty cells for None) or JSONL."""
    if fmt == "jsonl":
        return "".join(json.dumps(r) + "\n" for r in rows)
    return csv_text(list(FIELDS), ([("" if r.get(f) is None else r[f]) for f in FIELDS] for r in rows))


def predict_files(bundle: str, paths: list[str], out: str | None, fmt: str, backend: str, batch_size: int,
                  console: Console, err_console: Console, force: bool = False, workers: int | None = None,
                  full_decode: bool = False) -> int:
    """Score every file; return 0 when at least one was scored (the others are reported), else raise DataError.
    ``workers`` None: one per core but one, at most 8."""
    from streetvision.data.workers import auto_workers

    if batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {batch_size}.", "pass e.g. --batch-size 32.")
    target = check_output_path(out, [bundle, *paths], force) if out else None
    predictor = Predictor.from_bundle(bundle, backend=backend)
    entries = collect(paths)
    workers = auto_workers() if workers is None else workers
    workers = min(workers, -(-len(entries) // batch_size))  # no idle worker processes for a handful of files
    rows = score_entries(predictor, entries, batch_size, err_console, workers, full_decode)  # bar on stderr
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
