"""Leak-proof splits: decode every file once (quarantining bad ones), group exact and near duplicates, then
assign whole groups to ``train / val_select / val_calib / test`` stratified by class with a fixed seed.
:func:`assign_folds` cuts files into K folds the same way (whole groups, stratified, seeded) for cross-fitting
and cross-validation, and :func:`fold_splits` is the view of a splits file that trains one fold's model.

``splits.json`` records each file's path (relative to ``data_root``, itself relative to the run directory),
label, split, SHA-256 and duplicate group, plus a digest of the whole; :func:`load_splits` re-checks the digest
and that no file or content appears in two splits.
"""

from __future__ import annotations

import contextlib
from collections import Counter
import hashlib
import itertools
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import imagehash
import numpy as np
from PIL import Image

from streetvision.config import SPLIT_NAMES
from streetvision.console import progress
from streetvision.data.decode import EXIF_ORIENTATION, DecodeError, decode_image
from streetvision.data.sources import Sample
from streetvision.errors import DataError
from streetvision.io import atomic_write_json, read_json, sha256_file
from streetvision.io.atomic import dumps_json

if TYPE_CHECKING:
    from rich.console import Console

SPLITS_VERSION = 1


@dataclass
class ScannedFile:
    """A sample that decoded: content hash, 64-bit perceptual hash, size."""

    sample: Sample
    sha256: str
    phash: int
    width: int
    height: int


@dataclass
class ScanResult:
    """Usable files, files that failed to decode and files whose content carries conflicting labels (with reasons)."""

    ok: list[ScannedFile] = field(default_factory=list)
    quarantined: list[dict[str, Any]] = field(default_factory=list)
    conflicts: list[dict[str, Any]] = field(default_factory=list)


HASH_SIDE = 256  # the perceptual hash reads a thumbnail of at most this side
PARALLEL_FROM = 256  # fewer files are scanned in this process: starting worker processes costs more


def scan_file(path: str, max_pixels: int) -> tuple[str, int, int, int] | str:
    """(SHA-256, 64-bit perceptual hash, width, height) of one image file, or the reason it is unusable. A JPEG is
    decoded at the smallest DCT scale that keeps HASH_SIDE pixels (its whole entropy-coded stream is still read, so
    a truncated or corrupt file is still refused), anything else in full."""
    try:
        img = decode_image(path, min_size=HASH_SIDE, max_pixels=max_pixels)
        with Image.open(path) as header:  # the full size, in the orientation the image is shown in
            width, height = header.size
            if header.getexif().get(EXIF_ORIENTATION, 1) in (5, 6, 7, 8):
                width, height = height, width
        img.thumbnail((HASH_SIDE, HASH_SIDE))
        phash = int(str(imagehash.phash(img)), 16)
    except DecodeError as exc:
        return exc.reason
    except OSError as exc:  # the header read again after a successful decode: the file changed meanwhile
        return f"unreadable: {exc}"
    return sha256_file(path), phash, width, height


def scan(samples: list[Sample], root: Path, max_pixels: int, console: Console | None = None,
         workers: int = 0) -> ScanResult:
    """Decode and hash each sample once (:func:`scan_file`), in ``workers`` processes when there are many; quarantine
    what fails, with the reason. A ``console`` shows a progress bar (:func:`streetvision.console.progress`)."""
    result = ScanResult()
    paths = [str(sample.path) for sample in samples]
    with contextlib.ExitStack() as stack:
        if workers > 1 and len(samples) >= PARALLEL_FROM:
            pool = stack.enter_context(ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")))
            scanned = pool.map(scan_file, paths, itertools.repeat(max_pixels), chunksize=16)
        else:
            scanned = map(scan_file, paths, itertools.repeat(max_pixels))
        with progress("decoding and hashing images", len(samples), console) as advance:
            for sample, outcome in zip(samples, scanned):
                if isinstance(outcome, str):
                    rel = Path(os.path.relpath(sample.path, root)).as_posix()
                    result.quarantined.append({"path": rel, "label": sample.label, "reason": outcome})
                else:
                    result.ok.append(ScannedFile(sample, *outcome))
                advance()
    return result


def quarantine_label_conflicts(result: ScanResult, root: Path, class_names: list[str]) -> list[dict[str, Any]]:
    """Move every copy of an image (same SHA-256) that appears under more than one label from ``ok`` to
    ``conflicts``, with the reason naming the other copies; return the conflicts. Training on both labels of one
    image teaches nothing but noise, and no split can hold it without contradicting itself."""
    by_sha: dict[str, list[ScannedFile]] = {}
    for f in result.ok:
        by_sha.setdefault(f.sha256, []).append(f)
    bad = {sha for sha, copies in by_sha.items() if len({c.sample.label for c in copies}) > 1}
    if not bad:
        return []
    rel = {id(f): Path(os.path.relpath(f.sample.path, root)).as_posix() for f in result.ok}
    for f in result.ok:
        if f.sha256 in bad:
            others = [f"{rel[id(c)]} ({class_names[c.sample.label]})" for c in by_sha[f.sha256] if c is not f]
            result.conflicts.append({"path": rel[id(f)], "label": f.sample.label,
                                     "reason": f"conflicting labels: the same image is also {', '.join(others)}"})
    result.ok = [f for f in result.ok if f.sha256 not in bad]
    return result.conflicts


def check_quality(n_found: int, result: ScanResult, class_names: list[str], max_bad_fraction: float) -> None:
    """Stop with a clear error when too many files are bad or a class is left empty."""
    bad = len(result.quarantined)
    if n_found == 0:
        raise DataError("The data source contains no image files.", "check data.source and its path.")
    if bad / n_found > max_bad_fraction:
        reasons = sorted({q["reason"].split(":")[0] for q in result.quarantined})
        examples = ", ".join(q["path"] for q in result.quarantined[:3])
        raise DataError(
            f"{bad} of {n_found} files ({bad / n_found:.0%}) could not be decoded, above data.max_bad_fraction="
            f"{max_bad_fraction}, e.g. {examples}. Reasons: {'; '.join(reasons)}.",
            "fix or remove the files listed in data/data_report.json, or raise data.max_bad_fraction.",
        )
    for label, name in enumerate(class_names):
        if not any(f.sample.label == label for f in result.ok):
            raise DataError(f"Class '{name}' has no usable images.", f"add images of class '{name}'.")


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


HASH_BITS = 64


def _chunk_keys(hashes: np.ndarray, n_chunks: int) -> list[np.ndarray]:
    """The 64-bit hashes cut into ``n_chunks`` bit ranges of (nearly) equal width, one key array per range."""
    bounds = np.linspace(0, HASH_BITS, n_chunks + 1).astype(int)
    return [(hashes >> np.uint64(lo)) & np.uint64((1 << (hi - lo)) - 1) for lo, hi in zip(bounds[:-1], bounds[1:])]


def near_duplicate_pairs(phashes: list[int], max_distance: int) -> list[tuple[int, int]]:
    """Edges (i, j) that connect every file to its near duplicates (Hamming distance <= ``max_distance``): the same
    connected components as comparing every pair, found by multi-index hashing. Cut into ``max_distance + 1`` bit
    ranges, two hashes that close agree on at least one range (pigeonhole), so a file's candidates are the files
    sharing one of its range values. A breadth-first walk takes each file into a component once and drops taken
    files from the buckets it reads, so a burst of near-identical frames costs about one pass, not all pairs."""
    n = len(phashes)
    if max_distance < 0 or n < 2:
        return []
    hashes = np.array(phashes, dtype=np.uint64)
    n_chunks = min(max_distance + 1, HASH_BITS)
    buckets: list[dict[int, np.ndarray]] = []
    keys = _chunk_keys(hashes, n_chunks)
    for key in keys:
        order = np.argsort(key, kind="stable")
        values, starts = np.unique(key[order], return_index=True)
        buckets.append(dict(zip(values.tolist(), np.split(order, starts[1:]))))
    taken = np.zeros(n, dtype=bool)
    edges: list[tuple[int, int]] = []
    for start in range(n):
        if taken[start]:
            continue
        taken[start] = True
        queue = [start]
        while queue:
            i = queue.pop()
            found = []
            for chunk, key in enumerate(keys):
                value = int(key[i])
                members = buckets[chunk][value]
                members = members[~taken[members]]
                buckets[chunk][value] = members  # taken files never come back: later reads are shorter
                found.append(members)
            candidates = np.unique(np.concatenate(found))
            hits = candidates[np.bitwise_count(hashes[candidates] ^ hashes[i]) <= max_distance]
            taken[hits] = True
            edges += [(i, int(j)) for j in hits]
            queue += hits.tolist()
    return edges


def group_duplicates(sha256s: list[str], phashes: list[int], max_distance: int) -> list[int]:
    """Group id per file (numbered by first appearance): exact duplicates (same SHA-256) and near duplicates
    (perceptual-hash Hamming distance <= max_distance, transitively: :func:`near_duplicate_pairs`)."""
    n = len(sha256s)
    uf = _UnionFind(n)
    first: dict[str, int] = {}
    for i, digest in enumerate(sha256s):
        if digest in first:
            uf.union(first[digest], i)
        else:
            first[digest] = i
    for i, j in near_duplicate_pairs(phashes, max_distance):
        uf.union(i, j)
    roots = [uf.find(i) for i in range(n)]
    remap = {r: k for k, r in enumerate(dict.fromkeys(roots))}
    return [remap[r] for r in roots]


def assign_splits(labels: list[int], groups: list[int], fractions: dict[str, float], seed: int,
                  class_names: list[str], sources: list[str] | None = None) -> list[str]:
    """Stratified, seeded assignment of whole duplicate groups to splits.

    Each group takes its majority label's (and majority source's) stratum. Every split with a positive fraction
    gets at least one group of each class; groups then go, largest first, to the split furthest below its target
    image count within their class x source stratum (with one source: within their class).
    """
    active = [s for s in SPLIT_NAMES if fractions[s] > 0]
    sources = sources or [""] * len(labels)
    by_group: dict[int, list[int]] = {}
    for i, g in enumerate(groups):
        by_group.setdefault(g, []).append(i)
    source_of = {g: Counter(sources[i] for i in idx).most_common(1)[0][0] for g, idx in by_group.items()}
    out = [""] * len(labels)
    rng = np.random.default_rng(seed)
    for label, name in enumerate(class_names):
        members = [g for g, idx in by_group.items() if np.bincount([labels[i] for i in idx], minlength=2).argmax()
                   == label]
        if len(members) < len(active):
            raise DataError(
                f"Class '{name}' has {len(members)} distinct image group(s) (after merging duplicates); the "
                f"{len(active)} requested splits ({', '.join(active)}) need at least {len(active)}.",
                f"add distinct images of class '{name}' (each requested split needs one of every class; near "
                f"duplicates count once, see data.near_duplicate_distance).",
            )
        order = [members[k] for k in rng.permutation(len(members))]
        total = {src: sum(len(by_group[g]) for g in order if source_of[g] == src) for src in set(source_of.values())}
        count = {src: dict.fromkeys(active, 0) for src in total}
        for split, g in zip(reversed(active), order):  # one group per split first, smallest splits first
            count[source_of[g]][split] += len(by_group[g])
            for i in by_group[g]:
                out[i] = split
        for g in sorted(order[len(active):], key=lambda g: -len(by_group[g])):
            src = source_of[g]
            split = max(active, key=lambda s: (fractions[s] * total[src] - count[src][s], fractions[s]))
            count[src][split] += len(by_group[g])
            for i in by_group[g]:
                out[i] = split
    return out


def assign_folds(labels: list[int], groups: list[Any], k: int, seed: Any) -> list[int]:
    """Fold index (0 .. k-1) per file: whole duplicate groups, stratified by label.

    Each group joins its majority label's stratum; per stratum the groups are shuffled (``seed``), then, largest
    first, each goes to the fold holding the fewest images of that label (ties: fewest images overall, then a
    seeded fold order). Per label, fold counts therefore differ by at most the largest group of that label.
    ValueError when a label has fewer groups than folds (some fold would hold none of it).
    """
    by_group: dict[Any, list[int]] = {}
    for i, g in enumerate(groups):
        by_group.setdefault(g, []).append(i)
    rng = np.random.default_rng(seed)
    fold_of = [-1] * len(labels)
    total = [0] * k
    for label in sorted(set(labels)):
        members = [g for g, idx in by_group.items()
                   if np.bincount([labels[i] for i in idx], minlength=label + 1).argmax() == label]
        if len(members) < k:
            raise ValueError(f"label {label} has {len(members)} duplicate group(s); {k} folds need at least {k}.")
        members = [members[j] for j in rng.permutation(len(members))]
        members.sort(key=lambda g: -len(by_group[g]))  # stable: equal sizes keep the shuffled order
        order = rng.permutation(k)
        count = [0] * k
        for g in members:
            fold = min(range(k), key=lambda f: (count[f], total[f], order[f]))
            count[fold] += len(by_group[g])
            total[fold] += len(by_group[g])
            for i in by_group[g]:
                fold_of[i] = fold
    return fold_of


def files_digest(files: list[dict[str, Any]]) -> str:
    """SHA-256 of the canonical JSON of the file list."""
    return hashlib.sha256(dumps_json(files).encode()).hexdigest()


def write_splits(path: Path, data_root_rel: str, files: list[dict[str, Any]], class_names: list[str],
                 fractions: dict[str, float], seed: int, sources: dict[str, str] | None = None) -> str:
    """Write splits.json atomically (files sorted by path; ``sources``: each source's kind, by name); return its
    SHA-256."""
    files = sorted(files, key=lambda f: f["path"])
    counts = {s: {c: sum(1 for f in files if f["split"] == s and f["label"] == k) for k, c in enumerate(class_names)}
              for s in SPLIT_NAMES}
    return atomic_write_json(path, {
        "version": SPLITS_VERSION, "data_root": data_root_rel, "class_names": class_names,
        "fractions": fractions, "seed": seed, "counts": counts, "files": files, "digest": files_digest(files),
        "sources": sources or {"real": "real"},
    })


@dataclass(frozen=True)
class Splits:
    """A verified splits.json: the data root (absolute) and per-split (path, label, sha256) rows."""

    data_root: Path
    class_names: list[str]
    files: list[dict[str, Any]]
    digest: str
    source_kinds: dict[str, str] = field(default_factory=lambda: {"real": "real"})  # kind of each source, by name

    def rows(self, split: str) -> list[dict[str, Any]]:
        """Rows of one split (sorted by path)."""
        if split not in SPLIT_NAMES:
            raise ValueError(f"unknown split {split!r}; choose one of {SPLIT_NAMES}")
        return [f for f in self.files if f["split"] == split]

    def paths(self, split: str) -> list[Path]:
        """Absolute image paths of one split."""
        return [self.data_root / f["path"] for f in self.rows(split)]

    def labels(self, split: str) -> list[int]:
        """Labels of one split, aligned with :meth:`paths`."""
        return [int(f["label"]) for f in self.rows(split)]

    def kinds(self, split: str) -> list[str]:
        """The kind (real | generated) of each image of one split, aligned with :meth:`paths` (files written before
        sources were tagged are real)."""
        return [self.source_kinds.get(f.get("source", "real"), "real") for f in self.rows(split)]


HELD_OUT_SPLIT = "test"  # a fold view's held-out fold (the run's own test split is in no fold)


def fold_splits(splits: Splits, fold_of: dict[str, int], fold: int) -> Splits:
    """The view of ``splits`` that trains fold ``fold``'s model: the files of the other folds as ``train``, the
    held-out fold as :data:`HELD_OUT_SPLIT`; files in no fold (``fold_of`` maps path -> fold) are left out."""
    files = [dict(f, split=HELD_OUT_SPLIT if fold_of[f["path"]] == fold else "train")
             for f in splits.files if f["path"] in fold_of]
    return Splits(data_root=splits.data_root, class_names=splits.class_names, files=files,
                  digest=files_digest(files))


def load_splits(path: Path) -> Splits:
    """Read splits.json; verify its digest and that no path or content is in two splits (DataError if so)."""
    if not path.is_file():
        raise DataError(f"'{path}' does not exist.",
                        "create it with the splits phase: streetvision run pipeline.phases=[splits] (the phases "
                        "that need it add it automatically).")
    raw = read_json(path)
    files = raw["files"]
    if files_digest(files) != raw.get("digest"):
        raise DataError(f"'{path}' was edited: its digest does not match its file list.",
                        "regenerate it: streetvision run pipeline.phases=[splits] pipeline.force=true.")
    seen_path: dict[str, str] = {}
    seen_sha: dict[str, str] = {}
    for f in files:
        for key, seen in (("path", seen_path), ("sha256", seen_sha)):
            other = seen.setdefault(f[key], f["split"])
            if other != f["split"]:
                raise DataError(f"Split leak in '{path}': {key} {f[key][:40]} is in both '{other}' and "
                                f"'{f['split']}'.", "regenerate splits.json; do not edit it by hand.")
    return Splits(data_root=(path.parent / raw["data_root"]).resolve(), class_names=list(raw["class_names"]),
                  files=files, digest=raw["digest"], source_kinds=dict(raw.get("sources", {"real": "real"})))
