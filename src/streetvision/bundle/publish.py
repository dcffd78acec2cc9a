"""Publishing a verified bundle to the Hugging Face Hub.

``publish`` verifies a bundle, builds its Hugging Face export with a filled NATIX ``model_card.json``
(``submitted_by`` is the miner's hotkey, which the validator checks), checks the export against the bundle, and
uploads it in one commit, or, with ``dry_run``, writes the exact tree that would be uploaded. Every check runs
before anything is sent.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streetvision.bundle.hub import check_repo_id, first_line
from streetvision.errors import ConfigError, HubError, UsageError, ValidationFailure
from streetvision.io.outputs import check_output_dir, output_dir

VERSION = re.compile(r"\d+\.\d+\.\d+")
DRY_RUN = "publish --dry-run"  # the command that owns a dry-run folder (streetvision.io.outputs)
SS58 = re.compile(r"[1-9A-HJ-NP-Za-km-z]{46,48}")  # base58, the length of a substrate (bittensor) address


@dataclass(frozen=True)
class Published:
    """What ``publish`` did: the tree (relative path, size, SHA-256), the card, and the commit URL (None: dry run)."""

    files: list[tuple[str, int, str]]
    card: dict[str, Any]
    parity: str
    commit_url: str | None


def find_bundle(run_or_bundle: Path) -> Path:
    """The bundle directory of a run directory, or the bundle directory itself."""
    from streetvision.bundle.schema import BUNDLE_INDEX

    for candidate in (run_or_bundle, run_or_bundle / "export" / "bundle"):
        if (candidate / BUNDLE_INDEX).is_file():
            return candidate
    raise UsageError(f"'{run_or_bundle}' is neither a bundle (no {BUNDLE_INDEX}) nor a run directory with "
                     f"export/bundle/{BUNDLE_INDEX}.", "pass a run directory or its export/bundle.")


def check_publish_args(repo_id: str, hotkey: str, version: str | None, dry_run: Path | None,
                       run_or_bundle: Path | None = None, force: bool = False) -> None:
    """Refuse bad arguments before any work: repo id, hotkey (an SS58 address), version, dry-run folder (the
    output rule of :mod:`streetvision.io.outputs`)."""
    check_repo_id(repo_id)
    if not hotkey or not SS58.fullmatch(hotkey):
        raise ConfigError(f"--hotkey '{hotkey}' is not a hotkey address: the validator accepts a model_card.json only "
                          f"when submitted_by is the miner's hotkey SS58 address.",
                          "pass the address (48 characters starting with 5; `btcli wallet overview` shows it), not "
                          "the hotkey's name.")
    if version is not None and not VERSION.fullmatch(version):
        raise ConfigError(f"--version '{version}' is not X.Y.Z.", "e.g. --version 1.0.0.")
    if dry_run is not None:
        check_output_dir(dry_run, DRY_RUN, protected=[run_or_bundle] if run_or_bundle else [], force=force,
                         flag="--dry-run")


def hub_token() -> str:
    """The Hub token from HF_TOKEN or the login cache; ConfigError when there is none."""
    from huggingface_hub import get_token

    token = get_token()
    if not token:
        raise ConfigError("No Hugging Face token: set HF_TOKEN or run `hf auth login` (a token with write access).",
                          "create a write token at https://huggingface.co/settings/tokens; or use --dry-run DIR.")
    return token


def publish(run_or_bundle: Path, repo_id: str, hotkey: str, version: str | None = None, private: bool = False,
            dry_run: Path | None = None, model_name: str | None = None, force: bool = False) -> Published:
    """Verify the bundle, export and parity-check the Hugging Face folder with a filled card, then upload it in one
    commit (``dry_run``: write it to that folder instead). Nothing is sent unless every check passed."""
    from streetvision.bundle.hf_export import check_hf_parity, export_hf
    from streetvision.bundle.verify import verify_bundle
    from streetvision.io import sha256_file

    check_publish_args(repo_id, hotkey, version, dry_run, run_or_bundle, force)
    bundle = find_bundle(Path(run_or_bundle))
    token = None if dry_run is not None else hub_token()
    failed = [c for c in verify_bundle(bundle) if not c.ok]
    if failed:
        raise ValidationFailure(f"bundle '{bundle}' fails verify: " + "; ".join(f"{c.name}: {c.detail}"
                                                                                for c in failed),
                                f"run `streetvision verify {bundle}` and re-export the run; nothing was uploaded.")
    card = json.loads((bundle / "model_card.json").read_text())
    card.update(submitted_by=hotkey, submission_time=int(time.time()), version=version or str(card["version"]),
                model_name=model_name or str(card.get("model_name") or repo_id.split("/")[1]))
    if not VERSION.fullmatch(card["version"]):
        raise ConfigError(f"the bundle's model card version '{card['version']}' is not X.Y.Z.", "pass --version X.Y.Z.")
    with tempfile.TemporaryDirectory(prefix="streetvision-publish-") as tmp:
        hf_dir = export_hf(bundle, Path(tmp) / "hf", card=card)
        parity = check_hf_parity(bundle, hf_dir)
        files = sorted((p.relative_to(hf_dir).as_posix(), p.stat().st_size, sha256_file(p))
                       for p in hf_dir.rglob("*") if p.is_file())
        if dry_run is not None:
            with output_dir(dry_run, DRY_RUN, protected=[run_or_bundle], force=force, flag="--dry-run") as out:
                shutil.copytree(hf_dir, out, dirs_exist_ok=True)
            return Published(files, card, parity, None)
        url = upload(hf_dir, repo_id, token, private,
                     f"StreetVision {card['model_name']} {card['version']} (submitted_by {hotkey})")
    return Published(files, card, parity, url)


def upload(folder: Path, repo_id: str, token: str, private: bool, message: str) -> str:
    """Create the repo if needed and commit ``folder`` as its whole content (older files are deleted in the same
    commit, ``.gitattributes`` kept); HubError when the Hub refuses or cannot be reached."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        info = api.upload_folder(repo_id=repo_id, folder_path=str(folder), repo_type="model",
                                 commit_message=message, delete_patterns=["*"])
    except Exception as exc:  # huggingface_hub's HTTP and network errors share no narrower base class
        raise HubError(f"Uploading to the Hub repo '{repo_id}' failed ({first_line(exc)}); no commit was made.",
                       "check the network, and that your token (HF_TOKEN or `hf auth login`) can write to "
                       f"'{repo_id.split('/')[0]}'; `--dry-run DIR` shows what would be uploaded.") from exc
    return str(getattr(info, "commit_url", info))
