"""Does the stock NATIX miner serve our Hugging Face export in the environments a miner runs?

`make natix-compat` builds the environments (NATIX's lock ``benchmarks/natix_lock.txt``: transformers 4.45.2,
tokenizers 0.20.3, pillow 10.4.0, ...; with and without torchvision; and today's transformers with torchvision),
installs StreetVision into each *without extras* (the serving install, NATIX's pins kept as constraints), and runs
this script, which

1. trains and exports a small exportable run here (``.venv``: ``model=dinov2_tiny model.pooling=cls_mean``, 112 px,
   so the 224 -> 112 resize of the processor is exercised), and a micro run (56 px, one epoch) of every other
   backbone family (``models.families``: ViT, DeiT, Swin, SigLIP, ConvNeXt V2, ResNet, EfficientNet), each
   exported as its own ``*ForImageClassification`` with its own image processor;
2. writes the images: the bundle's parity images (its probes as the validator sends them at levels 0-3, the wire
   JPEGs), the clean probes, and non-square versions of them;
3. scores them here with the bundle's Predictor (the reference), then in every environment with the miner's own
   load line (its arguments, not its code: ``pipeline("image-classification",
   model=AutoModelForImageClassification.from_pretrained(repo), feature_extractor=AutoImageProcessor
   .from_pretrained(repo, use_fast=True))``, the score of "Roadwork"), also with ``use_fast=False``, and with that
   environment's ``Predictor.from_bundle`` and ``Predictor.from_pretrained`` on the export;
4. passes when, in every environment and for every run, on the 224 x 224 images the miner's score is within 1e-4 of the bundle's with
   every decision equal, transformers reports no missing, unexpected or mismatched weight when it loads the export
   (the miner's log would say "newly initialized"), and ``from_pretrained`` on the export equals the miner's score on every image (non-square
   included; within 1e-3 where transformers 5 resizes with torchvision instead of PIL); writes
   ``benchmarks/results/natix_compat.json`` and prints a table. Exit 1 on any failure.

    python benchmarks/natix_compat.py --env natix=PY [--env NAME=PY ...] [--workdir DIR]
    PY benchmarks/natix_compat.py --score JOBS OUT      # inside one environment (what step 3 runs): JOBS is a JSON
                                                        # {run: {"hf": DIR, "bundle": DIR, "images": DIR}}
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

TOLERANCE = 1e-4
TORCHVISION_TOLERANCE = 1e-3  # from_pretrained vs a torchvision processor on non-square photos (see compare)
ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "benchmarks" / "results" / "natix_compat.json"
PHASES = ["training.progress_bar=false", "pipeline.phases=[phase1,phase2,phase5,phase6]"]
RUN = ["model=dinov2_tiny", "model.pooling=cls_mean", "data.synthetic.n=240", "training.epochs=3", *PHASES,
       "run_id=natix_compat"]
# one micro run per other family: what is checked is the export's format, not the model's quality
FAMILY_RUNS = {f"{name}-micro": ["model=dinov2_micro", f"model.backbone={name}-micro", "model.pooling=family",
                                 "data.synthetic.n=120", "training.epochs=1", *PHASES, f"run_id=natix_compat_{name}"]
               for name in ("vit", "deit", "swin", "siglip", "convnextv2", "resnet", "efficientnet")}
RUNS = {"dinov2-tiny": RUN, **FAMILY_RUNS}
TRAINING_MODULES = ("hydra", "omegaconf", "lightning", "peft", "sklearn", "scipy", "cv2")


# -- inside one environment ----------------------------------------------------------------------------------------
def score_here(jobs_file: Path, out: Path) -> None:
    """Score every run's images with the miner's line (use_fast True and False) and with this environment's
    StreetVision; write versions, processor classes and scores per run to ``out``."""
    import importlib.util

    import transformers
    from PIL import Image
    from transformers import AutoImageProcessor, AutoModelForImageClassification, pipeline

    from streetvision import Predictor

    result = {"versions": {"python": platform.python_version(), "transformers": transformers.__version__},
              "runs": {}}
    for module in ("torch", "torchvision", "tokenizers", "PIL", "numpy", "huggingface_hub", "safetensors"):
        try:
            result["versions"][module] = __import__(module).__version__
        except ImportError:
            result["versions"][module] = None
    result["training_modules_importable"] = [m for m in TRAINING_MODULES if importlib.util.find_spec(m)]
    for run, job in json.loads(jobs_file.read_text()).items():
        hf, images_dir = Path(job["hf"]), Path(job["images"])
        names = sorted(p.name for p in images_dir.iterdir())
        images = []
        for name in names:
            with Image.open(images_dir / name) as img:
                images.append(img.convert("RGB"))
        got = {"names": names}
        _, info = AutoModelForImageClassification.from_pretrained(str(hf), output_loading_info=True)
        got["load_report"] = {k: sorted(map(str, info[k])) for k in ("missing_keys", "unexpected_keys",
                                                                      "mismatched_keys")}
        for use_fast in (True, False):
            # the NATIX base miner's load line (base_miner/detectors/vit_detector.py), its arguments exactly
            classify = pipeline("image-classification",
                                model=AutoModelForImageClassification.from_pretrained(str(hf)),
                                feature_extractor=AutoImageProcessor.from_pretrained(str(hf), use_fast=use_fast))
            key = "use_fast" if use_fast else "use_fast_false"
            got[key] = {"processor": type(classify.image_processor).__name__,
                        "scores": [{r["label"]: r["score"] for r in classify(img)}["Roadwork"] for img in images]}
        got["bundle_here"] = Predictor.from_bundle(Path(job["bundle"])).scores(images).tolist()
        got["export_from_pretrained"] = Predictor.from_pretrained(hf).scores(images).tolist()
        result["runs"][run] = got
    out.write_text(json.dumps(result))


# -- the driver (in .venv) -----------------------------------------------------------------------------------------
def build_run(workdir: Path, overrides: list[str]) -> Path:
    """Train and export a run (skipped when up to date); its run directory."""
    from rich.console import Console

    from streetvision.config import load_config
    from streetvision.pipeline.artifacts import ArtifactSchema
    from streetvision.pipeline.runner import run_pipeline

    cfg = load_config([f"output_root={workdir}", *overrides])
    run_pipeline(cfg, Console(quiet=True))
    return ArtifactSchema.from_config(cfg).run_dir


def write_images(bundle: Path, out: Path) -> dict[str, str]:
    """The images every environment scores (name -> kind): parity (224, validator levels 0-3), clean probes, and
    non-square versions of the probes."""
    from PIL import Image

    from streetvision.bundle.hf_export import named_parity_images

    out.mkdir(parents=True, exist_ok=True)
    kinds = {}
    for i, (rel, image) in enumerate(named_parity_images(bundle)):
        image.save(out / f"a{i:02d}_parity.png")  # lossless: the decoded wire JPEG, pixel for pixel
        kinds[f"a{i:02d}_parity.png"] = f"224 {Path(rel).name}"
    probes = json.loads((bundle / "probes" / "probes.json").read_text())["probes"]
    for i, record in enumerate(probes):
        with Image.open(bundle / record["path"]) as img:
            img = img.convert("RGB")
        img.save(out / f"b{i:02d}_probe.png")
        kinds[f"b{i:02d}_probe.png"] = f"{img.width} {Path(record['path']).name}"
        for w, h in ((320, 240), (240, 320)):
            name = f"c{i:02d}_{w}x{h}.png"
            img.resize((w, h), Image.BILINEAR).save(out / name)
            kinds[name] = f"non-square {w}x{h}"
    return kinds


def compare(env: str, run: str, scored: dict, reference: list[float], kinds: dict[str, str]) -> dict:
    """One environment's verdict on one run against the bundle's scores in .venv."""
    import numpy as np

    got = scored["runs"][run]
    names = got["names"]
    square = np.array([not kinds[n].startswith("non-square") for n in names])
    ref = np.asarray(reference)
    row = {"environment": env, "run": run, "versions": scored["versions"],
           "training_modules_importable": scored["training_modules_importable"]}
    ok = not scored["training_modules_importable"] if env != "current" else True
    for key in ("use_fast", "use_fast_false"):
        miner = np.asarray(got[key]["scores"])
        diff = np.abs(miner - ref)[square]
        same = bool(np.array_equal(miner[square] > 0.5, ref[square] > 0.5))
        non_square = np.abs(miner - ref)[~square]
        row[key] = {"processor": got[key]["processor"], "max_abs_diff_224": float(diff.max()),
                    "decisions_equal_224": same, "images_224": int(square.sum()),
                    "bundle_vs_miner_non_square_max_abs_diff": float(non_square.max()) if non_square.size else None,
                    "from_pretrained_vs_miner_max_abs_diff": float(np.abs(
                        np.asarray(got["export_from_pretrained"]) - miner).max())}
        # our Predictor resizes with PIL, as the PIL processors do; transformers 5's torchvision processors resize
        # with torchvision (antialiased tensors), a grey level apart on a downscaled non-square photo
        torchvision_resize = (scored["versions"]["torchvision"] is not None and not got[key]["processor"]
                              .endswith("Pil") and not scored["versions"]["transformers"].startswith("4."))
        row[key]["from_pretrained_tolerance"] = TORCHVISION_TOLERANCE if torchvision_resize else TOLERANCE
        ok &= diff.max() <= TOLERANCE and same and \
            row[key]["from_pretrained_vs_miner_max_abs_diff"] <= row[key]["from_pretrained_tolerance"]
    # the miner's log must not say "newly initialized" or "not used": every weight in the file, and only those
    row["load_report"] = got["load_report"]
    ok &= not any(got["load_report"].values())
    row["bundle_here_vs_reference_max_abs_diff"] = float(np.abs(np.asarray(got["bundle_here"]) - ref).max())
    ok &= row["bundle_here_vs_reference_max_abs_diff"] <= TOLERANCE
    row["ok"] = bool(ok)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", action="append", default=[], metavar="NAME=PYTHON",
                        help="an environment's python (StreetVision installed there without extras)")
    parser.add_argument("--workdir", type=Path, default=ROOT / "outputs" / "natix_compat")
    parser.add_argument("--score", nargs=2, type=Path, metavar=("JOBS", "OUT"))
    args = parser.parse_args()
    if args.score:
        score_here(*args.score)
        return 0
    start = time.perf_counter()
    from PIL import Image

    from streetvision import Predictor

    jobs, kinds, references = {}, {}, {}
    for name, overrides in RUNS.items():
        run = build_run(args.workdir, overrides)
        bundle, hf = run / "export" / "bundle", run / "export" / "hf"
        images_dir = args.workdir / "images" / name
        kinds[name] = write_images(bundle, images_dir)
        images = []
        for image_name in sorted(kinds[name]):
            with Image.open(images_dir / image_name) as img:
                images.append(img.convert("RGB"))
        references[name] = Predictor.from_bundle(bundle).scores(images).tolist()
        jobs[name] = {"hf": str(hf), "bundle": str(bundle), "images": str(images_dir)}
    jobs_file = args.workdir / "jobs.json"
    jobs_file.write_text(json.dumps(jobs))
    rows = []
    for env, python in [("current", sys.executable), *(e.split("=", 1) for e in args.env)]:
        out = args.workdir / f"scores_{env}.json"
        done = subprocess.run([python, __file__, "--score", str(jobs_file), str(out)], capture_output=True, text=True)
        if done.returncode != 0:
            rows.append({"environment": env, "ok": False, "error": done.stderr.strip().splitlines()[-1:]})
            print(f"{env}: failed to score\n{done.stderr[-3000:]}", file=sys.stderr)
            continue
        scored = json.loads(out.read_text())
        rows += [compare(env, name, scored, references[name], kinds[name]) for name in RUNS]
    result = {"question": "does the stock NATIX miner's load line serve the export, in NATIX's lock and today's "
                          "transformers, with and without torchvision, and score like the bundle?",
              "tolerance": TOLERANCE, "runs": RUNS,
              "images_per_run": {k: sum(1 for v in kinds["dinov2-tiny"].values() if v.startswith(k))
                                 for k in ("224", "non-square")},
              "reference": "Predictor.from_bundle in .venv (transformers "
                           f"{__import__('transformers').__version__})",
              "environments": rows, "seconds": round(time.perf_counter() - start, 1),
              "ok": all(r["ok"] for r in rows)}
    RESULT.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'environment':<20} {'run':<19} {'transformers':<13} {'torchvision':<12} {'use_fast':<9} {'processor':<22} "
          f"{'max diff 224':>12} {'decisions':>9} {'non-square':>10}  ok")
    for r in rows:
        if "error" in r:
            print(f"{r['environment']:<20} error: {r['error']}")
            continue
        for key in ("use_fast", "use_fast_false"):
            m = r[key]
            print(f"{r['environment']:<20} {r['run']:<19} {r['versions']['transformers']:<13} "
                  f"{str(r['versions']['torchvision']):<12} {str(key == 'use_fast'):<9} {m['processor']:<22} {m['max_abs_diff_224']:>12.1e} "
                  f"{'equal' if m['decisions_equal_224'] else 'DIFFER':>9} "
                  f"{m['bundle_vs_miner_non_square_max_abs_diff']:>10.3f}  {r['ok']}")
    print(f"written {RESULT.relative_to(ROOT)}; {'PASS' if result['ok'] else 'FAIL'}")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
