"""The Hugging Face Hub, downloading side: ``resolve_pretrained`` turns a local folder or a Hub repo id into a
folder on disk (``snapshot_download``, which serves a repo from the local cache when the Hub cannot be reached).
Publishing is in :mod:`streetvision.bundle.publish`.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

from streetvision.errors import ConfigError

REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}")
HUB_ADDED_FILES = [".gitattributes"]  # the Hub adds it to every new repo; it is no part of a bundle


def first_line(exc: BaseException) -> str:
    """``Type: first line of the message``, for one-line error reports."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def check_repo_id(repo_id: str) -> str:
    """Return ``repo_id`` when it is ORG/NAME as the Hub accepts it; ConfigError otherwise."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    ok = bool(REPO_ID.fullmatch(repo_id or ""))
    if ok:
        try:
            validate_repo_id(repo_id)
        except HFValidationError:
            ok = False
    if not ok:
        raise ConfigError(f"'{repo_id}' is not a Hugging Face repo id.",
                          "use ORG/NAME (letters, digits, '.', '_', '-'; no '--' or '..'), e.g. my-org/roadwork.")
    return repo_id


def resolve_pretrained(repo_id_or_dir: str | Path, revision: str | None = None) -> tuple[Path, bool]:
    """(folder, from_hub): a local folder as it is, or a Hub repo id through ``snapshot_download`` (offline, from
    the local cache). ConfigError naming the repo id when neither works."""
    local = Path(repo_id_or_dir)
    if local.is_dir():
        if revision is not None:
            raise ConfigError(f"revision '{revision}' was given for the local folder '{local}'.",
                              "pass revision only with a Hub repo id (ORG/NAME).")
        return local, False
    repo_id = str(repo_id_or_dir)
    if not REPO_ID.fullmatch(repo_id):
        raise ConfigError(f"'{repo_id}' is neither a folder nor a Hugging Face repo id (ORG/NAME).",
                          "pass a bundle directory, a Hugging Face export folder, or a Hub repo id.")
    from huggingface_hub import snapshot_download

    try:
        folder = snapshot_download(repo_id, revision=revision, repo_type="model", ignore_patterns=HUB_ADDED_FILES)
    except Exception as exc:  # huggingface_hub's HTTP, cache and validation errors share no narrower base class
        raise ConfigError(f"Cannot fetch the Hub repo '{repo_id}' (revision {revision or 'main'}) and it is not in "
                          f"the local Hugging Face cache ({first_line(exc)}).",
                          "check the network, the repo id and revision, and for a private repo your token "
                          "(HF_TOKEN or `hf auth login`); offline, download it once first (the cache, HF_HUB_CACHE, "
                          "then serves it), or pass a local folder.") from exc
    return Path(folder), True


def materialise(folder: Path) -> Path:
    """A private copy of ``folder`` with its links followed: the Hub cache links every file to a shared blob, and a
    bundle refuses links that leave it."""
    copy = Path(tempfile.mkdtemp(prefix="streetvision-bundle-"))
    shutil.copytree(folder, copy, dirs_exist_ok=True, symlinks=False)
    return copy
