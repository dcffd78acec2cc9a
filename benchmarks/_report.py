"""Shared output for benchmark scripts: a JSON file in benchmarks/results/ and a markdown table on stdout."""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from streetvision.io import atomic_write_json
from streetvision.io.manifest import library_versions, utc_now

RESULTS = Path(__file__).resolve().parent / "results"


def median_seconds(fn: Callable[[], Any], repeats: int = 5, warmup: int = 1) -> tuple[float, list[float]]:
    """Median wall time of ``fn`` over ``repeats`` runs after ``warmup`` runs (and all the samples)."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples), samples


def machine_facts() -> dict[str, Any]:
    """Platform, processor and torch's thread count, as every results file records them."""
    return {"platform": platform.platform(), "processor": platform.processor(),
            "torch_threads": torch.get_num_threads()}


def print_table(rows: list[dict[str, Any]]) -> None:
    """The rows as a markdown table (columns from the first row; floats to 4 significant digits)."""
    cols = list(rows[0])
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for row in rows:
        print("| " + " | ".join(f"{row.get(c, ''):.4g}" if isinstance(row.get(c), float) else str(row.get(c, ''))
                                for c in cols) + " |")


def report(name: str, rows: list[dict[str, Any]], notes: str = "") -> Path:
    """Write results/<name>.json (rows + machine facts) and print the rows as a markdown table."""
    path = RESULTS / f"{name}.json"
    atomic_write_json(path, {
        "benchmark": name, "measured_at": utc_now(), "notes": notes, "rows": rows,
        "machine": machine_facts(), "versions": library_versions(),
    })
    print_table(rows)
    if notes:
        print(f"\n{notes}")
    print(f"\nwritten: {path}")
    return path
