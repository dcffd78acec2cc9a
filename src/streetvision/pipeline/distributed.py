"""Running the runner on every rank of an externally launched job (torchrun, SLURM).

Rank 0 is the runner proper: it locks the run directory, runs every phase and writes every artifact, and first
publishes its plan (which phases it will run, tagged with the launch id). Other ranks take no lock and write
nothing: they read the plan, and for each training phase in it (pretrain, phase4, phase1, crossfit) wait until the
phases it needs are committed, then join the DDP training; after training, phase functions return early on ranks other than 0.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from streetvision.errors import MissingArtifactError
from streetvision.io import atomic_write_json, read_json

DISTRIBUTED_PHASES = ("pretrain", "phase4", "phase1", "crossfit")  # phases whose work is shared across ranks
PLAN_FILE = ".distributed_plan.json"


def global_rank() -> int:
    """This process's rank in an externally launched job (0 when not launched that way)."""
    for key in ("RANK", "SLURM_PROCID"):
        if key in os.environ:
            return int(os.environ[key])
    return 0


def launch_id() -> str:
    """An id shared by all ranks of one launch."""
    return os.environ.get("TORCHELASTIC_RUN_ID") or os.environ.get("SLURM_JOB_ID") or "local"


def publish_plan(run_dir: Path, phases: list[str]) -> None:
    """Rank 0: tell the other ranks which phases this launch runs."""
    atomic_write_json(run_dir / PLAN_FILE, {"launch_id": launch_id(), "phases": phases})


def wait_for(condition, what: str, timeout_s: float, poll_s: float = 1.0) -> None:
    """Poll ``condition()`` until true; MissingArtifactError naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise MissingArtifactError(f"Rank {global_rank()} waited {timeout_s:.0f}s for {what}.",
                                       "check rank 0's log: it writes every artifact.")
        time.sleep(poll_s)


def read_plan(run_dir: Path, timeout_s: float = 3600) -> list[str]:
    """Ranks > 0: the phases rank 0 runs in this launch."""
    path = run_dir / PLAN_FILE
    wait_for(lambda: path.is_file() and read_json(path).get("launch_id") == launch_id(), "rank 0's plan",
             timeout_s)
    return list(read_json(path)["phases"])
