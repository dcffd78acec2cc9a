"""Data preparation (auto-added before any phase that needs splits.json): list the source, decode every file
once, quarantine the bad ones, group duplicates and write ``data/data_report.json`` and ``splits.json``."""

from __future__ import annotations

from pathlib import Path
from statistics import median
from typing import Any

from omegaconf import DictConfig

from streetvision.config import SPLIT_NAMES
from streetvision.data import synthetic
from streetvision.data.hf_source import HFSource, hf_fingerprint, list_hf
from streetvision.data.sources import Listing, csv_fingerprint, folder_fingerprint, list_csv, list_folder, path_text
from streetvision.data.splits import (assign_splits, check_quality, group_duplicates, quarantine_label_conflicts, scan,
                                      write_splits)
from streetvision.io import atomic_write_json
from streetvision.models.devices import scan_workers
from streetvision.pipeline.artifacts import ArtifactSchema
from streetvision.pipeline.registry import PhaseContext, PhaseResult, phase


def list_source(cfg: DictConfig, artifacts: ArtifactSchema) -> Listing:
    """Resolve ``cfg.data`` to a listing of labelled samples."""
    data = cfg.data
    names = list(data.class_names)
    if data.source == "synthetic":
        root = artifacts.synthetic_dir
        synthetic.write_dataset(root, n=data.synthetic.n, domain=data.synthetic.domain, seed=data.synthetic.seed,
                                size=data.synthetic.image_size)
        return list_folder(root, list(synthetic.CLASS_DIRS))
    if data.source == "folder":
        from streetvision.data.sources import _require_dir

        return list_folder(_require_dir(data.root, "data.root"), names)
    if data.source == "csv":
        if not data.csv_path:
            from streetvision.errors import ConfigError

            raise ConfigError("'data.csv_path' is not set.", "pass data.csv_path=PATH.")
        return list_csv(Path(data.csv_path), names)
    return list_hf(HFSource.from_config(data.hf), artifacts.phase_dir("splits") / "hf_images", names)


def source_fingerprint(cfg: DictConfig) -> Any:
    """Detect added or edited files in a user's folder / CSV / local hf source, or a new commit of a Hub dataset
    (synthetic data is fixed by its config)."""
    data = cfg.data
    if data.source == "folder" and data.root and Path(data.root).is_dir():
        return folder_fingerprint(Path(data.root))
    if data.source == "csv" and data.csv_path and Path(data.csv_path).is_file():
        return csv_fingerprint(Path(data.csv_path))
    if data.source == "hf":
        return hf_fingerprint(HFSource.from_config(data.hf))
    return None


def warn_skipped(skipped: list[dict[str, str]], console: Any, limit: int = 10) -> None:
    """A warning per listed entry left out for a reason worth acting on (a class folder that is not in
    data.class_names, a repeated CSV row, a CSV row naming a missing file); files that are simply not images are
    only counted in the report."""
    from rich.markup import escape

    notable = [s for s in skipped if s["reason"] != "not an image extension"]
    for s in notable[:limit]:
        hint = " (rename it, or set data.class_names)" if s["path"].endswith("/") else ""
        console.print(f"[yellow]warning[/yellow]: skipped {escape(path_text(s['path']))}: {escape(s['reason'])}{hint}",
                      highlight=False)
    if len(notable) > limit:
        console.print(f"[yellow]warning[/yellow]: ... and {len(notable) - limit} more skipped (data/data_report.json, "
                      f"'skipped')", highlight=False)


def _size_stats(values: list[int]) -> dict[str, float]:
    return {"min": min(values), "median": median(values), "max": max(values)} if values else {}


@phase("splits", "decode, quarantine, de-duplicate and split the labelled data", dir="data", auto=True,
       config_keys=("data",), reads=("hardware.num_workers",), fingerprint=source_fingerprint)
def run_splits(ctx: PhaseContext) -> PhaseResult:
    """Write data_report.json and splits.json for the configured source."""
    cfg, art = ctx.cfg, ctx.artifacts
    names = list(cfg.data.class_names) if cfg.data.source != "synthetic" else list(synthetic.CLASS_DIRS)
    listing = list_source(cfg, art)
    result = scan(listing.samples, listing.root, cfg.data.max_image_pixels, ctx.console, scan_workers(cfg.hardware))
    conflicts = quarantine_label_conflicts(result, listing.root, names)
    report: dict[str, Any] = {
        "source": cfg.data.source, "data_root": art.rel(listing.root), "class_names": names,
        "found": {n: sum(s.label == k for s in listing.samples) for k, n in enumerate(names)},
        "usable": {n: sum(f.sample.label == k for f in result.ok) for k, n in enumerate(names)},
        "quarantined": result.quarantined + conflicts, "label_conflicts": len(conflicts),
        "skipped": listing.skipped,
        "image_width": _size_stats([f.width for f in result.ok]),
        "image_height": _size_stats([f.height for f in result.ok]),
    }
    atomic_write_json(art.data_report_json, report)  # written even when the checks below stop the run
    warn_skipped(listing.skipped, ctx.console)
    for q in report["quarantined"]:
        ctx.console.print(f"[yellow]quarantined[/yellow] {path_text(q['path'])}: {q['reason']}", highlight=False)
    if conflicts:
        ctx.console.print(f"[yellow]warning[/yellow]: {len(conflicts)} file(s) hold the same image under different "
                          f"labels and were quarantined (data/data_report.json, 'label_conflicts'); fix the labels.")
    check_quality(len(listing.samples), result, names, cfg.data.max_bad_fraction)

    groups = group_duplicates([f.sha256 for f in result.ok], [f.phash for f in result.ok],
                              cfg.data.near_duplicate_distance)
    labels = [f.sample.label for f in result.ok]
    fractions = {s: float(cfg.data.splits[s]) for s in SPLIT_NAMES}
    assigned = assign_splits(labels, groups, fractions, cfg.data.split_seed, names)
    rows = [{"path": listing.sample_id(f.sample.path), "label": f.sample.label,
             "split": split, "sha256": f.sha256, "group": g} for f, g, split in zip(result.ok, groups, assigned)]
    write_splits(art.splits_json, art.rel(listing.root), rows, names, fractions, cfg.data.split_seed)
    n_groups_merged = len(rows) - len(set(groups))
    report["duplicates_merged"] = n_groups_merged
    atomic_write_json(art.data_report_json, report)
    counts = {s: sum(r["split"] == s for r in rows) for s in SPLIT_NAMES}
    outputs = [art.splits_json, art.data_report_json]
    if cfg.data.source == "synthetic":
        outputs.append(art.synthetic_dir)
    return PhaseResult(
        outputs=outputs,
        metrics={"n_usable": len(rows), "n_quarantined": len(report["quarantined"]), "split_counts": counts,
                 "duplicates_merged": n_groups_merged, "label_conflicts": len(conflicts)},
        summary={"images": f"{len(rows)} usable, {len(report['quarantined'])} quarantined",
                 "splits": " / ".join(f"{s} {n}" for s, n in counts.items())},
    )
