"""Every crash leaves a clean run (issue 14). A micro pipeline runs in a child process that holds at a crash
point (``crash_driver.py``): each phase boundary, inside training, inside the export, while splits.json is
written. The test kills it there with SIGKILL (or SIGINT, Ctrl-C), reruns the same command, and checks that the
run completes, every manifest and the bundle verify, no temp file is left, and the results equal those of an
uninterrupted run. The subprocess cases are slow (``make test-all``); the fast ones run the same paths in-process.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from streetvision.bundle.verify import verify_bundle
from streetvision.pipeline.artifacts import load_run_config
from streetvision.io import StepManifest, read_json
from streetvision.pipeline.runner import run_pipeline
from tests.robustness.helpers import cli, leftovers, snapshot

DRIVER = Path(__file__).with_name("crash_driver.py")
RUN = ["model=dinov2_micro", "data.synthetic.n=120", "training.progress_bar=false", "evaluation.n_resamples=20",
       "pipeline.phases=[phase1,phase2,phase5,phase6,evaluation]", "run_id=c"]
PHASE_DIRS = ["data", "phase1", "phase2", "phase5_scrc", "export", "evaluation"]


def run_dir(root: Path) -> Path:
    return root / "stage1_ultimate" / "runs" / "c"


def streetvision(root: Path, *driver_args: str) -> subprocess.CompletedProcess:
    """The CLI (or, with driver_args = (POINT,), the crash driver) as a child process, to completion."""
    command = [str(DRIVER), *driver_args] if driver_args else ["-m", "streetvision.cli", "run"]
    return subprocess.run([sys.executable, *command, *RUN, f"output_root={root}"], capture_output=True, text=True,
                          timeout=600)


def kill_at(root: Path, point: str, sig: int = signal.SIGKILL) -> tuple[int, str]:
    """Start the driver, wait for it to reach ``point``, send ``sig``; return its exit status and stderr."""
    err = root.parent / f"stderr-{point.replace(':', '-')}.txt"
    with open(err, "w") as stderr:
        proc = subprocess.Popen([sys.executable, str(DRIVER), point, *RUN, f"output_root={root}"],
                                stdout=subprocess.PIPE, stderr=stderr, text=True)
        for line in proc.stdout:
            if line.strip() == f"CRASHPOINT {point}":
                proc.send_signal(sig)
                break
        proc.stdout.close()
        code = proc.wait(timeout=120)
    assert line.strip() == f"CRASHPOINT {point}", f"never reached {point}: {err.read_text()[-2000:]}"
    return code, err.read_text()


def results(root: Path) -> dict:
    """What an interrupted-then-rerun run must reproduce exactly."""
    run = run_dir(root)
    return {
        "splits": read_json(run / "splits.json")["digest"],
        "phase1": read_json(run / "phase1" / "metrics.json")["splits"],
        "phase2": read_json(run / "phase2" / "thresholds.json")["thresholds"],
        "phase5": read_json(run / "phase5_scrc" / "scrcparams.json")["scrc_params"],
        "probes": read_json(run / "export" / "bundle" / "probes" / "probes.json"),
        "evaluation": read_json(run / "evaluation" / "metrics_summary.json")["conditions"],
    }


def assert_recovered(root: Path, reference: dict) -> None:
    run = run_dir(root)
    for name in PHASE_DIRS:
        assert StepManifest.load(run / name / "manifest.json").verify(run) == [], name
    assert [c for c in verify_bundle(run / "export" / "bundle") if not c.ok] == []
    assert leftovers(run) == []
    assert results(root) == reference


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    """The results of an uninterrupted run."""
    root = tmp_path_factory.mktemp("uninterrupted")
    proc = streetvision(root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return results(root)


POINTS = {  # crash point: (phase dir whose manifest must be missing after the kill, leftover it must leave)
    "splits-write": ("data", ".splits.json.tmp-"),
    "commit:splits": ("phase1", None),
    "training": ("phase1", None),
    "commit:phase1": ("phase2", None),
    "commit:phase2": ("phase5_scrc", None),
    "commit:phase5": ("export", None),
    "export": ("export", ".bundle.tmp-"),
    "commit:phase6": ("evaluation", None),
}


@pytest.mark.slow
@pytest.mark.parametrize("point", POINTS)
def test_sigkill_then_rerun_completes_clean_and_identical(point, reference, tmp_path):
    root = tmp_path / "outputs"
    code, _ = kill_at(root, point)
    assert code == -signal.SIGKILL
    uncommitted, leftover = POINTS[point]
    assert not (run_dir(root) / uncommitted / "manifest.json").exists()
    if leftover:  # the temp file or directory the killed writer left: the rerun must sweep it
        assert any(leftover in p for p in leftovers(run_dir(root))), leftovers(run_dir(root))
    proc = streetvision(root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_recovered(root, reference)


@pytest.mark.slow
def test_ctrl_c_during_training_exits_130_then_rerun_completes_row_17(reference, tmp_path):
    root = tmp_path / "outputs"
    code, stderr = kill_at(root, "training", signal.SIGINT)
    assert code == 130, stderr[-3000:]
    assert "interrupted; committed phases are intact" in stderr and "Traceback" not in stderr
    assert (run_dir(root) / "data" / "manifest.json").exists()
    assert not (run_dir(root) / "phase1" / "manifest.json").exists()
    assert streetvision(root).returncode == 0
    assert_recovered(root, reference)


def test_ctrl_c_in_training_is_reported_as_an_interrupt_in_process_row_17(tmp_path, capfd, monkeypatch):
    from streetvision.models.training import ClassifierModule

    def interrupted(self, batch, batch_idx):
        raise KeyboardInterrupt

    monkeypatch.delenv("STREETVISION_DEBUG", raising=False)
    monkeypatch.setattr(ClassifierModule, "training_step", interrupted)
    handler = signal.getsignal(signal.SIGINT)
    result = cli(capfd, "run", f"output_root={tmp_path}", "run_id=c", "model=dinov2_micro", "data.synthetic.n=48",
                 "training.progress_bar=false", "pipeline.phases=[phase1]")
    assert result.code == 130 and "interrupted; committed phases are intact" in result.err
    assert signal.getsignal(signal.SIGINT) is handler  # Lightning's SIG_IGN does not outlive the run
    run = run_dir(tmp_path)
    assert StepManifest.load(run / "data" / "manifest.json").verify(run) == []
    assert not (run / "phase1" / "manifest.json").exists()


def test_the_next_run_removes_what_a_killed_export_left_row_16(micro_run, tmp_path):
    """The fast form of the 'export' crash point: a real run directory holding a killed replace_dir's temp."""
    run = tmp_path / "outputs" / "stage1_ultimate" / "runs" / "b"
    shutil.copytree(micro_run, run, symlinks=True)
    shutil.copytree(run / "export" / "bundle", run / "export" / ".bundle.tmp-killed1")  # 11 MB in the demo
    bundle_before = snapshot(run / "export" / "bundle")
    cfg = load_run_config(run, ["pipeline.phases=[phase6]", "pipeline.force=false"])  # `export` saves force=true
    outcomes = run_pipeline(cfg, Console(quiet=True))
    assert [(o.name, o.status) for o in outcomes] == [("phase6", "up to date")]
    assert leftovers(run) == [] and snapshot(run / "export" / "bundle") == bundle_before
