"""benchmarks/backbones.py --quick: every family's micro preset is built as the model presets train it (pooling=family,
full fine-tuning), timed for inference and training, and written to the JSON given by --out (never the committed
results file); ~15-30 s on 2 shared cores."""

import json
import subprocess
import sys
from pathlib import Path

from streetvision.models.families import FAMILIES

MINER_FAMILIES = [t for t, f in FAMILIES.items() if f.natix]  # the ones with presets
from tests.benchmarks.conftest import BENCHMARKS, benchmark_script

SCRIPT = BENCHMARKS / "backbones.py"
COMMITTED = BENCHMARKS / "results" / "backbones.json"


def test_quick_run_measures_every_family_and_writes_the_json_where_asked(tmp_path):
    committed_before = COMMITTED.read_bytes() if COMMITTED.exists() else None
    out = tmp_path / "nested" / "backbones.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--no-cuda", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["benchmark"] == "backbones_quick"
    assert results["settings"]["quick"] is True and results["settings"]["devices"] == ["cpu"]
    assert results["settings"]["batch"] == 32 and results["settings"]["repeats"] == 2
    assert {"platform", "torch_threads"} <= set(results["machine"]) and "torch" in results["versions"]
    rows = results["rows"]
    assert [r["family"] for r in rows] == MINER_FAMILIES
    for r in rows:
        assert r["status"] == "ok", r.get("traceback")
        assert r["preset"].endswith("-micro") and r["input_px"] == 56
        assert r["params"] > 0 and r["trainable_params"] > 0 and r["gflop_fwd"] > 0
        assert r["cpu_infer_img_per_s"] > 0 and r["cpu_train_img_per_s"] > 0
        assert len(r["cpu_infer_s_samples"]) == 2 and len(r["cpu_train_s_samples"]) == 2
        assert all(s > 0 for s in r["cpu_infer_s_samples"] + r["cpu_train_s_samples"])
    assert "| dinov2 | dinov2-micro | 56 |" in proc.stdout
    assert f"written: {out}" in proc.stdout
    assert (COMMITTED.read_bytes() if COMMITTED.exists() else None) == committed_before


def test_families_subset_and_an_alias_are_accepted(tmp_path):
    out = tmp_path / "b.json"
    with benchmark_script("backbones") as backbones:
        assert backbones.main(["--quick", "--no-cuda", "--families", "resnet", "siglip", "--repeats", "1",
                               "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [(r["family"], r["preset"]) for r in rows] == [("resnet", "resnet-micro"),
                                                         ("siglip_vision_model", "siglip-micro")]
    assert all(len(r["cpu_train_s_samples"]) == 1 for r in rows)


def test_a_failing_family_is_recorded_and_the_run_exits_nonzero(tmp_path, monkeypatch):
    out = tmp_path / "b.json"
    with benchmark_script("backbones") as backbones:
        real_build = backbones.build

        def build(preset):
            if preset.startswith("swin"):
                raise RuntimeError("planted")
            return real_build(preset)

        monkeypatch.setattr(backbones, "build", build)
        assert backbones.main(["--quick", "--no-cuda", "--families", "swin", "resnet", "--repeats", "1",
                               "--out", str(out)]) == 1
    swin, resnet = json.loads(out.read_text())["rows"]
    assert swin["status"] == "error" and swin["error"] == "RuntimeError: planted"
    assert resnet["status"] == "ok" and resnet["cpu_train_img_per_s"] > 0


def test_every_family_has_a_cpu_and_a_micro_preset():
    with benchmark_script("backbones") as backbones:
        assert set(backbones.PRESETS) == set(MINER_FAMILIES)
        assert not any(cpu.endswith("-micro") for cpu, _ in backbones.PRESETS.values())
    assert Path(SCRIPT).exists()
