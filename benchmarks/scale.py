"""Scale (issue #27): how the CLI's CPU time, wall time and peak memory grow with the number of full-HD photos.

For each size N (default 1k, 4k, 16k) the script builds a folder dataset of N labelled 1920x1080 JPEGs (one
sub-folder per class, the layout ``data=folder data.root=DIR`` reads) and times five operations, each a separate
``python -m streetvision.cli`` child process, on a fresh run directory with ``model=dinov2_micro``,
``hardware.num_workers=2`` and ``training.epochs=1``:

    splits      streetvision run pipeline.phases=[splits]      (list, decode + hash every file, group, split)
    phase1      streetvision run pipeline.phases=[phase1]      (one epoch of the micro model, then scoring)
    evaluation  streetvision run pipeline.phases=[evaluation]  (after phase2, phase5, phase6, which are not timed:
                                                                evaluation needs phase6's bundle, which needs a
                                                                policy from phase2 or phase5; the default chain)
    predict     streetvision predict BUNDLE DIR --out FILE --force   (every one of the N images)
    noop        the run command again with every phase above: all up to date, nothing may run

plus ``splits`` on a near-duplicate "burst" folder of N frames: 8 dashcam bursts (4 per class, the fewest that
the four splits accept), each frame the same scene shifted by up to 16 px, brightened or darkened by up to 5 % and
with fresh sensor noise, so that the near-duplicate grouping meets a few huge groups.

Per operation it records wall seconds, CPU seconds (user + system) and peak RSS from ``os.wait4`` on the child:
on Linux that rusage covers the child and every descendant it waited for (DataLoader workers, the splits scan's
process pool: both are joined), so CPU is the whole process tree's. ``ru_maxrss`` is the largest peak of any ONE
process among them (the child or a waited descendant), not the sum of processes alive at the same time; a
descendant that was never waited for is missing from both numbers.

Goals (each is judged in the JSON with the measured number and printed):

    cpu growth   for every operation and consecutive sizes N1 < N2:
                 cpu_ratio = (cpu(N2) / cpu(N1)) / (N2 / N1) <= 1.2 (at most 1.2x linear). A fixed start-up
                 cost (imports and the config, ~6 s of CPU) makes small sizes look sub-linear: the marginal CPU
                 per image between two sizes is in the ratio rows as well.
    flat memory  evaluation and predict: rss_ratio = peak RSS(largest N) / peak RSS(smallest N) <= 1.2.
    parallelism  splits at the largest N: cpu / wall >= 1.6 (both cores busy; only meaningful on a quiet machine:
                 the load averages around each operation are recorded).
    no-op        the rerun runs no phase (every phase "up to date"); its cost is in the tables.

Images are the embedded synthetic street scenes (streetvision.data.synthetic.render_scene, 224x224) stretched to
1920x1080 (bicubic), with Gaussian sensor noise (sigma 3) so that a file is ~265 KB like a camera's, saved as
JPEG quality 90. Generating them is not measured; they are cached under ``--work`` (default
~/.cache/streetvision/scale): one pool of scenes and one of burst frames, numbered, from which the folder of size N
hard-links the first N, so the 1k set is the start of the 4k set, which is the start of the 16k set, and a rerun
generates nothing. Generation runs in ``--gen-workers`` processes (default 2), ~40 ms of CPU per image. Run
directories (``WORK/runs``) are deleted before each size is measured. The files are read from the page cache
(they were just written or read): this measures the CLI, not the disk.

    .venv/bin/python benchmarks/scale.py                        # 1k, 4k, 16k (+ bursts); writes results/scale.json
    .venv/bin/python benchmarks/scale.py --quick                # 100, 200, 400: a smoke test of the machinery
    .venv/bin/python benchmarks/scale.py --sizes 1000 4000 --results /tmp/scale.json --work /data/scale
    .venv/bin/python benchmarks/scale.py --big 100000           # then splits + predict on 100k images too
                                                                # (predict with the largest size's bundle)

``--quick`` also sets evaluation.stream_steps=100: the simulated validator stream (1000 challenges by default)
costs a fixed ~80 s of CPU at full HD whatever N is. At the --quick sizes evaluation's peak RSS still grows with N
(it holds up to two scoring batches of 64 decoded full-HD frames, ~6 MB each: flat only once the test split, 15 %,
has ~128 images, N >~ 850), so its rss goal is expected to fail there; --quick proves the machinery, not the goals.

``--work`` must be new, empty, or a folder this script used before (it holds ``.streetvision-scale-work``): the
script deletes its own run directories and stale set files there, so it refuses a folder with anything else.

Disk: ~265 KB per image, so 1k+4k+16k takes ~4.3 GB of scenes + ~4.3 GB of burst frames; ``--big 100000`` adds
~22 GB of scenes (no bursts at that size). The script checks the free space before generating.

Expected time on 2 quiet cores, from the CPU per image of --quick runs on a loaded machine: generating ~40 ms of
CPU per image (~11 min for 16k scenes + 16k burst frames, 2 processes); the measured operations ~4 min at 1k,
~9 min at 4k and ~32 min at 16k, most of it evaluation (~0.4 s of CPU per test image: every validator condition
distorts the full-HD frame; plus the ~80 s stream) and predict (~25 ms per image); about an hour in all.
``--big 100000``: ~30 min more generation, splits ~10 min, predict ~40 min. Run it on a quiet machine: other
processes inflate CPU seconds a little but wall seconds (and so the parallelism) a lot.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import RESULTS, machine_facts, print_table  # noqa: E402

from streetvision.io import atomic_write_json  # noqa: E402
from streetvision.io.manifest import library_versions, utc_now  # noqa: E402

GOAL_CPU_RATIO = 1.2  # cpu(N2)/cpu(N1) over N2/N1, at most
GOAL_RSS_RATIO = 1.2  # peak RSS at the largest size over the smallest, at most (evaluation, predict)
GOAL_PARALLELISM = 1.6  # splits: CPU seconds per wall second, at least
RSS_OPS = ("evaluation", "predict")

SIZES = (1000, 4000, 16000)
QUICK_SIZES = (100, 200, 400)
# --quick only: the simulated validator stream is a fixed ~80 s of CPU at full HD whatever N is (1000 challenges,
# each distorting a 1920x1080 frame), which would make a smoke test last minutes
QUICK_OVERRIDES = ("evaluation.stream_steps=100",)
WIDTH, HEIGHT, QUALITY, NOISE_SIGMA = 1920, 1080, 90, 3.0
BURSTS, BURST_SHIFT, BURST_SEED = 8, 16, 1
POOL_VERSION = "v1"  # bump when the images change: the cache then starts afresh
BYTES_PER_IMAGE = 280_000  # a little above the measured ~265 KB mean, for the free-space check
CLASS_DIRS = ("no_roadwork", "roadwork")
ALL_PHASES = "[splits,phase1,phase2,phase5,phase6,evaluation]"


# ---------------------------------------------------------------------------------------------- arithmetic
def cpu_ratio(cpu1: float, n1: int, cpu2: float, n2: int) -> float:
    """CPU growth relative to linear: 1.0 when CPU grows as N does, 2.0 when it grows twice as fast."""
    return (cpu2 / cpu1) / (n2 / n1)


def rss_ratio(rss_small: float, rss_large: float) -> float:
    """Peak RSS at the larger size over the smaller: 1.0 is flat."""
    return rss_large / rss_small


def growth(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (operation, data) and consecutive sizes: N1, N2, cpu_ratio, the marginal CPU per image between
    them (ms), and the peak RSS ratio. Rows without cpu_s (failed) are left out."""
    out = []
    for (op, data), series in _series(rows).items():
        for a, b in zip(series, series[1:]):
            out.append({"op": op, "data": data, "n1": a["n"], "n2": b["n"],
                        "cpu_ratio": cpu_ratio(a["cpu_s"], a["n"], b["cpu_s"], b["n"]),
                        "marginal_cpu_ms_per_image": 1000 * (b["cpu_s"] - a["cpu_s"]) / (b["n"] - a["n"]),
                        "rss_ratio": rss_ratio(a["peak_rss_mb"], b["peak_rss_mb"])})
    return out


def goals(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each goal with its measured number and pass/fail (see the module docstring)."""
    out = []
    series = _series(rows)
    for (op, data), s in series.items():
        for a, b in zip(s, s[1:]):
            value = cpu_ratio(a["cpu_s"], a["n"], b["cpu_s"], b["n"])
            out.append({"goal": "cpu_ratio", "op": op, "data": data, "sizes": f"{a['n']}->{b['n']}",
                        "value": value, "target": f"<= {GOAL_CPU_RATIO}", "pass": value <= GOAL_CPU_RATIO})
    for op in RSS_OPS:
        s = series.get((op, "scenes"), [])
        if len(s) >= 2:
            value = rss_ratio(s[0]["peak_rss_mb"], s[-1]["peak_rss_mb"])
            out.append({"goal": "rss_ratio", "op": op, "data": "scenes", "sizes": f"{s[0]['n']}->{s[-1]['n']}",
                        "value": value, "target": f"<= {GOAL_RSS_RATIO}", "pass": value <= GOAL_RSS_RATIO})
    s = series.get(("splits", "scenes"), [])
    if s:
        value = s[-1]["cpu_s"] / s[-1]["wall_s"]
        out.append({"goal": "parallelism", "op": "splits", "data": "scenes", "sizes": str(s[-1]["n"]),
                    "value": value, "target": f">= {GOAL_PARALLELISM}", "pass": value >= GOAL_PARALLELISM})
    for r in rows:
        if r["op"] == "noop" and "phases_run" in r:
            out.append({"goal": "noop_runs_nothing", "op": "noop", "data": r["data"], "sizes": str(r["n"]),
                        "value": float(r["phases_run"]), "target": "== 0", "pass": r["phases_run"] == 0})
    return out


def _series(rows: list[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Successful rows grouped by (op, data), sorted by N, in first-seen order of the groups."""
    series: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        if r.get("cpu_s") is not None and r.get("returncode", 0) == 0:
            series.setdefault((r["op"], r["data"]), []).append(r)
    return {k: sorted(v, key=lambda r: r["n"]) for k, v in series.items()}


# ---------------------------------------------------------------------------------------------- measuring
@dataclass
class Usage:
    """What one child process (and its waited-for descendants) cost."""

    returncode: int
    wall_s: float
    cpu_s: float
    user_s: float
    sys_s: float
    peak_rss_mb: float


def measure(cmd: list[str], log: Path) -> Usage:
    """Run ``cmd`` with stdout + stderr to ``log``; wall time, and the rusage of ``os.wait4`` on it (Linux: the
    child plus the descendants it waited for; ru_maxrss in KiB, the largest single process)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        _, status, ru = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
    return Usage(proc.returncode, wall, ru.ru_utime + ru.ru_stime, ru.ru_utime, ru.ru_stime, ru.ru_maxrss / 1024)


def cli(*args: str) -> list[str]:
    """The command line of ``streetvision ARGS`` in this interpreter."""
    return [sys.executable, "-m", "streetvision.cli", *args]


def run_overrides(root: Path, work: Path, run_id: str, workers: int, extra: list[str] | None = None) -> list[str]:
    """The overrides every ``run`` of one size shares (the same on each, so the no-op rerun is one)."""
    return ["data=folder", f"data.root={root}", "model=dinov2_micro", f"hardware.num_workers={workers}",
            "training.epochs=1", "training.progress_bar=false", f"output_root={work / 'runs'}", f"run_id={run_id}",
            *(extra or [])]


def tail(path: Path, chars: int = 3000) -> str:
    text = path.read_text(errors="replace") if path.is_file() else ""
    return text[-chars:]


# ---------------------------------------------------------------------------------------------- images
_NOISE: Any = None
_BURST_BASE: dict[int, Any] = {}


def _noise_field() -> Any:
    """One fixed field of sensor noise per process (int16, HEIGHT x WIDTH x 3), rolled per image."""
    global _NOISE
    if _NOISE is None:
        import numpy as np

        rng = np.random.default_rng(1234)
        _NOISE = np.rint(rng.normal(0.0, NOISE_SIGMA, (HEIGHT, WIDTH, 3))).astype(np.int16)
    return _NOISE


def _finish(arr: Any, gain: float, shift: int) -> Any:
    """Brightness gain, the noise field rolled by ``shift`` columns, clipped to 8 bits, as a PIL image."""
    import numpy as np
    from PIL import Image

    out = arr.astype(np.int16)
    if gain != 1.0:
        out = np.rint(out * gain).astype(np.int16)
    out += np.roll(_noise_field(), shift, axis=1)
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))


def scene_image(i: int) -> tuple[Any, int]:
    """Scene ``i`` of the pool (label i % 2), full HD, and its label."""
    import numpy as np
    from PIL import Image

    from streetvision.data.synthetic import render_scene

    scene = render_scene(i, seed=0)
    arr = np.asarray(scene.image.resize((WIDTH, HEIGHT), Image.BICUBIC))
    return _finish(arr, 1.0, (i * 7919) % WIDTH), scene.label


def burst_image(i: int) -> tuple[Any, int]:
    """Frame ``i`` of the burst pool: burst i % BURSTS (label burst % 2), shifted, brightened, fresh noise."""
    import numpy as np
    from PIL import Image

    from streetvision.data.synthetic import render_scene

    b = i % BURSTS
    if b not in _BURST_BASE:
        big = render_scene(b, seed=BURST_SEED, label=b % 2).image
        _BURST_BASE[b] = np.asarray(big.resize((WIDTH + 2 * BURST_SHIFT, HEIGHT + 2 * BURST_SHIFT), Image.BICUBIC))
    rng = np.random.default_rng([BURST_SEED, i])
    dx, dy = (int(v) for v in rng.integers(0, 2 * BURST_SHIFT + 1, 2))
    arr = _BURST_BASE[b][dy:dy + HEIGHT, dx:dx + WIDTH]
    return _finish(arr, float(rng.uniform(0.95, 1.05)), int(rng.integers(WIDTH))), b % 2


KINDS = {"scenes": (scene_image, "scene"), "burst": (burst_image, "frame")}


def pool_path(work: Path, kind: str, i: int) -> Path:
    """Where image ``i`` of a pool lives: both pools put image i in class i % 2 (render_scene's default label; burst
    i % BURSTS has label (i % BURSTS) % 2, the same)."""
    return work / f"pool-{POOL_VERSION}" / kind / CLASS_DIRS[i % 2] / f"{KINDS[kind][1]}_{i:06d}.jpg"


def _write_range(work: str, kind: str, start: int, stop: int) -> int:
    """Render and save images start..stop-1 of a pool that are missing (atomic: temp file, then rename)."""
    render, _ = KINDS[kind]
    made = 0
    for i in range(start, stop):
        target = pool_path(Path(work), kind, i)
        if target.exists():
            continue
        image, label = render(i)
        assert label == i % 2, (kind, i, label)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        image.save(tmp, format="JPEG", quality=QUALITY)
        os.replace(tmp, target)
        made += 1
    return made


def ensure_pool(work: Path, kind: str, n: int, workers: int) -> None:
    """Images 0..n-1 of the pool exist; the missing ones are rendered in ``workers`` processes."""
    missing = [i for i in range(n) if not pool_path(work, kind, i).exists()]
    if not missing:
        return
    need = len(missing) * BYTES_PER_IMAGE
    free = shutil.disk_usage(work).free
    if need > free - 2 * 2**30:
        raise SystemExit(f"generating {len(missing)} {kind} images needs ~{need / 2**30:.1f} GiB; {work} has "
                         f"{free / 2**30:.1f} GiB free (keeping 2 GiB): pass --work on a larger disk")
    start = time.perf_counter()
    print(f"generating {len(missing)} {kind} images (~{need / 2**30:.1f} GiB) in {workers} processes ...",
          file=sys.stderr, flush=True)
    chunk = 64
    ranges = [(missing[k], missing[min(k + chunk, len(missing)) - 1] + 1) for k in range(0, len(missing), chunk)]
    if workers > 1:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            list(pool.map(_write_range, [str(work)] * len(ranges), [kind] * len(ranges), *zip(*ranges)))
    else:
        for a, b in ranges:
            _write_range(str(work), kind, a, b)
    print(f"  done in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)


def ensure_set(work: Path, kind: str, n: int, workers: int) -> Path:
    """A folder of images 0..n-1 of a pool, hard-linked (copied where links fail), nothing else in it."""
    ensure_pool(work, kind, n, workers)
    root = work / f"sets-{POOL_VERSION}" / f"{kind}-{n}"
    wanted = {}
    for i in range(n):
        src = pool_path(work, kind, i)
        wanted[root / src.parent.name / src.name] = src
    for c in CLASS_DIRS:
        (root / c).mkdir(parents=True, exist_ok=True)
        for p in (root / c).iterdir():
            if p not in wanted:
                p.unlink()
    for dst, src in wanted.items():
        if not dst.exists():
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)
    return root


# ---------------------------------------------------------------------------------------------- the benchmark
WORK_MARKER = ".streetvision-scale-work"  # written into --work: only a folder holding it is written into


def claim_work(work: Path) -> Path:
    """``work``, created with the marker, or already marked; SystemExit for a folder with other content (the
    benchmark deletes run directories and stale set files inside it, never a user's files)."""
    if work.exists() and not (work / WORK_MARKER).is_file() and any(work.iterdir()):
        raise SystemExit(f"--work {work} already holds files this benchmark did not make; pass a new or empty "
                         f"folder (or one a previous run of benchmarks/scale.py used).")
    work.mkdir(parents=True, exist_ok=True)
    (work / WORK_MARKER).touch()
    return work


class Bench:
    """Measures operations, keeps the rows and rewrites the results file after each (a crash keeps the rest)."""

    def __init__(self, args: argparse.Namespace, sizes: list[int]) -> None:
        self.args, self.sizes = args, sizes
        self.work = claim_work(Path(args.work).expanduser().resolve())
        self.logs = self.work / "logs"
        self.rows: list[dict[str, Any]] = []
        self.results = Path(args.results)
        self.extra = [*(QUICK_OVERRIDES if args.quick else ()), *args.set]

    def op(self, op: str, data: str, n: int, cmd: list[str], extra: Any = None) -> dict[str, Any]:
        """Measure one command; raise SystemExit with the log's tail when it fails."""
        log = self.logs / f"{data}-{n}-{op}.log"
        load = os.getloadavg()[0]
        usage = measure(cmd, log)
        row = {"op": op, "data": data, "n": n, "wall_s": usage.wall_s, "cpu_s": usage.cpu_s,
               "cpu_per_wall": usage.cpu_s / usage.wall_s, "cpu_ms_per_image": 1000 * usage.cpu_s / n,
               "peak_rss_mb": usage.peak_rss_mb, "user_s": usage.user_s, "sys_s": usage.sys_s,
               "load1_before": load, "load1_after": os.getloadavg()[0], "returncode": usage.returncode}
        if usage.returncode == 0 and extra is not None:
            row.update(extra(log))
        self.rows.append(row)
        print(f"  {data:6s} {n:>7} {op:10s} wall {usage.wall_s:7.1f} s  cpu {usage.cpu_s:7.1f} s  "
              f"rss {usage.peak_rss_mb:6.0f} MB  (load {load:.1f})", file=sys.stderr, flush=True)
        self.save(complete=False)
        if usage.returncode != 0:
            raise SystemExit(f"{op} on {data}-{n} failed (exit {usage.returncode}); {log}:\n{tail(log)}")
        return row

    def prepare(self, cmd: list[str], name: str) -> None:
        """Run an unmeasured step; raise SystemExit with the log's tail when it fails."""
        log = self.logs / f"{name}.log"
        usage = measure(cmd, log)
        if usage.returncode != 0:
            raise SystemExit(f"{name} failed (exit {usage.returncode}); {log}:\n{tail(log)}")

    def fresh_run(self, overrides: list[str]) -> Path:
        """The run directory these overrides name (the CLI's rule: ArtifactSchema), deleted."""
        from streetvision.config import load_config
        from streetvision.pipeline.artifacts import ArtifactSchema

        run_dir = ArtifactSchema.from_config(load_config(overrides)).run_dir
        shutil.rmtree(run_dir, ignore_errors=True)
        return run_dir

    def size(self, n: int) -> None:
        """The five operations on the scenes set of size n."""
        w, work = self.args.workers, self.work
        root = ensure_set(work, "scenes", n, self.args.gen_workers)
        common = run_overrides(root, work, f"scenes-{n}", w, self.extra)
        run_dir = self.fresh_run(common)

        def splits_facts(_log: Path) -> dict[str, Any]:
            from streetvision.io import read_json

            report = read_json(run_dir / "data" / "data_report.json")
            return {"duplicates_merged": report.get("duplicates_merged")}

        self.op("splits", "scenes", n, cli("run", "pipeline.phases=[splits]", *common), splits_facts)
        self.op("phase1", "scenes", n, cli("run", "pipeline.phases=[phase1]", *common))
        self.prepare(cli("run", "pipeline.phases=[phase2,phase5,phase6]", *common), f"scenes-{n}-phase2-5-6")
        self.op("evaluation", "scenes", n, cli("run", "pipeline.phases=[evaluation]", *common))
        bundle = run_dir / "export" / "bundle"
        out = work / "out" / f"predict-scenes-{n}.csv"
        out.parent.mkdir(parents=True, exist_ok=True)
        self.op("predict", "scenes", n, cli("predict", str(bundle), str(root), "--out", str(out), "--force"),
                lambda _log: {"rows_written": max(0, len(out.read_text().splitlines()) - 1)})
        self.op("noop", "scenes", n, cli("run", f"pipeline.phases={ALL_PHASES}", *common), noop_facts)
        self.last_bundle = bundle

    def burst(self, n: int) -> None:
        """splits on n near-identical burst frames."""
        root = ensure_set(self.work, "burst", n, self.args.gen_workers)
        overrides = run_overrides(root, self.work, f"burst-{n}", self.args.workers, self.extra)
        run_dir = self.fresh_run(overrides)

        def facts(_log: Path) -> dict[str, Any]:
            from streetvision.io import read_json

            return {"duplicates_merged": read_json(run_dir / "data" / "data_report.json").get("duplicates_merged")}

        self.op("splits", "burst", n, cli("run", "pipeline.phases=[splits]", *overrides), facts)

    def big(self, n: int) -> None:
        """splits and predict (with the largest size's bundle) on n scenes."""
        root = ensure_set(self.work, "scenes", n, self.args.gen_workers)
        overrides = run_overrides(root, self.work, f"scenes-{n}", self.args.workers, self.extra)
        self.fresh_run(overrides)
        self.op("splits", "scenes", n, cli("run", "pipeline.phases=[splits]", *overrides))
        out = self.work / "out" / f"predict-scenes-{n}.csv"
        self.op("predict", "scenes", n, cli("predict", str(self.last_bundle), str(root), "--out", str(out),
                                            "--force"))

    def save(self, complete: bool) -> dict[str, Any]:
        facts = {**machine_facts(), "cpu_count": os.cpu_count(), "load_avg_now": list(os.getloadavg()),
                 "mem_total_gb": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9,
                 "python": sys.version.split()[0],
                 "work_disk_free_gb": shutil.disk_usage(self.work).free / 1e9 if self.work.exists() else None}
        result = {
            "benchmark": "scale", "measured_at": utc_now(), "complete": complete,
            "notes": ("CPU = user + system of the child and its waited-for descendants (os.wait4); peak_rss_mb = "
                      "the largest single process's peak among them; ops are separate CLI processes on fresh run "
                      "directories; images 1920x1080 JPEG q90 (synthetic scenes stretched from 224 px, noise "
                      "sigma 3); evaluation measured alone after untimed phase2, phase5, phase6"),
            "settings": {"sizes": self.sizes, "big": self.args.big, "burst": not self.args.no_burst,
                         "num_workers": self.args.workers, "model": "dinov2_micro", "epochs": 1,
                         "extra_overrides": self.extra,
                         "image": {"width": WIDTH, "height": HEIGHT, "jpeg_quality": QUALITY,
                                   "noise_sigma": NOISE_SIGMA, "bursts": BURSTS, "burst_shift_px": BURST_SHIFT},
                         "work": str(self.work)},
            "rows": self.rows, "ratios": growth(self.rows), "goals": goals(self.rows),
            "machine": facts, "versions": library_versions(),
        }
        atomic_write_json(self.results, result)
        return result


def noop_facts(log: Path) -> dict[str, Any]:
    """How many phases the rerun skipped ("up to date") and ran ("done in")."""
    text = log.read_text(errors="replace")
    return {"phases_up_to_date": text.count(": up to date"), "phases_run": text.count(" done in ")}


def summary_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    keep = ("op", "data", "n", "wall_s", "cpu_s", "cpu_per_wall", "cpu_ms_per_image", "peak_rss_mb", "load1_before")
    return [{k: r.get(k) for k in keep} for r in rows]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", help=f"dataset sizes (default {' '.join(map(str, SIZES))})")
    parser.add_argument("--quick", action="store_true",
                        help=f"sizes {' '.join(map(str, QUICK_SIZES))} and {' '.join(QUICK_OVERRIDES)}: a smoke test")
    parser.add_argument("--big", type=int, default=0, help="also splits + predict on this many images, e.g. 100000")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="an extra override for every `streetvision run` (repeatable), e.g. "
                             "evaluation.stream_steps=0")
    parser.add_argument("--no-burst", action="store_true", help="skip the near-duplicate burst case")
    parser.add_argument("--work", default=os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"),
                                                       "streetvision", "scale"),
                        help="image cache, run directories and logs (default ~/.cache/streetvision/scale)")
    parser.add_argument("--results", default=str(RESULTS / "scale.json"), help="the JSON to write")
    parser.add_argument("--workers", type=int, default=2, help="hardware.num_workers of the runs (default 2)")
    parser.add_argument("--gen-workers", type=int, default=2, help="processes generating images (default 2)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    sizes = sorted(args.sizes or (QUICK_SIZES if args.quick else SIZES))
    if sizes[0] < 40:
        raise SystemExit("each size needs >= 40 images: every class needs a group in each of the four splits")
    bench = Bench(args, sizes)
    bench.work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    for n in sizes:
        bench.size(n)
        if not args.no_burst:
            bench.burst(n)
    if args.big:
        bench.big(args.big)
    result = bench.save(complete=True)
    print_table(summary_rows(bench.rows))
    print()
    print_table(result["ratios"])
    print()
    print_table([{**g, "pass": "PASS" if g["pass"] else "FAIL"} for g in result["goals"]])
    print(f"\n{result['notes']}.\ntotal {time.perf_counter() - start:.0f} s (generation included)")
    print(f"written: {bench.results}")


if __name__ == "__main__":
    main()
