"""Batch prediction over files and folders for the ``predict`` command: CSV or JSONL rows of path, probability,
decision, score, accepted; unreadable files are reported (and kept as rows with an error) instead of stopping."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import Progress

from streetvision.bundle.predictor import Predictor
from streetvision.data.decode import DecodeError
from streetvision.data.sources import list_images
from streetvision.errors import DataError
from streetvision.io import atomic_write_text

FIELDS = ("path", "probability", "decision", "score", "accepted", "error")


def collect(paths: list[str]) -> list[Path]:
    """Files as given, and image files under folders (recursive)."""
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            out.extend(list_images(p)[0])
        elif p.exists():
            out.append(p)
        else:
            raise DataError(f"'{raw}' does not exist.", "pass image files or folders.")
    return out


def predict_files(bundle: str, paths: list[str], out: str | None, fmt: str, backend: str, batch_size: int,
                  console: Console, err_console: Console) -> int:
    """Score every file; return 0 (unreadable files are reported, not fatal)."""
    predictor = Predictor.from_bundle(bundle, backend=backend)
    files = collect(paths)
    rows: list[dict] = []
    errors: list[tuple[str, str]] = []
    with Progress(console=err_console, disable=len(files) < 64, transient=True) as progress:
        task = progress.add_task("scoring", total=len(files))
        for start in range(0, len(files), batch_size):
            chunk = files[start:start + batch_size]
            tensors, kept = [], []
            for f in chunk:
                try:
                    tensors.append(predictor.tensor(f))
                    kept.append(f)
                except DecodeError as exc:
                    errors.append((str(f), exc.reason))
                    rows.append({"path": str(f), "probability": None, "decision": None, "score": None,
                                 "accepted": None, "error": exc.reason})
            if tensors:
                for f, pred in zip(kept, predictor.predict_tensor(torch.stack(tensors))):
                    rows.append({"path": str(f), **pred.as_dict(), "error": None})
            progress.advance(task, len(chunk))
    if fmt == "jsonl":
        text = "".join(json.dumps(r) + "\n" for r in rows)
    else:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows({k: ("" if v is None else v) for k, v in r.items()} for r in rows)
        text = buf.getvalue()
    if out:
        atomic_write_text(out, text)
    else:
        sys.stdout.write(text)
    for path, reason in errors:
        err_console.print(f"unreadable: {path}: {reason}", markup=False, highlight=False)
    err_console.print(f"scored {len(rows) - len(errors)} image(s), {len(errors)} unreadable", markup=False)
    return 0
