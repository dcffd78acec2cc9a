"""Data preparation (auto-added before any phase that needs splits.json): list the source, decode every file
once, quarantine the bad ones, group duplicates and write ``data/data_report.json`` and ``splits.json``."""

from __future__ import annotations

from pathlib import Path
from statistics import median
from typing import Any

from omegaconf import DictConfig

from streetvision.config import SPLIT_NAMES, data_sources
from streetvision.data import synthetic
from streetvision.data.hf_source import HFSource, hf_fingerprint, list_hf
from streetvision.data.sources import (Listing, csv_fingerprint, folder_fingerprint, list_csv, list_folder,
                                      merge_listings, path_text)
from streetvision.data.splits import (assign_splits, check_quality, group_duplicates, quarantine_label_conflicts, scan,
                                      write_splits)
from streetvision.errors import ConfigError
from streetvision.io import atomic_write_json
from streetvision.data.workers import scan_workers
from streetvision.pipeline.artifacts import ArtifactSchema
from streetvision.pipeline.registry import PhaseContext, PhaseResult, phase


def list_one(spec: Any, names: list[str], artifacts: ArtifactSchema, cache: str, key: str = "data") -> Listing:
    """One source's listing: ``spec`` is ``cfg.data`` or an item of ``data.sources`` (keys source, root, csv_path,
    hf); an hf source writes its images under ``data/<cache>``."""
    if spec.source == "folder":
        from streetvision.data.sources import _require_dir

        return list_folder(_require_dir(spec.root, f"{key}.root"), names)
    if spec.source == "csv":
        if not spec.csv_path:
            from streetvision.errors import ConfigError

            raise ConfigError(f"'{key}.csv_path' is not set.", f"pass {key}.csv_path=PATH.")
        return list_csv(Path(spec.csv_path), names)
    return list_hf(HFSource.from_config(spec.hf), artifacts.phase_dir("splits") / cache, names)


def list_source(cfg: DictConfig, artifacts: ArtifactSchema) -> Listing:
    """Resolve ``cfg.data`` (data.source and every item of data.sources) to one listing of labelled samples, each
    tagged with its source's name (:func:`streetvision.config.data_sources`)."""
    data = cfg.data
    names = list(data.class_names)
    listings = {}
    for i, tagged in enumerate(data_sources(data)):
        if tagged.spec.source == "synthetic":
            root = artifacts.synthetic_dir
            synthetic.write_dataset(root, n=data.synthetic.n, domain=data.synthetic.domain,
                                    seed=data.synthetic.seed, size=data.synthetic.image_size)
            listings[tagged.name] = list_folder(root, list(synthetic.CLASS_DIRS))
        else:
            listings[tagged.name] = list_one(tagged.spec, names, artifacts, "hf_images" if i == 0 else
                                             f"hf_images_{tagged.name}", tagged.key)
    return merge_listings(listings)


def _fingerprint_one(spec: Any) -> Any:
    if spec.source == "folder" and spec.root and Path(spec.root).is_dir():
        return folder_fingerprint(Path(spec.root))
    if spec.source == "csv" and spec.csv_path and Path(spec.csv_path).is_file():
        return csv_fingerprint(Path(spec.csv_path))
    if spec.source == "hf":
        return hf_fingerprint(HFSource.from_config(spec.hf))
    return None


def source_fingerprint(cfg: DictConfig) -> Any:
    """Detect added or edited files in a user's folder / CSV / local hf source, or a new commit of a Hub dataset
    (synthetic data is fixed by its config); with data.sources, one entry per source."""
    try:
        found = [_fingerprint_one(t.spec) for t in data_sources(cfg.data)]
    except ConfigError:  # the phase reports it when it runs; the config hash already tells the change
        return None
    return found[0] if len(found) == 1 else found


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
    kinds = {t.name: t.kind for t in data_sources(cfg.data)}
    if len(kinds) > 1:
        report["sources"] = {name: {"kind": kind, "usable": {n: sum(f.sample.label == k and f.sample.source == name
                                                                    for f in result.ok) for k, n in enumerate(names)}}
                             for name, kind in kinds.items()}
    atomic_write_json(art.data_report_json, report)  # written even when the checks below stop the run
    warn_skipped(listing.skipped, ctx.console)
    for name, facts in report.get("sources", {}).items():
        missing = [n for n, count in facts["usable"].items() if count == 0]
        if missing:
            ctx.console.print(f"[yellow]warning[/yellow]: source '{name}' ({facts['kind']}) has no usable image of "
                              f"class(es) {missing}: its metrics cover the other class only "
                              f"(data/data_report.json, 'sources').", highlight=False)
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
    sources = [f.sample.source for f in result.ok]
    assigned = assign_splits(labels, groups, fractions, cfg.data.split_seed, names, sources)
    rows = [{"path": listing.sample_id(f.sample.path), "label": f.sample.label, "split": split, "sha256": f.sha256,
             "group": g, "source": f.sample.source} for f, g, split in zip(result.ok, groups, assigned)]
    write_splits(art.splits_json, art.rel(listing.root), rows, names, fractions, cfg.data.split_seed, kinds)
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
