"""benchmarks/gpu_check.py --quick: the GPU check's machinery (sections in child processes under a time budget, the
pipeline through the runner, training-step timing and FLOP counting, loader throughput, the JSON) on the CPU."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"


@pytest.mark.slow
def test_quick_run_completes_every_section_and_writes_the_json(tmp_path):  # ~60-90 s on 2 shared cores
    out = tmp_path / "gpu_check.json"
    env = dict(os.environ, OUT=str(tmp_path / "device_out"))
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--out", str(out)], capture_output=True,
                          text=True, timeout=400, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads(out.read_text())
    sections = results["sections"]
    assert {name: s["status"] for name, s in sections.items()} == dict.fromkeys(
        ("pipeline", "train_vit_s", "train_vit_b", "dataloader"), "ok")
    assert sections["pipeline"]["phase4"]["peft_validation_status"] == "PASS"
    assert [p["phase"] for p in sections["pipeline"]["phases"]] == [
        "splits", "phase4", "phase1", "phase2", "phase5", "phase6", "evaluation"]
    for key in ("eager", "compiled"):
        run = sections["train_vit_s"][key]
        assert run["status"] == "ok" and run["img_per_s"] > 0 and run["gflop_per_image"] > 0
    assert all(r["img_per_s"] > 0 for r in sections["dataloader"]["runs"])
    assert results["summary"]["pipeline_ok"] is True
    assert json.loads((tmp_path / "device_out" / "gpu_check.json").read_text()) == results
    assert "| train_vit_s | eager |" in proc.stdout


def test_a_failing_section_is_recorded_and_the_others_still_run(tmp_path):  # ~20 s: two child processes
    out = tmp_path / "gpu_check.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--out", str(out), "--only", "pipeline",
                           "train_vit_s", "--override=model.backbone=no-such-backbone"], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    sections = json.loads(out.read_text())["sections"]
    assert sections["pipeline"]["status"] == "error"
    assert "Cannot load backbone 'no-such-backbone'" in sections["pipeline"]["error"]
    assert "Traceback" in sections["pipeline"]["log_tail"]
    assert sections["train_vit_s"]["status"] == "ok" and sections["train_vit_s"]["eager"]["img_per_s"] > 0


def test_a_section_over_its_time_limit_is_killed_and_recorded(tmp_path):
    sys.path.insert(0, str(SCRIPT.parent))
    import gpu_check

    result = gpu_check.run_section("train_vit_s", gpu_check.Mode(quick=True), 0.5, tmp_path)
    assert result["status"] == "timeout after 0 s (partial results kept)" or result["status"].startswith("timeout")
    assert result["seconds"] < 10


def test_bf16_peak_is_read_from_the_device_name():
    sys.path.insert(0, str(SCRIPT.parent))
    import gpu_check

    assert gpu_check.bf16_peak_flops("NVIDIA H100 80GB HBM3") == 989.4e12
    assert gpu_check.bf16_peak_flops("NVIDIA H200") == 989.4e12
    assert gpu_check.bf16_peak_flops("NVIDIA H100 PCIe") == 756e12
    assert gpu_check.bf16_peak_flops("NVIDIA GeForce GTX 1080") is None
