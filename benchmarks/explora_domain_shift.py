"""Does ExPLoRA help under domain shift, as the paper runs it?  (CPU, about 20 minutes on 2 cores)

Khanna et al. (ICML 2025, arXiv 2406.10973): a backbone pre-trained by self-supervision on a source domain,
extended by self-supervision on unlabelled target images (LoRA on all blocks but the last, which trains fully),
then probed with few target labels. Here, all through the pipeline's own phases:

- arm A: the `pretrain` phase from random weights on unlabelled synthetic *source* scenes (a stand-in for
  DINOv2's natural-image pre-training);
- arm B: A + phase4 (ExPLoRA) on unlabelled *target* scenes (night / fog camera: data/synthetic.py);
- arm C: A + the same number of steps of full self-supervised training on the target (the `pretrain` phase from A,
  every weight, no LoRA): does the parameterisation matter, or only the target data?
- arm D: the `pretrain` phase from random weights on the target only, same steps: is the source pre-training used?
- reference R: random weights (no pre-training);
- ExPLoRA variants of B, tuned honestly beside it (same start, steps and data): the first block unfrozen instead of
  the last, the patch embedding and layer norms trained too, LoRA rank 64, 4x the learning rate.

Each backbone is probed with the same labelled target images: a frozen linear probe (logistic regression on
standardised embeddings) and a LoRA fine-tune (PEFT LoRA on the attention projections + a linear head). Target
test MCC and accuracy with 95% bootstrap intervals; paired-bootstrap differences B - A, C - A, D - A, B - C,
B - D on the same test images.

    .venv/bin/python benchmarks/explora_domain_shift.py [--quick] [--workdir DIR] [--objective masked] ...

``--workdir`` keeps the generated images and the runs: a rerun skips every committed phase (the pipeline's own
up-to-date check) and reuses probe predictions of unchanged backbones.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import lightning as L
import numpy as np
import torch
from rich.console import Console
from sklearn.linear_model import LogisticRegressionCV
from sklearn.preprocessing import StandardScaler
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import report  # noqa: E402

from streetvision.config import load_config  # noqa: E402
from streetvision.data.datamodules import ImageDataset  # noqa: E402
from streetvision.data.synthetic import CLASS_DIRS, write_dataset  # noqa: E402
from streetvision.data.transforms import EvalTransform, TrainTransform  # noqa: E402
from streetvision.eval.bootstrap import bootstrap_ci  # noqa: E402
from streetvision.metrics.classification import metrics_from_decisions  # noqa: E402
from streetvision.models.backbones import build_builtin, load_backbone, preprocess_for, state_checksum  # noqa: E402
from streetvision.models.classifier import ClassifierSpec, RoadworkClassifier, apply_finetune_mode  # noqa: E402
from streetvision.models.devices import DevicePlan  # noqa: E402
from streetvision.models.embedding_cache import compute_embeddings  # noqa: E402
from streetvision.models.training import (  # noqa: E402
    ClassifierModule,
    TrainerSettings,
    TrainSettings,
    make_trainer,
    optimizer_steps_per_epoch,
    predict_logits,
)
from streetvision.pipeline.artifacts import ArtifactSchema  # noqa: E402
from streetvision.pipeline.runner import run_pipeline  # noqa: E402

QUIET = Console(quiet=True)
CPU = DevicePlan(accelerator="cpu", devices=1, num_nodes=1, strategy="auto", precision="32", compile=False,
                 compile_backend="inductor", requested_by="benchmark")
ARMS = {
    "R": "random weights (no pre-training)",
    "A": "source SSL",
    "B": "A + ExPLoRA on target",
    "C": "A + full SSL on target (same steps)",
    "D": "SSL on target only (same steps)",
}
LORA_PROBED = ("R", "A", "B", "C", "D")  # the LoRA probe costs ~1 min per arm: the variants get the linear one
PROBE_HEAD_LR, PROBE_LORA_LR = 1e-2, 3e-3  # at 1e-3 / 1e-3 and 10 epochs every arm was under-fitted
COMPARISONS = (("B", "A"), ("C", "A"), ("D", "A"), ("B", "C"), ("B", "D"))
# ExPLoRA variants tuned against B (each phase4 from A's backbone, same steps): (label, overrides on top of B's)
VARIANTS = {
    "B-first": ("B, the first block unfrozen instead of the last", ["model.explora.unfrozen_from=first"]),
    "B-embed": ("B + patch embedding + layer norms trained", ["model.explora.train_patch_embeddings=true",
                                                              "model.explora.train_norms=true"]),
    "B-r64": ("B with LoRA rank 64", ["model.explora.r=64", "model.explora.alpha=128"]),
    "B-lr": ("B with 4x the learning rate", []),  # phase4.lr = 4 x --lr, set in main
}


@dataclass(frozen=True)
class Sizes:
    """Image counts and step budgets."""

    source_unlabeled: int
    target_unlabeled: int
    target_train: int
    target_test: int
    source_steps: int
    target_steps: int  # arms B, C and D alike
    probe_epochs: int


FULL = Sizes(1500, 1500, 300, 800, source_steps=400, target_steps=200, probe_epochs=20)
QUICK = Sizes(48, 48, 40, 60, source_steps=4, target_steps=3, probe_epochs=1)


def ssl_overrides(args: argparse.Namespace, batch: int) -> list[str]:
    """The self-supervised settings both phases share (the objective and its budget per step)."""
    keys = [f"batch_size={batch}", f"lr={args.lr}", f"mask_ratio={args.mask_ratio}"]
    return [*(f"pretrain.{k}" for k in keys), *(f"phase4.{k}" for k in keys), f"pretrain.objective={args.objective}",
            f"model.explora.objective={args.objective}"]


def run_arm(runs: Path, run_id: str, overrides: list[str]) -> tuple[ArtifactSchema, float]:
    """Run the listed phases in ``runs/<run_id>`` (committed ones are skipped); seconds spent."""
    cfg = load_config([f"output_root={runs}", "experiment_name=explora_bench", f"run_id={run_id}",
                       "training.progress_bar=false", "logging.loggers=[]", *overrides])
    start = time.perf_counter()
    run_pipeline(cfg, QUIET)
    return ArtifactSchema.from_config(cfg), time.perf_counter() - start


def embeddings(model, rows: list[tuple[Path, int]], pre, pooling: str) -> np.ndarray:
    ds = ImageDataset([p for p, _ in rows], [y for _, y in rows], EvalTransform(pre))
    return compute_embeddings(model, DataLoader(ds, batch_size=64), pooling=pooling)[0].numpy()


def linear_probe(backbone_dir: str, train: list, test: list, pooling: str) -> np.ndarray:
    """Frozen backbone: logistic regression (C by 5-fold CV on the train images) on standardised embeddings."""
    model = load_backbone(backbone_dir)
    pre = preprocess_for(model, backbone_dir)
    x_train, x_test = embeddings(model, train, pre, pooling), embeddings(model, test, pre, pooling)
    scaler = StandardScaler().fit(x_train)
    clf = LogisticRegressionCV(Cs=[0.01, 0.03, 0.1, 0.3, 1.0], cv=5, max_iter=3000, scoring="accuracy")
    clf.fit(scaler.transform(x_train), [y for _, y in train])
    return clf.predict(scaler.transform(x_test))


def lora_probe(backbone_dir: str, train: list, test: list, pooling: str, epochs: int, root: Path) -> np.ndarray:
    """PEFT LoRA (r=8) on the attention projections + a linear head, trained on the target train images with
    flips for a fixed number of epochs (no validation split to spare); argmax decisions on the test images."""
    L.seed_everything(0, workers=True, verbose=False)
    backbone = load_backbone(backbone_dir).train()
    pre = preprocess_for(backbone, backbone_dir)
    spec = ClassifierSpec(class_names=list(CLASS_DIRS), pooling=pooling, finetune="lora")
    model = apply_finetune_mode(RoadworkClassifier(backbone, spec), "lora", r=8, alpha=16, dropout=0.05)
    trainer_settings = TrainerSettings(grad_accum=1, gradient_clip=1.0, progress_bar=False)
    settings = TrainSettings(lr=PROBE_HEAD_LR, backbone_lr=PROBE_LORA_LR, weight_decay=0.05, warmup_fraction=0.1, loss="ce",
                             focal_gamma=2.0, epochs=epochs, early_stopping_patience=0, trainer=trainer_settings)
    train_ds = ImageDataset([p for p, _ in train], [y for _, y in train], TrainTransform(pre, "flip"))
    loader = DataLoader(train_ds, batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(0))
    module = ClassifierModule(model, settings, total_steps=epochs * optimizer_steps_per_epoch(loader, 1))
    make_trainer(CPU, trainer_settings, [], epochs, root, validate=False).fit(module, train_dataloaders=loader)
    test_ds = ImageDataset([p for p, _ in test], [y for _, y in test], EvalTransform(pre))
    logits, _ = predict_logits(model, DataLoader(test_ds, batch_size=64))
    return logits.argmax(1)


def cached_predictions(cache: Path, key: str, compute) -> tuple[np.ndarray, float]:
    """Predictions from ``cache/<key>.json`` when present, else computed (and seconds spent) and stored."""
    path = cache / f"{key}.json"
    if path.is_file():
        data = json.loads(path.read_text())
        return np.array(data["predictions"]), data["seconds"]
    start = time.perf_counter()
    predictions = compute()
    seconds = time.perf_counter() - start
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"predictions": [int(p) for p in predictions], "seconds": seconds}))
    return predictions, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check the script runs")
    parser.add_argument("--workdir", type=Path, help="keep images, runs and probe predictions here (resumable)")
    parser.add_argument("--objective", default="masked", choices=("dino", "masked"))
    parser.add_argument("--lr", type=float, default=5e-4, help="both self-supervised phases")
    parser.add_argument("--explora-lr", type=float, help="phase4's learning rate alone (default: --lr)")
    parser.add_argument("--mask-ratio", type=float, default=0.5)
    parser.add_argument("--batch", type=int, default=32, help="self-supervised batch (images)")
    parser.add_argument("--unfrozen-blocks", type=int, default=1, help="ExPLoRA: last blocks trained fully")
    parser.add_argument("--rank", type=int, default=16, help="ExPLoRA LoRA rank")
    parser.add_argument("--unfrozen-from", default="last", choices=("last", "first"))
    parser.add_argument("--train-patch-embeddings", action="store_true", help="ExPLoRA: the patch embedding too")
    parser.add_argument("--train-norms", action="store_true", help="ExPLoRA: the LoRA blocks' layer norms too")
    parser.add_argument("--pooling", default="cls_max", help="both probes' embedding")
    parser.add_argument("--source-steps", type=int, help=f"arm A's steps (default {FULL.source_steps})")
    parser.add_argument("--target-steps", type=int, help=f"arms B, C, D's steps (default {FULL.target_steps})")
    parser.add_argument("--variants", nargs="*", choices=list(VARIANTS), default=list(VARIANTS),
                        help="ExPLoRA variants to run beside B (default: all)")
    parser.add_argument("--name", default="explora_domain_shift")
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    sizes = replace(sizes, source_steps=args.source_steps or sizes.source_steps,
                    target_steps=args.target_steps or sizes.target_steps)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp_str:
        work = args.workdir or Path(tmp_str)
        data, runs = work / "data", work / "runs"
        source = data / "source_unlabeled"
        target = data / "target_unlabeled"
        write_dataset(source, sizes.source_unlabeled, "source", seed=11, labeled=False)
        write_dataset(target, sizes.target_unlabeled, "target", seed=12, labeled=False)
        train = write_dataset(data / "target_train", sizes.target_train, "target", seed=13)
        test = write_dataset(data / "target_test", sizes.target_test, "target", seed=14)
        t_data = time.perf_counter() - start

        ssl = ssl_overrides(args, args.batch)
        folder = ["pretrain.images.source=folder", "model=dinov2_tiny"]
        a_overrides = [*ssl, *folder, f"pretrain.images.root={source}", f"pretrain.max_steps={sizes.source_steps}",
                       "model.backbone=dinov2-tiny"]
        art_a, sec_a = run_arm(runs, "A", ["pipeline.phases=[pretrain]", *a_overrides])
        explora = ["data.unlabeled.source=folder", f"data.unlabeled.root={target}",
                   f"phase4.max_steps={sizes.target_steps}", f"model.explora.unfrozen_blocks={args.unfrozen_blocks}",
                   f"model.explora.r={args.rank}", f"model.explora.alpha={2 * args.rank}",
                   f"model.explora.unfrozen_from={args.unfrozen_from}",
                   f"model.explora.train_patch_embeddings={args.train_patch_embeddings}",
                   f"model.explora.train_norms={args.train_norms}", f"phase4.lr={args.explora_lr or args.lr}"]
        art_b, sec_b = run_arm(runs, "A", [  # B extends A's committed backbone in the same run
            "pipeline.phases=[pretrain,phase4]", *a_overrides, *explora])
        variants = {}
        for key in args.variants:
            extra = [f"phase4.lr={4 * (args.explora_lr or args.lr)}"] if key == "B-lr" else VARIANTS[key][1]
            variants[key] = run_arm(runs, key, ["pipeline.phases=[phase4]", *ssl, *folder, *explora, *extra,
                                                f"model.backbone={art_a.pretrain_backbone_dir}"])
        on_target = [*ssl, *folder, f"pretrain.images.root={target}", f"pretrain.max_steps={sizes.target_steps}"]
        art_c, sec_c = run_arm(runs, "C", ["pipeline.phases=[pretrain]", *on_target,
                                           f"model.backbone={art_a.pretrain_backbone_dir}"])
        art_d, sec_d = run_arm(runs, "D", ["pipeline.phases=[pretrain]", *on_target, "model.backbone=dinov2-tiny"])

        random_dir = work / "random_tiny"
        if not random_dir.is_dir():
            build_builtin("dinov2-tiny", seed=0).save_pretrained(random_dir, safe_serialization=True)
        backbones = {"R": str(random_dir), "A": str(art_a.pretrain_backbone_dir),
                     "B": str(art_b.explora_backbone_dir), "C": str(art_c.pretrain_backbone_dir),
                     "D": str(art_d.pretrain_backbone_dir),
                     **{k: str(art.explora_backbone_dir) for k, (art, _) in variants.items()}}
        ssl_seconds = {"R": 0.0, "A": sec_a, "B": sec_b, "C": sec_c, "D": sec_d,
                       **{k: sec for k, (_, sec) in variants.items()}}
        predictions: dict[tuple[str, str], np.ndarray] = {}
        probe_seconds: dict[tuple[str, str], float] = {}
        for arm, directory in backbones.items():
            checksum = state_checksum(load_backbone(directory))[:12]
            for probe in ("linear", "lora") if arm in LORA_PROBED else ("linear",):
                key = f"{probe}_{args.pooling}_{sizes.probe_epochs}_{PROBE_HEAD_LR}_{PROBE_LORA_LR}_{checksum}"
                compute = (lambda d=directory: linear_probe(d, train, test, args.pooling)) if probe == "linear" else \
                    (lambda d=directory: lora_probe(d, train, test, args.pooling, sizes.probe_epochs, work / "probe"))
                predictions[arm, probe], probe_seconds[arm, probe] = cached_predictions(work / "probes", key, compute)
        total = time.perf_counter() - start

    y = np.array([label for _, label in test])

    def stat(pred: np.ndarray, key: str):
        return lambda rows: metrics_from_decisions(y[rows], pred[rows])[key]

    def interval(fn) -> tuple[float, str]:
        ci = bootstrap_ci(fn, len(y), seed=0)
        return ci["estimate"], f"[{ci['low']:.3f}, {ci['high']:.3f}]"

    arms = {**ARMS, **{k: VARIANTS[k][0] for k in args.variants}}
    comparisons = (*COMPARISONS, *((k, "A") for k in args.variants))
    rows = []
    for probe in ("linear", "lora"):
        for arm, label in arms.items():
            if (arm, probe) not in predictions:
                continue
            pred = predictions[arm, probe]
            mcc, mcc_ci = interval(stat(pred, "mcc"))
            acc, acc_ci = interval(stat(pred, "accuracy"))
            rows.append({"probe": probe, "arm": f"{arm}: {label}", "target_test_mcc": mcc, "mcc_ci95": mcc_ci,
                         "accuracy": acc, "accuracy_ci95": acc_ci, "ssl_seconds": round(ssl_seconds[arm], 1),
                         "probe_seconds": round(probe_seconds[arm, probe], 1)})
        for x, z in comparisons:
            if (x, probe) not in predictions:
                continue
            px, pz = predictions[x, probe], predictions[z, probe]
            diff, diff_ci = interval(lambda r, px=px, pz=pz: stat(px, "mcc")(r) - stat(pz, "mcc")(r))
            rows.append({"probe": probe, "arm": f"{x} - {z} (paired bootstrap)", "target_test_mcc": diff,
                         "mcc_ci95": diff_ci, "accuracy": None, "accuracy_ci95": "", "ssl_seconds": None,
                         "probe_seconds": None})
    metrics_b = json.loads(art_b.metrics_json("phase4").read_text())
    notes = (f"objective {args.objective} (lr {args.lr}, ExPLoRA lr {args.explora_lr or args.lr}, batch {args.batch}, mask ratio {args.mask_ratio}); A: "
             f"{sizes.source_steps} steps on {sizes.source_unlabeled} unlabelled source scenes; B, C, D: "
             f"{sizes.target_steps} steps each on {sizes.target_unlabeled} unlabelled target scenes (B: ExPLoRA, LoRA "
             f"r={args.rank} + {args.unfrozen_from} {args.unfrozen_blocks} block(s) unfrozen"
             f"{', patch embedding' if args.train_patch_embeddings else ''}"
             f"{', layer norms' if args.train_norms else ''}, trainable "
             f"{metrics_b['trainable_percentage']:.1f}%, merge {metrics_b['peft_validation_status']}); probes on "
             f"{sizes.target_train} labelled target images ({args.pooling} embeddings; LoRA probe "
             f"{sizes.probe_epochs} epochs), test {sizes.target_test} target images; data {t_data:.0f}s, total "
             f"{total:.0f}s on {torch.get_num_threads()} threads.")
    report(args.name + ("_quick" if args.quick else ""), rows, notes)


if __name__ == "__main__":
    main()
