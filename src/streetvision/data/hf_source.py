"""Hugging Face ``datasets`` source (data=hf): a local dataset (save_to_disk directory, parquet file or directory of
parquet files) or a Hub dataset id (``owner/name``), read through ``datasets.load_dataset``; each image is written
once into the run's cache and listed as a :class:`Sample` (rows are iterated, never held in memory together).

A Hub id's revision is resolved to a commit by ``HfApi.resolve_revision`` (on the Hub, else from the cache's
``refs/``). Its files come from the Hugging Face hub cache (``$HF_HOME/hub`` or ``$HF_HUB_CACHE``, filled by
``snapshot_download`` or ``hf download``), which ``load_dataset`` then reads as a local folder: offline, datasets 5.2's
``load_dataset("owner/name")`` reads only its own prepared Arrow cache, not the hub cache. With ``streaming`` the rows
are read from the Hub without a local copy (offline: from the hub cache).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streetvision.data.sources import Listing, Sample, _parse_label, folder_fingerprint
from streetvision.errors import ConfigError, DataError, HubError

HF_ACCEPTS = ("a Hub dataset id (owner/name), a directory written by Dataset.save_to_disk, a .parquet file or a "
              "directory of .parquet files")
HF_DISK_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")  # what save_to_disk writes


@dataclass(frozen=True)
class HFSource:
    """A Hugging Face ``datasets`` dataset: a Hub dataset id or a local save_to_disk directory / parquet file(s)
    (``path``); ``split`` picks one split (None: the first); ``revision`` a Hub branch, tag or commit (None: main);
    ``streaming`` reads the rows without preparing an Arrow copy (a Hub id: without downloading the files)."""

    path: str | None
    split: str | None
    image_column: str
    label_column: str
    revision: str | None = None
    streaming: bool = False

    @classmethod
    def from_config(cls, hf: Any) -> HFSource:
        """The source the ``data.hf`` config node names."""
        return cls(path=hf.path, split=hf.split, image_column=str(hf.image_column), label_column=str(hf.label_column),
                   revision=hf.revision, streaming=bool(hf.streaming))


def hub_dataset_id(value: str) -> str | None:
    """``value`` as a Hub dataset id, or None for a local path: one that exists, or that looks like one (``./x``,
    ``/x``, ``~/x``, ``a/b/c``, ``x``, ``x.parquet``). ConfigError when it is neither a path nor a valid id."""
    if (not value or Path(value).exists() or value.startswith((".", "/", "~")) or "\\" in value
            or value.count("/") != 1 or Path(value).suffix.lower() == ".parquet"):
        return None
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(value)
    except HFValidationError as exc:
        raise ConfigError(f"data.hf.path '{value}' is no local path (looked from {Path.cwd()}) and no Hub dataset id: "
                          f"{exc}", "set data.hf.path to a local dataset or to a Hub dataset id owner/name.") from exc
    return value


def hub_offline() -> bool:
    """Whether HF_HUB_OFFLINE (huggingface_hub and datasets) or HF_DATASETS_OFFLINE (datasets) is set."""
    import datasets
    import huggingface_hub

    return bool(huggingface_hub.is_offline_mode() or datasets.config.HF_HUB_OFFLINE)


def hf_fingerprint(source: HFSource) -> str | None:
    """What identifies the data: the commit a Hub id's revision resolves to, or the listing of a local path; None
    when it cannot be told (listing the source then says why)."""
    value = source.path or ""
    path = Path(value)
    if value and path.is_dir():
        return folder_fingerprint(path)
    if value and path.is_file():
        st = path.stat()
        return f"{path.name}|{st.st_size}|{st.st_mtime_ns}"
    try:
        repo_id = hub_dataset_id(value)
        return f"{repo_id}@{hub_commit(repo_id, source.revision, hub_offline())}" if repo_id else None
    except Exception:  # noqa: BLE001 - no fingerprint; list_hf reports the problem as one paragraph
        return None


def hub_commit(repo_id: str, revision: str | None, offline: bool) -> str:
    """The commit ``revision`` (None: main) of Hub dataset ``repo_id`` resolves to: asked of the Hub unless
    ``offline``, read from the hub cache's ``refs/`` when offline or the Hub cannot be reached."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import (HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError,
                                        RevisionResolutionError)

    try:
        return HfApi().resolve_revision(repo_id, repo_type="dataset", revision=revision,
                                        local_files_only=offline).resolved
    except RevisionResolutionError as exc:
        raise not_cached_error(repo_id, revision, offline) from exc
    except RevisionNotFoundError as exc:
        raise _no_revision_error(repo_id, revision) from exc
    except RepositoryNotFoundError as exc:
        raise _no_repo_error(repo_id) from exc
    except HfHubHTTPError as exc:
        raise HubError(f"The Hugging Face Hub refused to resolve dataset '{repo_id}' ({exc}).",
                       "check the id, your token (HF_TOKEN or `hf auth login`) and the network.") from exc


def _cached_revisions(repo_id: str) -> list[str]:
    """Revisions of dataset ``repo_id`` in the hub cache, as ``ref -> commit`` (or a bare commit)."""
    from huggingface_hub import constants, scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    try:
        repos = scan_cache_dir(constants.HF_HUB_CACHE).repos
    except (CacheNotFound, OSError):
        return []
    return sorted(f"{', '.join(sorted(rev.refs))} -> {rev.commit_hash}" if rev.refs else rev.commit_hash
                  for repo in repos if repo.repo_type == "dataset" and repo.repo_id == repo_id
                  for rev in repo.revisions)


def not_cached_error(repo_id: str, revision: str | None, offline: bool) -> ConfigError:
    """The paragraph for a Hub dataset (revision) the hub cache lacks while the Hub cannot be used."""
    from huggingface_hub import constants

    cached = _cached_revisions(repo_id)
    why = "offline mode is on (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE)" if offline else "the Hub cannot be reached"
    held = f" The cache holds its revision(s) {cached}." if cached else ""
    download = f"hf download {repo_id} --repo-type dataset" + (f" --revision {revision}" if revision else "")
    return ConfigError(
        f"Hugging Face dataset '{repo_id}' (revision {revision or 'main'}) is not in the local cache "
        f"{constants.HF_HUB_CACHE} and {why}.{held} ('{repo_id}' is no local path either, looked from {Path.cwd()}.)",
        f"download it once with network access: `{download}` (or run this command once online, with HF_HUB_OFFLINE "
        f"and HF_DATASETS_OFFLINE unset); the cache is $HF_HOME/hub (HF_HOME={constants.HF_HOME}), or $HF_HUB_CACHE "
        f"when set.")


def _no_revision_error(repo_id: str, revision: str | None) -> ConfigError:
    from huggingface_hub import HfApi

    try:
        refs = HfApi().list_repo_refs(repo_id, repo_type="dataset")
        exists = f"branches {[b.name for b in refs.branches]}, tags {[t.name for t in refs.tags]}"
    except Exception:  # noqa: BLE001 - the refs are a courtesy: the error stands without them
        exists = f"cached: {_cached_revisions(repo_id)}"
    return ConfigError(f"Hugging Face dataset '{repo_id}' has no revision '{revision}'; it has {exists}.",
                       "set data.hf.revision to one of them, a commit hash, or null for main.")


def _no_repo_error(repo_id: str) -> ConfigError:
    return ConfigError(f"Hugging Face dataset '{repo_id}' does not exist on the Hub, or it is private or gated and "
                       f"needs a token (nor is it a local path, looked from {Path.cwd()}).",
                       "check data.hf.path; for a private or gated dataset, log in (`hf auth login` or HF_TOKEN).")


def _snapshot(repo_id: str, revision: str | None, commit: str, offline: bool) -> str:
    """The hub-cache folder of ``repo_id`` at ``commit``, downloaded once (only from the cache when ``offline``)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    try:
        return snapshot_download(repo_id, repo_type="dataset", revision=commit, local_files_only=offline)
    except LocalEntryNotFoundError as exc:  # IncompleteSnapshotError too
        raise not_cached_error(repo_id, revision, offline) from exc
    except RevisionNotFoundError as exc:
        raise _no_revision_error(repo_id, revision or commit) from exc
    except RepositoryNotFoundError as exc:
        raise _no_repo_error(repo_id) from exc


def _datasets() -> Any:
    try:
        import datasets
    except ImportError as exc:
        raise ConfigError("data.source=hf needs the `datasets` library.",
                          "install the extra: pip install -e '.[hf]'.") from exc
    return datasets


def _read_error(what: str, exc: Exception) -> DataError:
    return DataError(f"{what} could not be read as a Hugging Face dataset "
                     f"({type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]}).",
                     f"check it: data=hf reads {HF_ACCEPTS}.")


def _pick_split(ds: Any, split: str | None, what: str) -> Any:
    """One split of a (Iterable)DatasetDict: ``split``, or the first; a single dataset as it is."""
    if not hasattr(ds, "keys"):
        return ds
    names = list(ds.keys())
    if split is None and names:
        return ds[names[0]]
    if split not in names:
        raise DataError(f"{what} has no split '{split}'; splits: {names}.", "set data.hf.split to one of them.")
    return ds[split]


def _open_local(source: HFSource) -> Any:
    datasets = _datasets()
    from datasets.exceptions import DatasetsError

    path = Path(source.path or "")
    if not source.path or not path.exists():
        raise ConfigError(f"data.hf.path '{source.path}' does not exist.",
                          "set data.hf.path=PATH, or a Hub dataset id owner/name.")
    parquet = path.is_file() or any(path.glob("*.parquet"))
    if (path.suffix.lower() != ".parquet" if path.is_file() else
            not parquet and not any((path / marker).is_file() for marker in HF_DISK_MARKERS)):
        raise DataError(f"data.hf.path '{source.path}' is not a Hugging Face dataset: data=hf reads {HF_ACCEPTS}.",
                        "point data.hf.path at one of those; for a path,label CSV use data=csv data.csv_path=FILE, "
                        "for one sub-folder per class data=folder data.root=DIR.")
    try:
        if parquet:
            files = [str(path)] if path.is_file() else sorted(str(p) for p in path.glob("*.parquet"))
            return datasets.load_dataset("parquet", data_files=files, split="train", streaming=source.streaming)
        ds = datasets.load_from_disk(str(path))
    except (ValueError, OSError, DatasetsError) as exc:  # pyarrow's ArrowInvalid: a ValueError
        raise _read_error(f"data.hf.path '{source.path}'", exc) from exc
    return _pick_split(ds, source.split, f"data.hf.path '{source.path}'")


def _open_hub(source: HFSource, repo_id: str) -> Any:
    datasets = _datasets()
    from datasets.exceptions import DatasetsError

    offline = hub_offline()
    commit = hub_commit(repo_id, source.revision, offline)
    what = f"Hugging Face dataset '{repo_id}' (revision {source.revision or 'main'}, commit {commit[:12]})"
    try:
        if source.streaming and not offline:
            try:
                ds = datasets.load_dataset(repo_id, revision=commit, streaming=True)
            except ConnectionError:  # the Hub went away after resolving: stream the hub cache's copy, if any
                ds = datasets.load_dataset(_snapshot(repo_id, source.revision, commit, True), streaming=True)
        else:
            ds = datasets.load_dataset(_snapshot(repo_id, source.revision, commit, offline),
                                       streaming=source.streaming)
    except (ValueError, OSError, DatasetsError) as exc:
        raise _read_error(what, exc) from exc
    return _pick_split(ds, source.split, what)


def _image_bytes(data: dict[str, Any]) -> bytes:
    """An undecoded ``datasets.Image`` value's bytes (embedded, or read from its local or ``hf://`` path)."""
    if data.get("bytes") is not None:
        return data["bytes"]
    import fsspec

    with fsspec.open(data["path"], "rb") as handle:
        return handle.read()


def _rows(ds: Any, what: str) -> Iterator[dict[str, Any]]:
    """The rows of ``ds``, one at a time; a failure to read one (a broken shard, a lost connection while streaming)
    as a DataError naming ``what``."""
    from datasets.exceptions import DatasetsError

    rows = iter(ds)
    while True:
        try:
            row = next(rows)
        except StopIteration:
            return
        except (ValueError, OSError, DatasetsError) as exc:
            raise _read_error(what, exc) from exc
        yield row


def list_hf(source: HFSource, cache_dir: Path, class_names: list[str]) -> Listing:
    """The labelled rows of a Hugging Face dataset, each image written once into ``cache_dir`` (atomically; a file
    already there is kept); a row whose image is missing or unreadable is listed in ``skipped``."""
    from streetvision.io import atomic_write_bytes

    datasets = _datasets()
    repo_id = hub_dataset_id(source.path or "")
    ds = _open_hub(source, repo_id) if repo_id else _open_local(source)
    if ds.column_names is not None:  # None: an iterable dataset of unknown features (rows are checked instead)
        for column in (source.image_column, source.label_column):
            if column not in ds.column_names:
                raise DataError(f"HF dataset has no column '{column}'; columns: {ds.column_names}.",
                                "set data.hf.image_column / data.hf.label_column.")
        ds = ds.cast_column(source.image_column, datasets.Image(decode=False))
    label_names = getattr((ds.features or {}).get(source.label_column), "names", None)
    samples, skipped = [], []
    for i, row in enumerate(_rows(ds, f"data.hf.path '{source.path}'")):
        if source.image_column not in row or source.label_column not in row:
            raise DataError(f"HF dataset row {i} has no column '{source.image_column}' or '{source.label_column}'; "
                            f"columns: {list(row)}.", "set data.hf.image_column / data.hf.label_column.")
        raw, data = row[source.label_column], row[source.image_column]
        named = label_names and isinstance(raw, int) and 0 <= raw < len(label_names)  # ClassLabel's -1: no label
        label = _parse_label(label_names[raw] if named else str(raw), class_names, f"row {i}")
        if not data or (data.get("bytes") is None and not data.get("path")):
            skipped.append({"path": f"row {i}", "reason": "no image"})
            continue
        try:
            blob = _image_bytes(data)
        except OSError as exc:
            skipped.append({"path": f"row {i}", "reason": f"image {data['path']} unreadable ({exc})"})
            continue
        out = cache_dir / class_names[label] / f"{i:07d}_{hashlib.sha256(blob).hexdigest()[:12]}.img"
        if not out.exists():
            atomic_write_bytes(out, blob)
        samples.append(Sample(out, label))
    return Listing(cache_dir, samples, skipped)
