"""``streetvision run`` with a crash point, for test_crash_recovery: at POINT the process prints
``CRASHPOINT POINT`` and waits; the test, reading that line, kills it (SIGKILL, or SIGINT for Ctrl-C), so the kill
lands exactly there. The same monkeypatch-in-a-child idea as tests/io/test_atomic.py, with the kill from outside.

    python crash_driver.py POINT [OVERRIDE ...]

POINT: ``commit:<phase>`` (a phase boundary: right after the phase's manifest is written), ``training`` (inside
phase1's fit, after the first epoch's validation), ``export`` (inside phase6: the bundle's temp directory holds the
model and model.onnx), ``splits-write`` (splits.json written to its temp file, not yet renamed into place).
"""

from __future__ import annotations

import os
import sys
import time


def hold(point: str) -> None:
    """Announce the crash point and wait to be killed."""
    print(f"CRASHPOINT {point}", flush=True)
    time.sleep(600)


def install(point: str) -> None:
    """Patch the function at ``point`` so that it holds there."""
    if point.startswith("commit:"):
        from streetvision.io.manifest import StepManifest

        phase, save = point.split(":", 1)[1], StepManifest.save

        def save_then_hold(self, path):
            digest = save(self, path)
            if self.step == phase:
                hold(point)
            return digest

        StepManifest.save = save_then_hold
    elif point == "training":
        from streetvision.models.training import CurveWriter

        end = CurveWriter.on_validation_end

        def end_then_hold(self, trainer, pl_module):
            end(self, trainer, pl_module)
            hold(point)

        CurveWriter.on_validation_end = end_then_hold
    elif point == "export":
        from streetvision.bundle import export

        export_onnx = export.export_onnx

        def onnx_then_hold(*args, **kwargs):
            export_onnx(*args, **kwargs)
            hold(point)

        export.export_onnx = onnx_then_hold
    elif point == "splits-write":
        replace = os.replace

        def hold_before_splits(src, dst, *args, **kwargs):
            if os.path.basename(dst) == "splits.json":
                hold(point)
            return replace(src, dst, *args, **kwargs)

        os.replace = hold_before_splits
    else:
        raise SystemExit(f"unknown crash point {point!r}")


if __name__ == "__main__":
    install(sys.argv[1])
    from streetvision.cli import main

    sys.exit(main(["run", *sys.argv[2:]]))
