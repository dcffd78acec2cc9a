"""benchmarks/scale.py: the growth-ratio and goal arithmetic on fixed numbers, the process-tree accounting of
``measure`` (a grandchild's CPU is counted), and (slow) a ``--quick`` run at tiny sizes into a temporary JSON."""

import json
import subprocess
import sys

import pytest

from tests.benchmarks.conftest import BENCHMARKS, benchmark_script

SCRIPT = BENCHMARKS / "scale.py"


@pytest.fixture(scope="module")
def scale():
    with benchmark_script("scale") as module:
        yield module


def row(op, n, cpu, wall, rss, data="scenes", **extra):
    return {"op": op, "data": data, "n": n, "cpu_s": cpu, "wall_s": wall, "peak_rss_mb": rss, "returncode": 0,
            **extra}


ROWS = [
    row("splits", 1000, 10.0, 5.0, 500.0), row("splits", 4000, 40.0, 22.0, 510.0),
    row("splits", 16000, 200.0, 100.0, 520.0),  # 4000 -> 16000: 5x the CPU for 4x the images
    row("predict", 1000, 20.0, 20.0, 400.0), row("predict", 4000, 80.0, 80.0, 420.0),
    row("predict", 16000, 300.0, 300.0, 500.0),  # RSS 400 -> 500: +25 %
    row("evaluation", 1000, 50.0, 45.0, 800.0), row("evaluation", 16000, 700.0, 600.0, 880.0),
    row("noop", 1000, 6.0, 6.0, 550.0, phases_run=0), row("noop", 4000, 6.5, 6.5, 550.0, phases_run=1),
    row("splits", 1000, 8.0, 6.0, 500.0, data="burst"),
]


def test_cpu_ratio_is_growth_relative_to_linear(scale):
    assert scale.cpu_ratio(10.0, 1000, 40.0, 4000) == pytest.approx(1.0)
    assert scale.cpu_ratio(10.0, 1000, 80.0, 4000) == pytest.approx(2.0)
    assert scale.cpu_ratio(40.0, 4000, 200.0, 16000) == pytest.approx(1.25)
    assert scale.cpu_ratio(10.0, 1000, 10.0, 4000) == pytest.approx(0.25)  # a fixed cost: flat
    assert scale.rss_ratio(400.0, 500.0) == pytest.approx(1.25)


def test_growth_pairs_consecutive_sizes_of_each_operation(scale):
    ratios = {(r["op"], r["data"], r["n1"], r["n2"]): r for r in scale.growth(ROWS)}
    assert set(ratios) == {("splits", "scenes", 1000, 4000), ("splits", "scenes", 4000, 16000),
                           ("predict", "scenes", 1000, 4000), ("predict", "scenes", 4000, 16000),
                           ("evaluation", "scenes", 1000, 16000), ("noop", "scenes", 1000, 4000)}
    r = ratios[("splits", "scenes", 4000, 16000)]
    assert r["cpu_ratio"] == pytest.approx(1.25)
    assert r["marginal_cpu_ms_per_image"] == pytest.approx(1000 * 160 / 12000)
    assert r["rss_ratio"] == pytest.approx(520 / 510)
    assert ratios[("evaluation", "scenes", 1000, 16000)]["cpu_ratio"] == pytest.approx((700 / 50) / 16)


def test_goals_judge_each_number_against_its_target(scale):
    goals = {(g["goal"], g["op"], g["data"], g["sizes"]): g for g in scale.goals(ROWS)}
    cpu = goals[("cpu_ratio", "splits", "scenes", "1000->4000")]
    assert cpu["value"] == pytest.approx(1.0) and cpu["pass"] is True and cpu["target"] == "<= 1.2"
    assert goals[("cpu_ratio", "splits", "scenes", "4000->16000")]["pass"] is False  # 1.25
    assert goals[("cpu_ratio", "evaluation", "scenes", "1000->16000")]["pass"] is True  # 0.875
    rss = goals[("rss_ratio", "predict", "scenes", "1000->16000")]  # smallest to largest, not consecutive
    assert rss["value"] == pytest.approx(1.25) and rss["pass"] is False
    assert goals[("rss_ratio", "evaluation", "scenes", "1000->16000")]["value"] == pytest.approx(1.1)
    assert ("rss_ratio", "splits", "scenes", "1000->16000") not in goals  # memory goal: evaluation, predict only
    par = goals[("parallelism", "splits", "scenes", "16000")]  # judged at the largest size
    assert par["value"] == pytest.approx(2.0) and par["pass"] is True and par["target"] == ">= 1.6"
    assert goals[("noop_runs_nothing", "noop", "scenes", "1000")]["pass"] is True
    assert goals[("noop_runs_nothing", "noop", "scenes", "4000")]["pass"] is False
    assert not any(g["data"] == "burst" and g["goal"] != "cpu_ratio" for g in goals.values())


def test_parallelism_below_target_fails_and_failed_rows_are_left_out(scale):
    rows = [row("splits", 100, 3.0, 2.5, 500.0), row("splits", 200, 99.0, 1.0, 500.0, returncode=1)]
    goals = scale.goals(rows)
    assert [(g["goal"], g["sizes"], g["pass"]) for g in goals] == [("parallelism", "100", False)]
    assert goals[0]["value"] == pytest.approx(1.2)
    assert scale.growth(rows) == []


def test_noop_facts_count_skipped_and_run_phases(scale, tmp_path):
    log = tmp_path / "noop.log"
    log.write_text("= splits: up to date (pipeline.force=true reruns it)\n= phase1: up to date (...)\n"
                   "✓ evaluation done in 3.1s\n")
    assert scale.noop_facts(log) == {"phases_up_to_date": 2, "phases_run": 1}


def test_measure_counts_the_cpu_of_waited_descendants(scale, tmp_path):  # ~1 s: one child, one grandchild
    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.4: pass\n"
    child = f"import subprocess, sys\nsubprocess.run([sys.executable, '-c', {burn!r}], check=True)\n"
    usage = scale.measure([sys.executable, "-c", child], tmp_path / "log")
    assert usage.returncode == 0
    assert usage.cpu_s >= 0.4  # the grandchild's 0.4 s of CPU, through the child that waited for it
    assert usage.peak_rss_mb > 1
    failed = scale.measure([sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"], tmp_path / "log2")
    assert failed.returncode == 3 and "boom" in (tmp_path / "log2").read_text()


@pytest.mark.slow
def test_quick_run_measures_every_operation_and_writes_the_json(tmp_path):  # ~3 min on 2 shared cores (loaded)
    out = tmp_path / "scale.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--sizes", "60", "120", "--work",
                           str(tmp_path / "work"), "--results", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["complete"] is True
    assert {(r["op"], r["data"], r["n"]) for r in result["rows"]} == {
        *((op, "scenes", n) for op in ("splits", "phase1", "evaluation", "predict", "noop") for n in (60, 120)),
        ("splits", "burst", 60), ("splits", "burst", 120)}
    for r in result["rows"]:
        assert r["returncode"] == 0 and r["cpu_s"] > 0 and r["wall_s"] > 0 and r["peak_rss_mb"] > 50
    noop = [r for r in result["rows"] if r["op"] == "noop"]
    assert all(r["phases_run"] == 0 and r["phases_up_to_date"] == 6 for r in noop)
    assert all(r["rows_written"] == r["n"] for r in result["rows"] if r["op"] == "predict")
    burst = [r for r in result["rows"] if r["data"] == "burst"]
    assert all(r["duplicates_merged"] >= r["n"] - 2 * 8 for r in burst)  # 8 bursts: nearly all frames merged
    assert {g["goal"] for g in result["goals"]} == {"cpu_ratio", "rss_ratio", "parallelism", "noop_runs_nothing"}
    assert result["settings"]["extra_overrides"] == ["evaluation.stream_steps=100"]
    assert "| splits | burst | 120 |" in proc.stdout


def test_sets_are_prefixes_of_one_cached_pool(scale, tmp_path):  # renders 6 + 4 full-HD images, ~1 s
    small = scale.ensure_set(tmp_path, "scenes", 4, workers=1)
    large = scale.ensure_set(tmp_path, "scenes", 6, workers=1)
    names = {c: sorted(p.name for p in (large / c).iterdir()) for c in scale.CLASS_DIRS}
    assert names == {"no_roadwork": ["scene_000000.jpg", "scene_000002.jpg", "scene_000004.jpg"],
                     "roadwork": ["scene_000001.jpg", "scene_000003.jpg", "scene_000005.jpg"]}
    first = large / "roadwork" / "scene_000001.jpg"
    assert first.stat().st_ino == (small / "roadwork" / "scene_000001.jpg").stat().st_ino  # one file, linked
    from PIL import Image

    with Image.open(first) as im:
        assert (im.size, im.format) == ((1920, 1080), "JPEG")
    mtime = first.stat().st_mtime_ns
    assert scale.ensure_set(tmp_path, "scenes", 6, workers=1) == large and first.stat().st_mtime_ns == mtime
    burst = scale.ensure_set(tmp_path, "burst", 4, workers=1)
    assert sorted(p.name for p in (burst / "roadwork").iterdir()) == ["frame_000001.jpg", "frame_000003.jpg"]


def test_the_work_folder_is_claimed_only_when_new_empty_or_already_the_benchmarks(scale, tmp_path):
    assert scale.claim_work(tmp_path / "new") == tmp_path / "new"
    assert scale.claim_work(tmp_path / "new") == tmp_path / "new"  # marked by the first claim
    users = tmp_path / "users"
    users.mkdir()
    (users / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit, match="already holds files this benchmark did not make"):
        scale.claim_work(users)
    assert (users / "notes.txt").read_text() == "mine" and not (users / scale.WORK_MARKER).exists()
