"""Backbone families side by side: parameters, forward FLOPs, inference and training throughput of each family's
built-in random-weight preset (``streetvision.models.families.BUILTIN``), in one process.

For each family (dinov2, vit, deit, swin, siglip_vision_model, convnextv2, resnet, efficientnet) its CPU preset
(dinov2-tiny, vit-tiny, deit-tiny, swin-tiny, siglip-tiny, convnextv2-atto, resnet-18, efficientnet-b0, at their
input size, 112 px) is built with ``load_backbone`` and wrapped in the project's classifier exactly as the model
presets (``configs/model/<preset>.yaml``) train it: ``RoadworkClassifier`` with ``pooling="family"`` (what the
family's ``*ForImageClassification`` computes), a linear 2-class head, ``model.finetune=full``. Then, on one fixed
random batch (default 32 images at the preset's input size, ``preprocess_for``):

- ``params``: every parameter of the classifier (backbone + head); ``gflop_fwd``: forward GFLOPs per image as
  ``FlopCounterMode`` counts them (matmuls, convolutions, attention; not norms or activations);
- inference img/s: one batch in eval mode under ``torch.inference_mode``;
- training img/s: one full fine-tuning step (forward, cross-entropy, backward, AdamW step; ``_train_step.make_step``,
  the step ``gpu_check.py`` times);
- when ``torch.cuda.is_available()``, the same two on the GPU under bf16 autocast (each timed batch or step ends
  with ``torch.cuda.synchronize``); untested on the CPU-only development machine, kept simple.

Timing: every family gets ``--warmup`` untimed batches and steps, then ``--repeats`` rounds; a round times one
inference batch and one training step of every family in turn (interleaved, so load from other processes on a
shared machine falls on all families alike rather than on whichever ran during it). Reported: batch / the median
time (``*_img_per_s``) and batch / the fastest (``*_img_per_s_best``, the least disturbed), with every sample.
A family that fails is recorded with its error and the others still run. On the shared 2-core machine single
batches vary by +-30 % and more while other processes run: compare families within one run (the ratios are steadier
than the absolute numbers; the JSON records the load average before and after), and run it more than once
before trusting small gaps; where median and best differ several-fold, the run was disturbed: read the best.

    .venv/bin/python benchmarks/backbones.py                      # every family, CPU presets (~3 min on 2 cores)
    .venv/bin/python benchmarks/backbones.py --families resnet efficientnet --repeats 10
    .venv/bin/python benchmarks/backbones.py --quick --out /tmp/b.json   # micro presets at 56 px, 2 repeats (a test)

Writes ``benchmarks/results/<name>.json`` (``--name``, default ``backbones``; ``--out`` for any other path; with
``--quick`` a file in the temp directory unless ``--out`` is given) atomically, with the machine and library
versions, and prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import RESULTS, machine_facts, print_table  # noqa: E402
from _train_step import make_step, sync  # noqa: E402

from streetvision.io import atomic_write_json  # noqa: E402
from streetvision.io.manifest import library_versions, utc_now  # noqa: E402
from streetvision.models.backbones import load_backbone, preprocess_for  # noqa: E402
from streetvision.models.classifier import ClassifierSpec, RoadworkClassifier, apply_finetune_mode  # noqa: E402
from streetvision.models.families import ALIASES, BUILTIN, FAMILIES  # noqa: E402

CLASS_NAMES = ["no_roadwork", "roadwork"]
SEED = 0
# family (model_type) -> (CPU preset, micro preset), both in families.BUILTIN; every family the NATIX miner loads
# (DINOv2 with registers, which it cannot, has no preset)
PRESETS: dict[str, tuple[str, str]] = {
    "dinov2": ("dinov2-tiny", "dinov2-micro"),
    "vit": ("vit-tiny", "vit-micro"),
    "deit": ("deit-tiny", "deit-micro"),
    "swin": ("swin-tiny", "swin-micro"),
    "siglip_vision_model": ("siglip-tiny", "siglip-micro"),
    "convnextv2": ("convnextv2-atto", "convnextv2-micro"),
    "resnet": ("resnet-18", "resnet-micro"),
    "efficientnet": ("efficientnet-b0", "efficientnet-micro"),
}
assert set(PRESETS) == {t for t, f in FAMILIES.items() if f.natix} \
    and all(p in BUILTIN for pair in PRESETS.values() for p in pair)


def build(preset: str) -> tuple[RoadworkClassifier, int]:
    """(the classifier as the model presets train it: pooling=family, linear head, full fine-tuning; input size)."""
    net = load_backbone(preset, seed=SEED)
    size = preprocess_for(net, preset).size
    model = apply_finetune_mode(RoadworkClassifier(net, ClassifierSpec(class_names=list(CLASS_NAMES),
                                                                       pooling="family")), "full")
    return model, size


def forward_gflop(model: torch.nn.Module, size: int) -> float:
    """Forward GFLOPs per image (FlopCounterMode, one image, eval mode)."""
    model.eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        model(torch.randn(1, 3, size, size))
    return counter.get_total_flops() / 1e9


class Bench:
    """One family's timed closures on one device: an inference batch and a training step, each ending in a sync."""

    def __init__(self, model: torch.nn.Module, size: int, batch: int, device: str) -> None:
        self.model, self.batch, self.device = model.to(device), batch, device
        on_gpu = device.startswith("cuda")
        self.x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(SEED)).to(device)
        self.autocast = torch.autocast("cuda" if on_gpu else "cpu", dtype=torch.bfloat16, enabled=on_gpu)
        # forward, cross-entropy, backward, AdamW step on one fixed batch (the step gpu_check.py times)
        self.step = make_step(model, batch, size, device, torch.bfloat16 if on_gpu else None, seed=SEED)
        self.infer_s: list[float] = []
        self.train_s: list[float] = []

    def infer(self) -> float:
        self.model.eval()
        start = time.perf_counter()
        with torch.inference_mode(), self.autocast:
            self.model(self.x)
        sync(self.device)
        return time.perf_counter() - start

    def train(self) -> float:
        self.model.train()
        start = time.perf_counter()
        self.step()
        sync(self.device)
        return time.perf_counter() - start


def build_row(fam: str, preset: str) -> tuple[dict[str, Any], RoadworkClassifier | None, int]:
    """A family's row with its sizes (or its error), its classifier and input size."""
    row: dict[str, Any] = {"family": fam, "preset": preset}
    try:
        torch.manual_seed(SEED)
        model, size = build(preset)
        row.update(input_px=size, params=sum(p.numel() for p in model.parameters()),
                   trainable_params=sum(p.numel() for p in model.parameters() if p.requires_grad),
                   gflop_fwd=forward_gflop(model, size), status="ok")
        return row, model, size
    except Exception as exc:  # noqa: BLE001  (recorded; the other families still run)
        fail(row, exc)
        return row, None, 0


def fail(row: dict[str, Any], exc: BaseException) -> None:
    row["status"] = "error"
    row["error"] = f"{type(exc).__name__}: {exc}"
    row["traceback"] = traceback.format_exc()[-3000:]


def measure(rows: list[dict[str, Any]], models: dict[str, tuple[torch.nn.Module, int]], device: str,
            args: argparse.Namespace) -> None:
    """Warm every family up, then ``args.repeats`` rounds; each round times one inference batch and one training
    step of every family in turn, so load from other processes falls on all families alike (interleaved, not one
    family's repeats back to back). Adds ``<device>_infer_*`` and ``<device>_train_*`` to each ok row."""
    benches: dict[str, Bench] = {}
    by_preset = {r["preset"]: r for r in rows}
    for preset, (model, size) in models.items():
        if by_preset[preset]["status"] != "ok":
            continue
        try:
            bench = Bench(model, size, args.batch, device)
            for _ in range(args.warmup):
                bench.infer()
                bench.train()
            benches[preset] = bench
        except Exception as exc:  # noqa: BLE001
            fail(by_preset[preset], exc)
    for _ in range(args.repeats):
        for preset, bench in list(benches.items()):
            try:
                bench.infer_s.append(bench.infer())
                bench.train_s.append(bench.train())
            except Exception as exc:  # noqa: BLE001
                fail(by_preset[preset], exc)
                del benches[preset]
    for preset, bench in benches.items():
        row = by_preset[preset]
        for kind, samples in (("infer", bench.infer_s), ("train", bench.train_s)):
            row[f"{device}_{kind}_img_per_s"] = args.batch / statistics.median(samples)
            row[f"{device}_{kind}_img_per_s_best"] = args.batch / min(samples)
            row[f"{device}_{kind}_s_samples"] = samples
        if device.startswith("cuda"):
            row["cuda_peak_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30
        bench.model.to("cpu")


def table(rows: list[dict[str, Any]], devices: list[str]) -> list[dict[str, Any]]:
    """The printed columns: params in millions, img/s per device (median, best), and training img/s (median)
    relative to the first row."""
    first = next((r for r in rows if r["status"] == "ok"), None)
    out = []
    for r in rows:
        t = {"family": r["family"], "preset": r["preset"], "px": r.get("input_px", ""),
             "params_M": r["params"] / 1e6 if "params" in r else "", "gflop_fwd": r.get("gflop_fwd", "")}
        for d in devices:
            t[f"{d}_infer_img_s"] = r.get(f"{d}_infer_img_per_s", "")
            t[f"{d}_infer_best"] = r.get(f"{d}_infer_img_per_s_best", "")
            t[f"{d}_train_img_s"] = r.get(f"{d}_train_img_per_s", "")
            t[f"{d}_train_best"] = r.get(f"{d}_train_img_per_s_best", "")
        if first is not None and r["status"] == "ok" and f"{devices[0]}_train_img_per_s" in r:
            t[f"train_vs_{first['preset']}"] = (r[f"{devices[0]}_train_img_per_s"]
                                                 / first[f"{devices[0]}_train_img_per_s"])
        t["status"] = r["status"] if r["status"] == "ok" else r["error"][:80]
        out.append(t)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="micro presets (56 px), 2 repeats, 1 warm-up: a test")
    parser.add_argument("--families", nargs="+", default=None,
                        help=f"a subset of: {', '.join(PRESETS)} (or siglip); default all")
    parser.add_argument("--batch", type=int, default=32, help="images per batch (default %(default)s)")
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds (default 9; --quick 2)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed batches / steps first (default 2; quick 1)")
    parser.add_argument("--name", default=None, help="results/<name>.json (default backbones[_quick])")
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON path instead (default results/<name>.json; --quick: the temp directory)")
    parser.add_argument("--no-cuda", action="store_true", help="CPU only even when a GPU is there")
    args = parser.parse_args(argv)
    args.repeats = args.repeats or (2 if args.quick else 9)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    name = args.name or ("backbones_quick" if args.quick else "backbones")
    out = args.out or (Path(tempfile.gettempdir()) / f"{name}.json" if args.quick else RESULTS / f"{name}.json")
    families = [ALIASES.get(f, f) for f in (args.families or list(PRESETS))]
    unknown = [f for f in families if f not in PRESETS]
    if unknown:
        parser.error(f"unknown families {unknown}; choose from {', '.join(PRESETS)}")
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() and not args.no_cuda else [])

    start = time.perf_counter()
    load_before = os.getloadavg()  # other processes' load: medians under load are not the machine's speed
    rows, models = [], {}
    for fam in families:
        row, model, size = build_row(fam, PRESETS[fam][1 if args.quick else 0])
        rows.append(row)
        if model is not None:
            models[row["preset"]] = (model, size)
    for device in devices:
        measure(rows, models, device, args)
    for r in rows:
        print(f"{r['family']:20s} {r['preset']:20s} {r['status']}", file=sys.stderr, flush=True)
    ok = [r for r in rows if r["status"] == "ok"]
    settings = {"quick": args.quick, "batch": args.batch, "repeats": args.repeats, "warmup": args.warmup,
                "devices": devices, "pooling": "family", "finetune": "full", "optimizer": "AdamW lr 1e-4 wd 0.05",
                "cuda_autocast": "bfloat16", "cpu_dtype": "float32", "seed": SEED,
                "cuda_device": torch.cuda.get_device_name(0) if "cuda" in devices else None,
                "load_average_1_5_15_min": {"before": load_before, "after": os.getloadavg()}}
    notes = (f"batch {args.batch}, median (and best) of {args.repeats} interleaved rounds after {args.warmup} warm-up, "
             f"classifier with pooling=family, full fine-tuning (AdamW); {len(ok)}/{len(rows)} families ok; "
             f"{time.perf_counter() - start:.0f} s in all; load average (1 min) {load_before[0]:.1f} before, "
             f"{os.getloadavg()[0]:.1f} after on {os.cpu_count()} CPUs.")
    atomic_write_json(out, {"benchmark": name, "measured_at": utc_now(), "notes": notes, "settings": settings,
                            "rows": rows, "machine": machine_facts(), "versions": library_versions()})
    print_table(table(rows, devices))
    print(f"\n{notes}\n\nwritten: {out}")
    return 0 if len(ok) == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
