"""Per-epoch training checkpoints that never unpickle arbitrary objects, and the decision to resume from one.

A checkpoint is a directory ``<phase dir>/checkpoints/epoch-NNNN/``: the weights (the LightningModule's state and the
best-so-far weights) as safetensors, everything else Lightning saves (optimizer, scheduler, loop counters, callback
state) plus the RNG states in ``state.pt``, read back with ``torch.load(weights_only=True)``, and ``meta.json``
written last with the files' SHA-256 and the phase's fingerprint (its config slice and input checksums). The two
newest are kept. A checkpoint whose files do not match ``meta.json``, or whose ``state.pt`` does not load with
``weights_only=True`` (even when ``meta.json`` was re-hashed to match it), is discarded and the one before it is
used; one with another fingerprint is refused (``pipeline.force=true`` deletes the checkpoints and starts over). A
checkpoint that cannot be written (a full disk) fails with an OSError naming its directory; the ones before it stay.
"""

from __future__ import annotations

import io
import json
import logging
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.fabric.plugins.io.checkpoint_io import CheckpointIO
from lightning.pytorch.callbacks import Callback
from safetensors.torch import load_file

from streetvision.errors import ConfigError, IntegrityError
from streetvision.io import (atomic_write_bytes, atomic_write_json, atomic_write_safetensors, read_json, replace_dir,
                             sha256_file)
from streetvision.io.atomic import dumps_json

log = logging.getLogger(__name__)
WEIGHT_KEYS = ("state_dict", "best_state_dict")  # top-level checkpoint entries stored as safetensors
META_FILE, STATE_FILE = "meta.json", "state.pt"
KEEP = 2


def normalised(fingerprint: Any) -> Any:
    """``fingerprint`` as it reads back from JSON (tuples become lists), so saved and current ones compare."""
    return json.loads(dumps_json(fingerprint))


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: tree}


class SafeCheckpointIO(CheckpointIO):
    """Lightning checkpoint IO: weights as safetensors, the rest through ``torch.save`` / ``torch.load(
    weights_only=True)``, committed by ``meta.json`` (with ``fingerprint``) written last."""

    def __init__(self, fingerprint: dict[str, Any]) -> None:
        self.fingerprint = normalised(fingerprint)

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any = None) -> None:
        state = io.BytesIO()  # serialised in memory: torch's zip writer reports a full disk as a bare RuntimeError
        torch.save({k: v for k, v in checkpoint.items() if k not in WEIGHT_KEYS}, state)
        try:
            with replace_dir(Path(path)) as tmp:
                for key in WEIGHT_KEYS:
                    if checkpoint.get(key) is not None:
                        atomic_write_safetensors(tmp / f"{key}.safetensors", {k: v.detach().cpu().contiguous()
                                                                              for k, v in checkpoint[key].items()})
                atomic_write_bytes(tmp / STATE_FILE, state.getvalue())
                files = {p.name: sha256_file(p) for p in sorted(tmp.iterdir())}
                atomic_write_json(tmp / META_FILE, {"epoch": int(checkpoint.get("epoch", -1)), "files": files,
                                                    "fingerprint": self.fingerprint})
        except OSError as exc:  # name the checkpoint, not the hidden temp file (or nothing) the write failed on
            raise OSError(exc.errno, f"{exc.strerror or exc} (writing the epoch checkpoint)", str(path)) from exc

    def load_checkpoint(self, path, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        path = Path(path)
        verify_checkpoint(path)
        checkpoint = torch.load(path / STATE_FILE, map_location="cpu", weights_only=True)
        for key in WEIGHT_KEYS:
            if (path / f"{key}.safetensors").is_file():
                checkpoint[key] = load_file(path / f"{key}.safetensors")
        return checkpoint

    def remove_checkpoint(self, path) -> None:
        shutil.rmtree(path, ignore_errors=True)


def verify_checkpoint(path: Path) -> dict[str, Any]:
    """``meta.json`` of a complete, unmodified checkpoint whose ``state.pt`` loads with ``weights_only=True``;
    IntegrityError otherwise."""
    try:
        meta = read_json(path / META_FILE)
        bad = [name for name, digest in meta["files"].items() if sha256_file(path / name) != digest]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise IntegrityError(f"checkpoint '{path}' is incomplete ({exc}).", "it is discarded.") from exc
    if bad:
        raise IntegrityError(f"checkpoint '{path}' has corrupt file(s) {bad}.", "it is discarded.")
    try:  # mmap: the tensors are not read, only the (restricted, never arbitrary) unpickling of the structure runs
        torch.load(path / STATE_FILE, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # torch's loaders raise UnpicklingError, RuntimeError, EOFError, ... : all mean refused
        raise IntegrityError(f"checkpoint '{path}': {STATE_FILE} is not a weights-only torch.save archive "
                             f"({type(exc).__name__}); it was not unpickled.", "it is discarded.") from exc
    return meta


def checkpoint_epoch(path: Path) -> int:
    """The (0-based) training epoch after which the checkpoint at ``path`` was written (its ``meta.json``)."""
    return int(read_json(path / META_FILE)["epoch"])


class EpochCheckpoint(Callback):
    """Saves a checkpoint at the end of every training epoch (after validation) with the RNG states, so a resumed
    run draws the same dropout masks as an uninterrupted one (the order and augmentations come from the epoch:
    data.datamodules.SeededSampler); keeps the newest ``KEEP``."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        trainer.save_checkpoint(self.directory / f"epoch-{trainer.current_epoch:04d}", weights_only=False)
        if trainer.is_global_zero:
            for old in sorted(self.directory.glob("epoch-*"))[:-KEEP]:
                shutil.rmtree(old, ignore_errors=True)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        np_state = np.random.get_state()
        checkpoint["rng_states"] = {
            "torch": torch.get_rng_state(), "python": random.getstate(),
            "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                      "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        states = checkpoint.get("rng_states")
        if not states:
            return
        torch.set_rng_state(states["torch"])
        version, keys, gauss = states["python"]
        random.setstate((version, tuple(keys), gauss))
        n = states["numpy"]
        np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                             n["cached_gaussian"]))
        if states["cuda"] and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states["cuda"])


def resume_from(directory: Path, fingerprint: dict[str, Any], phase: str, force: bool) -> Path | None:
    """The newest intact checkpoint in ``directory`` to resume ``phase`` from, or None to start fresh.

    ``force`` deletes every checkpoint. A corrupt or incomplete checkpoint is deleted (the one before is tried);
    an intact one with another fingerprint raises ConfigError naming what changed."""
    if force:
        shutil.rmtree(directory, ignore_errors=True)
        return None
    for path in sorted(directory.glob("epoch-*"), reverse=True):
        try:
            meta = verify_checkpoint(path)
        except IntegrityError as exc:
            log.warning("%s; resuming from an earlier one, if any", exc.message)
            shutil.rmtree(path, ignore_errors=True)
            continue
        if meta["fingerprint"] != normalised(fingerprint):
            old, new = _flatten(meta["fingerprint"]), _flatten(normalised(fingerprint))
            changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
            raise ConfigError(
                f"{phase} was interrupted after epoch {meta['epoch']} and left a checkpoint ('{path}') made with "
                f"another config or other inputs (changed: {', '.join(changed[:8]) or '?'}"
                f"{' ...' if len(changed) > 8 else ''}); refusing to resume from it.",
                f"rerun with the config it was made with to resume, or add pipeline.force=true to start {phase} "
                f"over (this deletes its checkpoints).")
        return path
    return None


@dataclass(frozen=True)
class Checkpointing:
    """Where a training phase checkpoints, what identifies its run, and the checkpoint it resumes from (if any)."""

    directory: Path
    fingerprint: dict[str, Any]
    resume: Path | None = None

    @classmethod
    def prepare(cls, directory: Path, fingerprint: dict[str, Any], phase: str, force: bool) -> Checkpointing:
        """Decide whether to resume (see :func:`resume_from`)."""
        return cls(Path(directory), fingerprint, resume_from(Path(directory), fingerprint, phase, force))

    def discard(self) -> None:
        """Delete the checkpoints once the phase has finished: they only serve to resume an interrupted run."""
        shutil.rmtree(self.directory, ignore_errors=True)
