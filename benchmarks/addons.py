"""Do the seed's add-ons pay? Each PEFT adapter (LoRA, DoRA, LoKr, LoHa, AdaLoRA, DoRAN) and ``model.adapter=auto``,
PROFIT against AdamW, and class-wise conformal risk control against the Learn-then-Test policy (issue 29).

Two settings, both through the pipeline's own phases:

- ``domain_shift`` (where adapters matter): backbone A is the ``pretrain`` phase (masked image modelling) on
  unlabelled synthetic *source* scenes, as in ``explora_domain_shift.py``; every arm fine-tunes A on labelled
  *target* scenes (night / fog camera), one folder the splits phase divides 0.4 / 0.1 / 0.2 / 0.3 into train /
  val_select / val_calib / test (the same split for every arm): phase1 (``training=small_data`` at
  ``--steps`` optimizer steps, validator augmentation) -> phase2 -> phase5 -> phase6, then the bundle scores the test
  images through the Predictor, clean and under the validator mix (challenges seeded per image, the same for every
  arm). Arms: ``model.finetune=lora`` with each adapter and with ``auto``; ``model.finetune=full`` with AdamW and
  with PROFIT. ``--seeds`` training seeds per arm. MCC and accuracy at the 50/50 prior, averaged over seeds; paired
  differences to LoRA (adapters) and to AdamW (PROFIT) with a 95 % percentile bootstrap over test images (the same
  resampled images for both arms and every seed: the interval covers the test set's sampling, not the seeds').
  Class-wise CRC: the LoRA arm's phase5 again with ``phase5.policy=crc_classwise`` (``--alpha``): per class, the
  coverage (accepted share), the miss rate (decided as the other class, over all of the class's test images) and
  the false-negative rate among accepted images, against the LTT policy of the same model.
- ``real_cv``: ``real_recipe.py``'s cross-validation on the real photos with the ``addon_*`` recipes (the shared
  self-supervised backbone fine-tuned with validator augmentation by each adapter, auto, AdamW and PROFIT), written
  to ``results/addons_real_cv.json``; paired differences per fold-run with the corrected resampled-t interval.

Both parts end by merging whatever results exist into ``results/addons.json`` and printing the table.

    .venv/bin/python benchmarks/addons.py --part domain_shift [--quick] [--seeds 2] [--workdir DIR]
    .venv/bin/python benchmarks/addons.py --part real_cv [--folds 5] [--workdir DIR]
    .venv/bin/python benchmarks/addons.py --part summary
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine_facts, print_table  # noqa: E402
from real_recipe import ADDON_ADAPTERS, corrected_t_ci  # noqa: E402

from streetvision.data.synthetic import write_dataset  # noqa: E402
from streetvision.io import atomic_write_json, read_json  # noqa: E402
from streetvision.io.manifest import library_versions, utc_now  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def result_path(name: str, quick: bool) -> Path:
    """results/<name>.json, or <name>_quick.json for a --quick smoke run (never a committed result)."""
    return RESULTS / f"{name}{'_quick' if quick else ''}.json"
ARMS: dict[str, list[str]] = {
    **{a: ["model.finetune=lora", f"model.adapter={a}"] for a in ADDON_ADAPTERS},
    "full_adamw": ["model.finetune=full", "training.optimizer=adamw"],
    "full_profit": ["model.finetune=full", "training.optimizer=profit"],
}
BASELINE = {**{a: "lora" for a in ADDON_ADAPTERS if a != "lora"}, "full_profit": "full_adamw"}
CONDITIONS = {"clean": "clean", "validator_mix": "mix"}
PRIOR = 0.5


@dataclass(frozen=True)
class Sizes:
    source_unlabeled: int
    target_labeled: int
    source_steps: int
    steps: int  # phase1 optimizer steps per arm
    search_steps: int  # model.adapter_search.max_steps


FULL = Sizes(1500, 1000, source_steps=400, steps=200, search_steps=40)
QUICK = Sizes(32, 120, source_steps=2, steps=2, search_steps=1)
SSL = ["pretrain.objective=masked", "pretrain.batch_size=32", "pretrain.lr=5e-4", "pretrain.mask_ratio=0.5"]
SPLITS = ["data.splits.train=0.4", "data.splits.val_select=0.1", "data.splits.val_calib=0.2", "data.splits.test=0.3"]


def run(runs: Path, run_id: str, overrides: list[str]):
    """The pipeline in ``runs/<run_id>`` (committed phases skipped); its ArtifactSchema and seconds spent."""
    from rich.console import Console

    from streetvision.config import load_config
    from streetvision.pipeline.artifacts import ArtifactSchema
    from streetvision.pipeline.runner import run_pipeline

    cfg = load_config([f"output_root={runs}", f"run_id={run_id}", "training.progress_bar=false",
                       "logging.loggers=[]", *overrides])
    start = time.perf_counter()
    run_pipeline(cfg, Console(quiet=True))
    return ArtifactSchema.from_config(cfg), time.perf_counter() - start


def test_images(art) -> tuple[list, np.ndarray, list[Path]]:
    """The decoded test split of a run (images, labels, paths)."""
    from streetvision.data.splits import load_splits
    from streetvision.eval.evaluate import load_samples

    splits = load_splits(art.splits_json)
    images, labels, paths, skipped = load_samples(list(zip(splits.paths("test"), splits.labels("test"))))
    assert not skipped, skipped
    return images, labels, paths


def score_bundle(bundle: Path, test: tuple, seed: int = 0) -> dict[str, Any]:
    """Per-image decisions (and the selective policy's accepted flags) of a bundle, clean and under the mix."""
    from streetvision import Predictor
    from streetvision.eval.evaluate import predict_conditions

    images, labels, paths = test
    predictions, _ = predict_conditions(Predictor.from_bundle(bundle), images, labels, seed, paths)
    return {short: {"decision": predictions[cond].decision.tolist(),
                    "probability": predictions[cond].probability.tolist(),
                    "accepted": None if predictions[cond].accepted is None else
                    predictions[cond].accepted.astype(int).tolist()}
            for cond, short in CONDITIONS.items()}


def mcc(labels: np.ndarray, decisions: np.ndarray) -> float:
    from streetvision.metrics.classification import metrics_from_decisions
    from streetvision.validator.prior import prior_weights

    return float(metrics_from_decisions(labels, decisions, prior_weights(labels, PRIOR))["mcc"])


def per_class_policy(labels: np.ndarray, scored: dict[str, list], thresholds: list[float] | None = None,
                     ) -> dict[str, dict[str, float]]:
    """Per class on test: coverage (accepted share), the false-negative rate among its accepted images, the miss
    rate of the decisions over all its images, and with class thresholds the miss rate CRC bounds (class not in
    the prediction set)."""
    from streetvision.metrics.crc import prediction_sets

    decisions, accepted = np.asarray(scored["decision"]), np.asarray(scored["accepted"]).astype(bool)
    sets = prediction_sets(np.asarray(scored["probability"]), np.asarray(thresholds)) if thresholds else None
    out = {}
    for k, name in enumerate(("no_roadwork", "roadwork")):
        mine = labels == k
        acc = accepted & mine
        out[name] = {"n": int(mine.sum()), "coverage": float(acc.sum() / mine.sum()),
                     "accepted_fnr": float((decisions[acc] != k).mean()) if acc.any() else 0.0,
                     "decision_miss_rate": float((decisions[mine] != k).mean()),
                     **({"set_miss_rate": float((~sets[mine, k]).mean())} if sets is not None else {})}
    return out


def domain_shift(args: argparse.Namespace) -> None:
    sizes = QUICK if args.quick else FULL
    work = args.workdir or Path("/tmp/addons_domain_shift")
    data, runs = work / "data", work / "runs"
    start = time.perf_counter()
    source = data / "source_unlabeled"
    target = data / "target_labeled"
    write_dataset(source, sizes.source_unlabeled, "source", seed=11, labeled=False)
    write_dataset(target, sizes.target_labeled, "target", seed=13)
    art_a, sec_a = run(runs, "A", ["pipeline.phases=[pretrain]", "model=dinov2_tiny", *SSL,
                                   "pretrain.images.source=folder", f"pretrain.images.root={source}",
                                   f"pretrain.max_steps={sizes.source_steps}"])
    backbone_a = str(art_a.pretrain_backbone_dir)
    common = ["model=dinov2_tiny", f"model.backbone={backbone_a}", "data=folder", f"data.root={target}", *SPLITS,
              "data.split_seed=0", "training=small_data", f"training.optimizer_steps={sizes.steps}",
              "training.augment=validator", f"model.adapter_search.max_steps={sizes.search_steps}",
              "pipeline.phases=[phase1,phase2,phase5,phase6]", "phase6.onnx=false", f"deploy.prior_roadwork={PRIOR}"]
    cache = work / "scores"
    cache.mkdir(parents=True, exist_ok=True)
    arms = args.arms or list(ARMS)
    scores: dict[str, list[dict]] = {}
    test = None
    for arm in arms:
        for seed in range(args.seeds):
            key = cache / f"{arm}_s{seed}.json"
            if key.is_file():
                scores.setdefault(arm, []).append(read_json(key))
                continue
            art, seconds = run(runs, f"{arm}_s{seed}", [*common, *ARMS[arm], f"seed={seed}"])
            test = test or test_images(art)
            record = {"seed": seed, "seconds": seconds, **score_bundle(art.bundle_dir, test),
                      "phase1": {k: v for k, v in read_json(art.metrics_json("phase1")).items()
                                 if k in ("adapter", "adapter_search", "adapter_ranks", "trainable_parameters",
                                          "train_seconds", "best_epoch", "optimizer_steps")}}
            if arm == "lora":  # the same model under class-wise CRC (phase5 and phase6 rerun, phase1 reused)
                art_crc, _ = run(runs, f"{arm}_s{seed}", [*common, *ARMS[arm], f"seed={seed}",
                                                           "phase5.policy=crc_classwise", f"phase5.alpha={args.alpha}"])
                record["crc"] = score_bundle(art_crc.bundle_dir, test)
                record["crc_thresholds"] = read_json(art_crc.scrcparams_json)["scrc_params"]["selective"][
                    "class_thresholds"]
                run(runs, f"{arm}_s{seed}", [*common, *ARMS[arm], f"seed={seed}"])  # leave the LTT run committed
            atomic_write_json(key, record)
            scores.setdefault(arm, []).append(record)
            print(f"{arm} seed {seed}: {seconds:.0f}s", flush=True)
    if test is None:
        art = run(runs, f"{arms[0]}_s0", [*common, *ARMS[arms[0]], "seed=0"])[0]
        test = test_images(art)
    labels = np.asarray(test[1])
    rows = summarise_domain_shift(scores, labels, args)
    atomic_write_json(result_path("addons_domain_shift", args.quick), {
        "benchmark": "addons_domain_shift", "measured_at": utc_now(), "machine": machine_facts(),
        "versions": library_versions(), "quick": bool(args.quick), "sizes": sizes.__dict__, "seeds": args.seeds,
        "test_images": int(len(labels)), "test_roadwork": int(labels.sum()), "alpha": args.alpha,
        "source_pretrain_s": sec_a, "total_s": time.perf_counter() - start, "arms": {a: ARMS[a] for a in arms},
        "common_overrides": common, **rows})
    summary(args.quick)


def summarise_domain_shift(scores: dict[str, list[dict]], labels: np.ndarray,
                           args: argparse.Namespace) -> dict[str, Any]:
    from streetvision.eval.bootstrap import bootstrap_ci

    def mean_mcc(arm: str, cond: str, idx: np.ndarray) -> float:
        return statistics.mean(mcc(labels[idx], np.asarray(r[cond]["decision"])[idx]) for r in scores[arm])

    n = len(labels)
    everything = np.arange(n)
    arms: dict[str, Any] = {}
    for arm in scores:
        entry: dict[str, Any] = {"seeds": len(scores[arm]),
                                 "seconds": statistics.mean(r["seconds"] for r in scores[arm])}
        for cond in CONDITIONS.values():
            ci = bootstrap_ci(lambda idx, a=arm, c=cond: mean_mcc(a, c, idx), n, args.resamples, seed=0)
            entry[f"{cond}_mcc"] = {"mean": mean_mcc(arm, cond, everything), "ci95": [ci["low"], ci["high"]],
                                    "per_seed": [mcc(labels, np.asarray(r[cond]["decision"])) for r in scores[arm]]}
            base = BASELINE.get(arm)
            if base in scores:
                d = bootstrap_ci(lambda idx, a=arm, b=base, c=cond: mean_mcc(a, c, idx) - mean_mcc(b, c, idx), n,
                                 args.resamples, seed=1)
                entry[f"{cond}_mcc_vs_{base}"] = {"mean_diff": mean_mcc(arm, cond, everything) - mean_mcc(
                    base, cond, everything), "ci95": [d["low"], d["high"]]}
        entry["phase1"] = [r["phase1"] for r in scores[arm]]
        arms[arm] = entry
    crc = {}
    for r in scores.get("lora", []):
        if "crc" not in r:
            continue
        for cond in ("clean",):
            crc[f"seed{r['seed']}"] = {
                "class_thresholds": r["crc_thresholds"],
                "ltt": per_class_policy(labels, r[cond]),
                "crc_classwise": per_class_policy(labels, r["crc"][cond], r["crc_thresholds"])}
    return {"domain_shift": arms, "crc_vs_ltt_on_test": crc}


def real_cv(args: argparse.Namespace) -> None:
    recipes = [f"addon_{a}" for a in ADDON_ADAPTERS] + ["addon_full_adamw", "addon_full_profit"]
    if args.arms:
        recipes = [f"addon_{a}" for a in args.arms]
    command = [sys.executable, str(Path(__file__).resolve().parent / "real_recipe.py"), "--recipes", *recipes,
               "--folds", str(args.folds), "--repeats", "1", "--name", result_path("addons_real_cv", args.quick).stem]
    if args.workdir:
        command += ["--workdir", str(args.workdir)]
    if args.quick:
        command += ["--quick"]
    subprocess.run(command, check=True)
    summary(args.quick)


def real_cv_rows(doc: dict[str, Any]) -> dict[str, Any]:
    """Per addon recipe: mean clean / mix MCC and the paired difference to its baseline per fold-run."""
    rows = doc["fold_runs"]
    k = int(doc["design"]["folds"])
    out: dict[str, Any] = {}
    by = {(r["recipe"], r["repeat"], r["fold"]): r for r in rows}
    for recipe in dict.fromkeys(r["recipe"] for r in rows):
        mine = [r for r in rows if r["recipe"] == recipe]
        arm = recipe.removeprefix("addon_")
        entry: dict[str, Any] = {"fold_runs": len(mine)}
        for cond in CONDITIONS.values():
            entry[f"{cond}_mcc"] = {"mean": statistics.mean(r[f"{cond}_mcc"] for r in mine)}
            base = BASELINE.get(arm)
            pairs = [(r[f"{cond}_mcc"], by[(f"addon_{base}", r["repeat"], r["fold"])][f"{cond}_mcc"])
                     for r in mine if (f"addon_{base}", r["repeat"], r["fold"]) in by]
            if base and pairs:
                diffs = [a - b for a, b in pairs]
                entry[f"{cond}_mcc_vs_{base}"] = {"mean_diff": statistics.mean(diffs), "n": len(diffs),
                                                  "corrected_t_ci95": list(corrected_t_ci(diffs, 1 / (k - 1)))}
        out[arm] = entry
    return out


def summary(quick: bool = False) -> None:
    """Merge the parts' results into results/addons.json and print the table."""
    parts = {name: result_path(f"addons_{name}", quick) for name in ("domain_shift", "real_cv")}
    doc: dict[str, Any] = {"benchmark": "addons", "measured_at": utc_now(), "machine": machine_facts(),
                           "sources": {k: v.name for k, v in parts.items() if v.is_file()}}
    table = []
    if parts["domain_shift"].is_file():
        ds = read_json(parts["domain_shift"])
        doc["domain_shift"] = {k: ds[k] for k in ("domain_shift", "crc_vs_ltt_on_test", "seeds", "test_images",
                                                  "test_roadwork", "alpha", "quick", "sizes")}
    if parts["real_cv"].is_file():
        cv = read_json(parts["real_cv"])
        doc["real_cv"] = {"arms": real_cv_rows(cv), "folds": cv["design"]["folds"], "partial": cv.get("partial")}
    for arm in ARMS:
        row: dict[str, Any] = {"add-on": arm}
        for setting, key in (("domain_shift", "domain_shift"), ("real_cv", "arms")):
            entry = doc.get(setting, {}).get(key, {}).get(arm)
            for cond in CONDITIONS.values():
                if entry is None:
                    row[f"{setting} {cond} MCC"] = "-"
                    continue
                m = entry[f"{cond}_mcc"]["mean"]
                base = BASELINE.get(arm)
                diff = entry.get(f"{cond}_mcc_vs_{base}") if base else None
                ci = (diff or {}).get("ci95") or (diff or {}).get("corrected_t_ci95")
                row[f"{setting} {cond} MCC"] = f"{m:.3f}" + (
                    f" ({diff['mean_diff']:+.3f} [{ci[0]:+.3f}, {ci[1]:+.3f}])" if diff else "")
        table.append(row)
    doc["table"] = table
    out = result_path("addons", quick)
    atomic_write_json(out, doc)
    print_table(table)
    print(f"\nwritten: {out}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("domain_shift", "real_cv", "summary"), required=True)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check the script runs")
    parser.add_argument("--seeds", type=int, default=2, help="domain_shift: training seeds per arm")
    parser.add_argument("--arms", nargs="*", choices=list(ARMS), default=None, help="default: all")
    parser.add_argument("--alpha", type=float, default=0.1, help="class-wise CRC's miss rate per class")
    parser.add_argument("--folds", type=int, default=5, help="real_cv: folds (1 repeat)")
    parser.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples")
    parser.add_argument("--workdir", type=Path, default=None, help="keep data and runs here (resumable)")
    args = parser.parse_args()
    {"domain_shift": domain_shift, "real_cv": real_cv, "summary": lambda a: summary(a.quick)}[args.part](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
