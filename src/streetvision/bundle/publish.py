"""Publishing a verified bundle to the Hugging Face Hub.

``publish`` verifies a bundle, builds its Hugging Face export with a filled NATIX ``model_card.json``
(``submitted_by`` is the miner's hotkey, which the validator checks), checks the export against the bundle, and
uploads it in one commit, or, with ``dry_run``, writes the exact tree that would be uploaded. Every check runs
before anything is sent.
"""

from __future__ import annotations

import hashlib
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
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._+-]{0,99}")  # one line of plain text for the card and README
DRY_RUN = "publish --dry-run"  # the command that owns a dry-run folder (streetvision.io.outputs)
BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def is_ss58_address(text: str) -> bool:
    """Whether ``text`` is an SS58 account address (what a bittensor hotkey's address is): base58 of a network
    prefix (1 or 2 bytes), a 32-byte public key and the first two bytes of blake2b-512("SS58PRE" + prefix + key)."""
    if not text or any(c not in BASE58 for c in text):
        return False
    number = 0
    for char in text:
        number = number * 58 + BASE58.index(char)
    raw = number.to_bytes((number.bit_length() + 7) // 8, "big")
    raw = b"\0" * (len(text) - len(text.lstrip("1"))) + raw  # each leading '1' is a zero byte
    if len(raw) not in (35, 36) or (len(raw) == 35) != (raw[0] < 64):  # 1-byte prefixes are 0-63
        return False
    body, checksum = raw[:-2], raw[-2:]
    return hashlib.blake2b(b"SS58PRE" + body, digest_size=64).digest()[:2] == checksum


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
                       run_or_bundle: Path | None = None, force: bool = False, model_name: str | None = None) -> None:
    """Refuse bad arguments before any work: repo id, hotkey (an SS58 address), version, dry-run folder (the
    output rule of :mod:`streetvision.io.outputs`)."""
    check_repo_id(repo_id)
    if not is_ss58_address(hotkey):
        raise ConfigError(f"--hotkey '{hotkey}' is not a hotkey address (base58 with a valid SS58 checksum): the "
                          f"validator accepts a model_card.json only when submitted_by is the miner's hotkey SS58 "
                          f"address.",
                          "pass the address (48 characters starting with 5; `btcli wallet overview` shows it), not "
                          "the hotkey's name.")
    if version is not None and not VERSION.fullmatch(version):
        raise ConfigError(f"--version '{version}' is not X.Y.Z.", "e.g. --version 1.0.0.")
    if model_name is not None and not MODEL_NAME.fullmatch(model_name):
        raise ConfigError(f"--model-name {model_name!r} is not one line of plain text (letters, digits, spaces and "
                          f"._+-, at most 100 characters): it becomes the model card's title.",
                          "e.g. --model-name 'roadwork dinov2-s v3'.")
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

    check_publish_args(repo_id, hotkey, version, dry_run, run_or_bundle, force, model_name)
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
