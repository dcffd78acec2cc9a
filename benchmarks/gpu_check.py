"""GPU check: the pipeline's GPU path on one CUDA GPU, training throughput and model FLOP utilisation (MFU), and
whether the data loader keeps up. Run it on the GPU machine from the repository root:

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD/src && python3 benchmarks/gpu_check.py

(``.whl/`` holds cp312 wheels for what that machine lacks: hydra-core, omegaconf, antlr4-python3-runtime, imagehash,
PyWavelets and onnx 1.17, which needs only numpy and protobuf >= 3.20; when ``import onnx`` fails anyway, the bundle
is exported without ONNX and the JSON says so. The package is not installed: ``PYTHONPATH=src`` is enough; no git,
no network.)
CPU smoke run with tiny sizes, no CUDA needed, about a minute: ``python benchmarks/gpu_check.py --quick``.

Sections run one after another, each in its own child process with a time limit (the whole run stays within
``--budget-s``, default 330 s), so a crash, an out-of-memory error or a hang in one section is recorded in the JSON
and the others still run:

- ``pipeline``: phase4 + phase1 (+ phase2, phase5) + phase6 + evaluation through the real runner on synthetic data,
  with DINOv2 ViT-S/14-sized random weights at 224 px in bf16-mixed (the ``dinov2_small`` preset: LoRA, validator
  augmentation, 8 loader workers);
- ``train_vit_s`` / ``train_vit_b``: img/s and MFU of a training step (forward, backward, AdamW) of the classifier
  with a ViT-S/14 or ViT-B/14 backbone at 224 px, batch 256, bf16 autocast, eager and with the backbone compiled
  (inductor); MFU = FlopCounterMode's forward+backward FLOPs / step time / the GPU's dense bf16 peak;
- ``dataloader``: the training dataset with validator augmentation through 8 and 16 DataLoader workers (img/s),
  compared with the GPU's step rate.

Writes ``benchmarks/results/gpu_check.json`` (``--out``; with ``--quick`` a file in the temp directory), copies it
and the sections' logs to ``$OUT`` when that variable is set, and prints a table.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import importlib.metadata
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))  # no install needed

from streetvision.io import atomic_write_json  # noqa: E402  (stdlib only: safe before the checks below)
from streetvision.io.manifest import library_versions, utc_now  # noqa: E402

SEED = 0
EXTRA_LIBRARIES = ("hydra-core", "omegaconf", "imagehash", "PyWavelets", "onnx", "lightning", "torchmetrics")
# Dense bf16 tensor-core peaks (no sparsity), FLOP/s, matched against torch.cuda.get_device_name (first match wins).
BF16_PEAK_FLOPS: tuple[tuple[tuple[str, ...], float], ...] = (
    (("H100", "PCIE"), 756e12), (("H100", "NVL"), 835e12), (("H100",), 989.4e12), (("H200",), 989.4e12),
    (("GH200",), 989.4e12), (("B200",), 2250e12), (("A100",), 312e12), (("L40S",), 362.05e12),
    (("RTX 6000 ADA",), 364.25e12), (("A6000",), 154.8e12), (("L4",), 121e12), (("A10",), 125e12),
)


class Mode:
    """Sizes for one kind of run: ``full`` on a CUDA GPU, ``quick`` on the CPU (a smoke test of this script)."""

    def __init__(self, quick: bool, overrides: list[str] | None = None) -> None:
        self.quick = quick
        self.extra_overrides = list(overrides or [])
        self.name = "quick" if quick else "full"
        self.device = "cpu" if quick else "cuda"
        self.budget_s = 150.0 if quick else 330.0
        # section -> time cap in seconds (unused time rolls over to later sections)
        self.caps = ({"pipeline": 60, "train_vit_s": 25, "train_vit_b": 25, "dataloader": 25} if quick else
                     {"pipeline": 110, "train_vit_s": 80, "train_vit_b": 100, "dataloader": 40})
        self.train_backbones = ({"train_vit_s": "dinov2-micro", "train_vit_b": "dinov2-micro"} if quick else
                                {"train_vit_s": "dinov2-small-random", "train_vit_b": "dinov2-base-random"})
        self.train_batch = 8 if quick else 256
        self.warmup_steps, self.timed_steps = (1, 2) if quick else (3, 10)
        self.compile_backend = "aot_eager" if quick else "inductor"  # aot_eager: traces without code generation
        self.loader_images = 48 if quick else 768
        self.loader_batch = 16 if quick else 256
        self.loader_workers = (0, 2) if quick else (8, 16)
        self.loader_seconds = 1.0 if quick else 8.0
        common = ["training.progress_bar=false", "training.early_stopping_patience=0",
                  "pipeline.phases=[phase4,phase1,phase2,phase5,phase6,evaluation]", f"seed={SEED}"]
        self.pipeline_overrides = common + (
            ["model=dinov2_micro", "hardware=cpu", "data.synthetic.n=60", "data.unlabeled.n=32", "phase4.epochs=1",
             "phase4.batch_size=16", "training.epochs=1", "training.batch_size=16", "evaluation.n_resamples=50"]
            if quick else
            ["model=dinov2_small", "model.backbone=dinov2-small-random", "hardware=gpu",
             "hardware.precision=bf16-mixed", "hardware.num_workers=8", "data.synthetic.n=480",
             "data.unlabeled.n=256", "phase4.epochs=1", "phase4.batch_size=64", "training.epochs=2",
             "training.batch_size=64", "evaluation.n_resamples=200"]) + list(overrides or [])


# ---------------------------------------------------------------------------------------------------------------
# child side: one section per process, results written to a part file after every measurement


class Recorder:
    """A section's results, rewritten atomically on every update so a killed section keeps what it measured."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = {}

    def update(self, **values: Any) -> None:
        """Merge ``values`` and rewrite the part file."""
        self.data.update(values)
        atomic_write_json(self.path, self.data)


def bf16_peak_flops(device_name: str) -> float | None:
    """The GPU's dense bf16 peak from its name, or None when unknown."""
    upper = device_name.upper()
    for words, peak in BF16_PEAK_FLOPS:
        if all(w in upper for w in words):
            return peak
    return None


def section_pipeline(rec: Recorder, mode: Mode, workdir: Path, deadline: float) -> None:
    """phase4 + phase1 + phase2 + phase5 + phase6 + evaluation through the runner; collect what each recorded."""
    from rich.console import Console

    from streetvision.config import load_config
    from streetvision.io import read_json
    from streetvision.pipeline.artifacts import ArtifactSchema
    from streetvision.pipeline.runner import run_pipeline

    try:
        importlib.import_module("onnx")
        onnx_ok = True
    except Exception:  # noqa: BLE001  (missing or broken: the bundle is then exported without ONNX)
        onnx_ok = False
    overrides = [*mode.pipeline_overrides, f"output_root={workdir / 'runs'}", "run_id=gpu_check",
                 f"phase6.onnx={str(onnx_ok).lower()}", "evaluation.backend=torch"]
    rec.update(overrides=overrides, onnx_export=onnx_ok)
    cfg = load_config(overrides)
    start = time.perf_counter()
    outcomes = run_pipeline(cfg, Console(file=sys.stdout, width=140, force_terminal=False))
    art = ArtifactSchema.from_config(cfg)
    rec.update(total_s=time.perf_counter() - start,
               phases=[{"phase": o.name, "status": o.status, "seconds": o.seconds, **o.summary} for o in outcomes])
    p4, p1 = read_json(art.metrics_json("phase4")), read_json(art.metrics_json("phase1"))
    rec.update(phase4={k: p4.get(k) for k in ("accelerator", "precision", "objective", "steps", "loss_first",
                                              "loss_last", "max_output_diff", "merge_tolerance",
                                              "peft_validation_status", "trainable_percentage")},
               phase1={"accelerator": p1.get("accelerator"), "precision": p1.get("precision"),
                       "strategy": p1.get("strategy"), "world_size": p1.get("world_size"),
                       "train_seconds": p1.get("train_seconds"), "train_images": p1.get("train_images"),
                       "epochs": int(cfg.training.epochs), "best_epoch": p1.get("best_epoch"),
                       "train_img_per_s_incl_validation": p1["train_images"] * int(cfg.training.epochs)
                       / max(p1["train_seconds"], 1e-9),
                       "test_mcc": p1["splits"]["test"]["mcc"]})
    p6 = json.loads(art.manifest("phase6").read_text())["metrics"]
    ev = json.loads(art.manifest("evaluation").read_text())["metrics"]
    rec.update(phase6={k: p6.get(k) for k in ("policy_type", "onnx_max_abs_diff", "n_probes")},
               evaluation={"clean_reward": ev["clean"]["reward"], "validator_mix_reward": ev["validator_mix"]["reward"]})


def _measure_training(mode: Mode, backbone: str, compiled: bool, batch: int, deadline: float) -> dict[str, Any]:
    import torch
    from _train_step import build_classifier, compile_backbone, make_step, step_flops, time_steps

    torch.manual_seed(SEED)
    model, size = build_classifier(backbone, mode.device, SEED)
    dtype = None if mode.quick else torch.bfloat16
    flops = step_flops(model, size, mode.device, dtype, batch)  # eager: FlopCounterMode cannot see compiled code
    if compiled:
        compile_backbone(model, mode.compile_backend)
    if mode.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    timing = time_steps(make_step(model, batch, size, mode.device, dtype, SEED), mode.device, mode.warmup_steps,
                        mode.timed_steps, deadline)
    seconds = float(timing["median_step_s"])
    result = {"status": "ok", "batch_size": batch, "image_size": size, **timing, "img_per_s": batch / seconds,
              "step_tflop": flops / 1e12, "gflop_per_image": flops / batch / 1e9, "achieved_tflop_per_s":
              flops / seconds / 1e12, "parameters": sum(p.numel() for p in model.parameters())}
    if mode.device == "cuda":
        result["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
        peak = bf16_peak_flops(torch.cuda.get_device_name())
        result["bf16_peak_tflop_per_s"] = peak / 1e12 if peak else None
        result["mfu"] = flops / seconds / peak if peak else None
    return result


def section_train(rec: Recorder, mode: Mode, backbone: str, deadline: float) -> None:
    """Eager, then compiled: img/s and MFU at the mode's batch size (halved on out-of-memory)."""
    import torch

    if mode.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("CUDA is not available (use --quick for a CPU smoke run)")
    rec.update(backbone=backbone, device=mode.device, autocast="bf16" if mode.device == "cuda" else "none (fp32)",
               compile_backend=mode.compile_backend)
    for key, compiled in (("eager", False), ("compiled", True)):
        if compiled and time.monotonic() > deadline - (5 if mode.quick else 30):
            rec.update(**{key: {"status": "skipped: not enough time left for compilation"}})
            continue
        batch = mode.train_batch
        while True:
            out_of_memory = False
            try:
                rec.update(**{key: _measure_training(mode, backbone, compiled, batch, deadline)})
                break
            except torch.cuda.OutOfMemoryError:
                if batch <= 16:
                    raise
                out_of_memory = True
            except Exception as exc:  # noqa: BLE001  (a compile failure must not lose the eager numbers)
                rec.update(**{key: {"status": "error", "error": f"{type(exc).__name__}: {exc}"[:1500],
                                    "traceback": traceback.format_exc()[-3000:]}})
                break
            if out_of_memory:  # outside the except block, so the failed try's tensors are released
                gc.collect()
                torch.cuda.empty_cache()
                batch //= 2  # the next try records the smaller batch
        gc.collect()
        if mode.device == "cuda":
            torch.cuda.empty_cache()


def section_dataloader(rec: Recorder, mode: Mode, workdir: Path, deadline: float) -> None:
    """Images/s of the real training dataset (decode, decode cache, augmentation) through DataLoader workers."""
    import torch
    from torch.utils.data import Subset

    from streetvision.data.datamodules import LoaderOptions
    from streetvision.data.synthetic import write_dataset
    from streetvision.data.preprocess import Preprocess
    from streetvision.data.transforms import TrainTransform
    from streetvision.models.backbones import IMAGENET_MEAN, IMAGENET_STD

    start = time.perf_counter()
    rows = write_dataset(workdir / "loader_images", n=mode.loader_images, domain="source", seed=SEED, size=224)
    rec.update(images=len(rows), image_size=224, batch_size=mode.loader_batch, synth_seconds=time.perf_counter()
               - start, cpu_count=os.cpu_count(), runs=[])
    pre = Preprocess(224, IMAGENET_MEAN, IMAGENET_STD)
    configs = [(w, "validator") for w in mode.loader_workers] + [(mode.loader_workers[-1], "none")]
    runs = []
    for workers, augment in configs:
        if time.monotonic() > deadline - mode.loader_seconds - 3:
            runs.append({"workers": workers, "augment": augment, "status": "skipped: out of time"})
            continue
        torch.manual_seed(SEED)
        options = LoaderOptions(num_workers=workers, pin_memory=mode.device == "cuda", decode_min_size=448,
                                cache_mb=1024.0)
        dataset = options.dataset([p for p, _ in rows], [y for _, y in rows], TrainTransform(pre, augment))
        long_epoch = Subset(dataset, list(range(len(dataset))) * 400)  # no epoch-boundary stalls while timing
        loader = options.loader(long_epoch, mode.loader_batch, shuffle=True, drop_last=True)
        t0 = time.perf_counter()
        batches = iter(loader)
        next(batches)
        first_batch_s = time.perf_counter() - t0
        images, t0 = 0, time.perf_counter()
        for batch in batches:
            images += len(batch[0])
            if time.perf_counter() - t0 >= mode.loader_seconds:
                break
        elapsed = time.perf_counter() - t0
        del batches, loader
        runs.append({"workers": workers, "augment": augment, "status": "ok", "first_batch_s": first_batch_s,
                     "img_per_s": images / elapsed, "images_timed": images})
        rec.update(runs=runs)
    rec.update(runs=runs)


def run_child(args: argparse.Namespace) -> int:
    """Run one section; its results (or its error) go to the part file."""
    mode = Mode(args.quick, args.override)
    rec = Recorder(Path(args.part))
    rec.update(status="running")
    deadline = time.monotonic() + args.seconds
    try:
        if args.section == "pipeline":
            section_pipeline(rec, mode, Path(args.workdir), deadline)
        elif args.section.startswith("train_"):
            section_train(rec, mode, mode.train_backbones[args.section], deadline)
        else:
            section_dataloader(rec, mode, Path(args.workdir), deadline)
    except BaseException as exc:  # noqa: BLE001  (recorded for the parent, then a non-zero exit)
        traceback.print_exc()
        rec.update(status="error", error=f"{type(exc).__name__}: {exc}"[:2000],
                   traceback=traceback.format_exc()[-4000:])
        return 1
    rec.update(status="ok")
    return 0


# ---------------------------------------------------------------------------------------------------------------
# parent side: machine facts, the sections under a time budget, the JSON and the table


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_facts() -> dict[str, Any]:
    """Platform, CPU count, GPU name / memory / capability / driver (without failing when any is missing)."""
    facts: dict[str, Any] = {"platform": platform.platform(), "python": platform.python_version(),
                             "cpu_count": os.cpu_count()}
    try:
        import torch

        facts.update(torch=torch.__version__, torch_cuda=torch.version.cuda,
                     cudnn=torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
                     cuda_available=torch.cuda.is_available(), torch_threads=torch.get_num_threads())
        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            facts.update(gpu_count=torch.cuda.device_count(), gpu_name=props.name,
                         gpu_memory_gib=props.total_memory / 2**30, gpu_capability=f"{props.major}.{props.minor}",
                         gpu_bf16_supported=torch.cuda.is_bf16_supported(),
                         gpu_bf16_peak_tflop_per_s=(bf16_peak_flops(props.name) or 0) / 1e12 or None)
    except Exception as exc:  # noqa: BLE001
        facts["torch_error"] = f"{type(exc).__name__}: {exc}"
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
        facts["nvidia_driver"] = smi.stdout.strip().splitlines()[0] if smi.returncode == 0 and smi.stdout else None
    except (OSError, subprocess.SubprocessError, IndexError):
        facts["nvidia_driver"] = None
    return facts


def run_section(name: str, mode: Mode, timeout_s: float, workdir: Path) -> dict[str, Any]:
    """One section in a child process (own session, killed with its loader workers on timeout)."""
    part, log = workdir / f"{name}.json", workdir / f"{name}.log"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--section", name, "--part", str(part), "--workdir",
           str(workdir), "--seconds", f"{timeout_s:.0f}"] + (["--quick"] if mode.quick else [])
    cmd += [f"--override={o}" for o in mode.extra_overrides]
    env = {"HF_HUB_OFFLINE": "1", **os.environ, "PYTHONUNBUFFERED": "1"}  # no network: never wait for the hub
    start = time.monotonic()
    with open(log, "w") as handle:
        proc = subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True, env=env)
        try:
            rc: int | None = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            rc = None
    try:
        result = json.loads(part.read_text())
    except (OSError, json.JSONDecodeError):
        result = {}
    if rc is None:
        result["status"] = f"timeout after {timeout_s:.0f} s (partial results kept)"
    elif rc != 0 and result.get("status") != "error":
        result["status"] = f"crashed (exit code {rc})"
    result["seconds"] = time.monotonic() - start
    result["time_limit_s"] = round(timeout_s)
    if result.get("status") != "ok":
        result["log_tail"] = log.read_text(errors="replace")[-3000:] if log.is_file() else ""
    return result


def summarise(sections: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Headline numbers: MFU and img/s per model and mode, the loader's rate against the GPU's, the goals."""
    out: dict[str, Any] = {}
    for name in ("train_vit_s", "train_vit_b"):
        for key in ("eager", "compiled"):
            m = sections.get(name, {}).get(key, {})
            if m.get("status") == "ok":
                out[f"{name}_{key}_img_per_s"] = m["img_per_s"]
                out[f"{name}_{key}_mfu"] = m.get("mfu")
    loader = {(r["workers"], r["augment"]): r["img_per_s"] for r in sections.get("dataloader", {}).get("runs", [])
              if r.get("status") == "ok"}
    best_gpu = max((v for k, v in out.items() if k.startswith("train_vit_s") and k.endswith("img_per_s")),
                   default=None)
    best_loader = max((v for (_, aug), v in loader.items() if aug == "validator"), default=None)
    out["vit_s_best_gpu_img_per_s"] = best_gpu
    out["loader_best_img_per_s_validator_augment"] = best_loader
    if best_gpu and best_loader:
        out["loader_over_gpu_ratio"] = best_loader / best_gpu
        out["data_pipeline_is_bottleneck"] = best_loader < best_gpu
    mfus = [v for k, v in out.items() if k.startswith("train_vit_s") and k.endswith("_mfu") and v is not None]
    out["vit_s_best_mfu"] = max(mfus, default=None)
    out["goal_vit_s_mfu_ge_40pct"] = (max(mfus) >= 0.40) if mfus else None
    pipe = sections.get("pipeline", {})
    out["pipeline_ok"] = pipe.get("status") == "ok" if pipe else None
    out["pipeline_seconds"] = pipe.get("total_s")
    return out


def _fmt(value: Any, spec: str = ".3g") -> str:
    if value is None or isinstance(value, bool):
        return "-" if value is None else str(value).lower()
    return format(value, spec) if isinstance(value, (int, float)) else str(value)


def print_table(results: dict[str, Any], path: Path) -> None:
    """Markdown tables: sections, training throughput / MFU, loader throughput, summary."""
    sections = results["sections"]
    print(f"\n## gpu_check ({results['mode']}) on {results['machine'].get('gpu_name', 'no GPU')}")
    print("\n| section | status | seconds |\n|---|---|---|")
    for name, s in sections.items():
        print(f"| {name} | {str(s.get('status'))[:70]} | {_fmt(s.get('seconds'), '.0f')} |")
    print("\n| model | backbone | batch | step ms | img/s | TFLOP/s | MFU | compile s | GiB |\n|---|---|---|---|---|---|"
          "---|---|---|")
    for name in ("train_vit_s", "train_vit_b"):
        for key in ("eager", "compiled"):
            m = sections.get(name, {}).get(key)
            if not m:
                continue
            if m.get("status") != "ok":
                print(f"| {name} | {key} | {str(m.get('status'))[:40]} | | | | | | |")
                continue
            print(f"| {name} | {key} | {m['batch_size']} | {1e3 * m['median_step_s']:.1f} | {m['img_per_s']:.0f} | "
                  f"{m['achieved_tflop_per_s']:.1f} | {_fmt(m.get('mfu'), '.1%')} | {m['first_step_s']:.1f} | "
                  f"{_fmt(m.get('peak_memory_gib'), '.1f')} |")
    runs = sections.get("dataloader", {}).get("runs", [])
    if runs:
        print("\n| loader workers | augment | img/s | first batch s |\n|---|---|---|---|")
        for r in runs:
            print(f"| {r['workers']} | {r['augment']} | {_fmt(r.get('img_per_s'), '.0f')} | "
                  f"{_fmt(r.get('first_batch_s'), '.1f')} |")
    pipe = sections.get("pipeline", {})
    if pipe.get("phases"):
        print("\n| phase | status | seconds |\n|---|---|---|")
        for p in pipe["phases"]:
            print(f"| {p['phase']} | {p['status']} | {p['seconds']:.1f} |")
    print("\nsummary: " + ", ".join(f"{k}={_fmt(v)}" for k, v in results["summary"].items()))
    print(f"written: {path}")


def run_parent(args: argparse.Namespace) -> int:
    """All sections within the budget; JSON rewritten after each, so an interrupted run keeps what finished."""
    mode = Mode(args.quick, args.override)
    budget = float(args.budget_s or mode.budget_s)
    started = time.monotonic()
    out_path = Path(args.out) if args.out else (
        Path(tempfile.gettempdir()) / "gpu_check_quick.json" if mode.quick else HERE / "results" / "gpu_check.json")
    versions = {**library_versions(), **{n: v for n in EXTRA_LIBRARIES if (v := _version(n))}}
    results: dict[str, Any] = {
        "benchmark": "gpu_check", "mode": mode.name, "measured_at": utc_now(), "command": " ".join(sys.argv),
        "budget_s": budget, "machine": machine_facts(), "versions": versions,
        "seeds": {"torch": SEED, "pipeline_seed": SEED, "synthetic_data": "data.synthetic.seed=0 (config default)"},
        "settings": {"train_batch": mode.train_batch, "warmup_steps": mode.warmup_steps,
                     "timed_steps": mode.timed_steps, "compile_backend": mode.compile_backend,
                     "train_backbones": mode.train_backbones, "pipeline_overrides": mode.pipeline_overrides},
        "sections": {}, "summary": {},
    }
    workdir = Path(tempfile.mkdtemp(prefix="gpu_check_"))
    names = [n for n in mode.caps if not args.only or n in args.only]
    try:
        for i, name in enumerate(names):
            remaining = budget - (time.monotonic() - started)
            limit = remaining - sum(mode.caps[n] for n in names[i + 1:])  # later sections keep their caps
            if limit < min(10.0, mode.caps[name]):
                results["sections"][name] = {"status": f"skipped: {remaining:.0f} s of the budget left"}
            else:
                print(f"[gpu_check] {name}: up to {limit:.0f} s ...", flush=True)
                section = results["sections"][name] = run_section(name, mode, limit, workdir)
                print(f"[gpu_check] {name}: {section['status']} ({section['seconds']:.0f} s)", flush=True)
                if section["status"] != "ok":
                    print("\n".join(section.get("log_tail", "").splitlines()[-12:]), flush=True)
            results["summary"] = summarise(results["sections"])
            results["total_seconds"] = time.monotonic() - started
            atomic_write_json(out_path, results)
            copy_to_out(out_path, workdir)  # after every section: a run cut short still returns what it measured
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print_table(results, out_path)
    return 0


def copy_to_out(path: Path, workdir: Path) -> None:
    """The JSON and the sections' logs into ``$OUT`` (when set), for machines whose files come back from there."""
    out = os.environ.get("OUT")
    if not out:
        return
    target = Path(out)
    (target / "gpu_check_logs").mkdir(parents=True, exist_ok=True)
    shutil.copy2(path, target / "gpu_check.json")
    for log in workdir.glob("*.log"):
        shutil.copy2(log, target / "gpu_check_logs" / log.name)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments; the parent runs the sections, ``--section`` runs one of them (internal)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="CPU smoke run with tiny sizes (no CUDA needed)")
    parser.add_argument("--out", help="JSON path (default: benchmarks/results/gpu_check.json; temp dir with --quick)")
    parser.add_argument("--budget-s", type=float, help="wall-clock budget for all sections (default 330; 150 quick)")
    parser.add_argument("--only", nargs="*", help="run only these sections")
    parser.add_argument("--override", action="append", default=[],
                        help="extra config override for the pipeline section (repeatable), e.g. training.epochs=3")
    parser.add_argument("--section", help=argparse.SUPPRESS)
    parser.add_argument("--part", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=60.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    return run_child(args) if args.section else run_parent(args)


if __name__ == "__main__":
    sys.exit(main())
