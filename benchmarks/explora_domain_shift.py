"""Does ExPLoRA help under domain shift?  (CPU, under 20 minutes)

(a) pre-train a tiny DINOv2 with the DINO objective on unlabelled synthetic *source* scenes (a stand-in for
    DINOv2's natural-image pre-training) and save it as a local backbone;
(b) arm A: frozen linear probe (logistic regression on pooled embeddings) on a small labelled *target* train set;
(c) arm B: ExPLoRA (phase4 through the real pipeline: DINO, LoRA + last block unfrozen) on unlabelled *target*
    scenes starting from (a), then the same probe.
Reports target-test MCC and accuracy with 95% bootstrap intervals and the paired B - A difference.

    .venv/bin/python benchmarks/explora_domain_shift.py [--quick]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch
from omegaconf import OmegaConf
from rich.console import Console
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import report  # noqa: E402

from streetvision.config import load_config  # noqa: E402
from streetvision.data.datamodules import ImageDataset, UnlabeledDataModule  # noqa: E402
from streetvision.data.synthetic import write_dataset  # noqa: E402
from streetvision.data.transforms import EvalTransform, MultiCropTransform  # noqa: E402
from streetvision.eval.bootstrap import bootstrap_ci  # noqa: E402
from streetvision.metrics.classification import metrics_from_decisions  # noqa: E402
from streetvision.models.backbones import build_builtin, load_backbone, preprocess_for  # noqa: E402
from streetvision.models.embedding_cache import compute_embeddings  # noqa: E402
from streetvision.models.explora import SelfSupervisedModule  # noqa: E402
from streetvision.models.devices import resolve_devices  # noqa: E402
from streetvision.models.training import make_trainer  # noqa: E402
from streetvision.pipeline.artifacts import ArtifactSchema  # noqa: E402
from streetvision.pipeline.phases.phase1 import train_settings  # noqa: E402
from streetvision.pipeline.phases.phase4 import self_supervised_settings  # noqa: E402
from streetvision.pipeline.runner import run_pipeline  # noqa: E402


def pretrain_source(out: Path, images: list[Path], epochs: int, cfg) -> None:
    """(a): full DINO pre-training of a random tiny backbone on source scenes."""
    L.seed_everything(0, workers=True, verbose=False)
    backbone = build_builtin("dinov2-tiny", seed=0).train()
    pre = preprocess_for(backbone, "dinov2-tiny")
    dm = UnlabeledDataModule(images, MultiCropTransform(pre, 56), batch_size=32)
    loader = dm.train_dataloader()
    module = SelfSupervisedModule(backbone, "dino", self_supervised_settings(cfg.phase4), total_steps=epochs * len(loader))
    trainer = make_trainer(resolve_devices(cfg.hardware), train_settings(cfg.training).trainer, [], epochs, out.parent,
                           validate=False)
    trainer.fit(module, train_dataloaders=loader)
    module.student.save_pretrained(out, safe_serialization=True)


def probe(backbone_dir: Path, train: list[tuple[Path, int]], test: list[tuple[Path, int]]) -> np.ndarray:
    """Frozen linear probe: logistic regression on standardised embeddings; returns test predictions."""
    model = load_backbone(str(backbone_dir))
    pre = preprocess_for(model, str(backbone_dir))

    def embed(rows):
        ds = ImageDataset([p for p, _ in rows], [y for _, y in rows], EvalTransform(pre))
        emb, _ = compute_embeddings(model, DataLoader(ds, batch_size=64))
        return emb.numpy()

    scaler = StandardScaler().fit(embed(train))
    clf = LogisticRegression(max_iter=2000, C=0.5).fit(scaler.transform(embed(train)), [y for _, y in train])
    return clf.predict(scaler.transform(embed(test)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check the script runs")
    args = parser.parse_args()
    q = args.quick
    n_src, n_tgt_unlab, n_tgt_train, n_tgt_test = (64, 64, 40, 60) if q else (1500, 1500, 200, 800)
    src_epochs, explora_epochs = (1, 1) if q else (6, 5)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp_str:
        tmp = Path(tmp_str)
        src = [p for p, _ in write_dataset(tmp / "source_unlab", n_src, "source", seed=11, labeled=False)]
        tgt_unlab = tmp / "target_unlab"
        write_dataset(tgt_unlab, n_tgt_unlab, "target", seed=12, labeled=False)
        tgt_train = write_dataset(tmp / "target_train", n_tgt_train, "target", seed=13)
        tgt_test = write_dataset(tmp / "target_test", n_tgt_test, "target", seed=14)
        cfg = load_config([f"output_root={tmp / 'runs'}", "run_id=bench", "training.progress_bar=false"])

        t0 = time.perf_counter()
        base = tmp / "source_pretrained"
        pretrain_source(base, src, src_epochs, cfg)
        t_source = time.perf_counter() - t0

        t0 = time.perf_counter()
        pred_a = probe(base, tgt_train, tgt_test)
        explora_cfg = load_config([
            f"output_root={tmp / 'runs'}", "run_id=bench", "pipeline.phases=[phase4]", f"model.backbone={base}",
            "data.unlabeled.source=folder", f"data.unlabeled.root={tgt_unlab}", f"phase4.epochs={explora_epochs}",
            "training.progress_bar=false"])
        run_pipeline(explora_cfg, Console(quiet=True))
        art = ArtifactSchema.from_config(explora_cfg)
        metrics4 = OmegaConf.create(art.metrics_json("phase4").read_text())
        pred_b = probe(art.explora_backbone_dir, tgt_train, tgt_test)
        t_arms = time.perf_counter() - t0

    y = np.array([label for _, label in tgt_test])

    def stat(pred, key):
        return lambda rows: metrics_from_decisions(y[rows], pred[rows])[key]

    rows = []
    for name, pred in (("A: source backbone + probe", pred_a), ("B: + ExPLoRA on target + probe", pred_b)):
        mcc, acc = bootstrap_ci(stat(pred, "mcc"), len(y), seed=0), bootstrap_ci(stat(pred, "accuracy"), len(y), seed=0)
        rows.append({"arm": name, "target_test_mcc": mcc["estimate"], "mcc_ci95": f"[{mcc['low']:.3f}, "
                     f"{mcc['high']:.3f}]", "accuracy": acc["estimate"],
                     "accuracy_ci95": f"[{acc['low']:.3f}, {acc['high']:.3f}]"})
    diff = bootstrap_ci(lambda r: stat(pred_b, "mcc")(r) - stat(pred_a, "mcc")(r), len(y), seed=0)
    rows.append({"arm": "B - A (paired bootstrap)", "target_test_mcc": diff["estimate"],
                 "mcc_ci95": f"[{diff['low']:.3f}, {diff['high']:.3f}]", "accuracy": float("nan"),
                 "accuracy_ci95": ""})
    notes = (f"source pre-training {n_src} images x {src_epochs} epochs ({t_source:.0f}s); ExPLoRA on {n_tgt_unlab} "
             f"unlabelled target images x {explora_epochs} epochs, trainable {metrics4.trainable_percentage:.1f}%, "
             f"merge {metrics4.peft_validation_status}; probe on {n_tgt_train} labelled target images; test "
             f"{n_tgt_test} target images; total {time.perf_counter() - start:.0f}s on {torch.get_num_threads()} "
             f"threads.")
    report("explora_domain_shift" + ("_quick" if q else ""), rows, notes)


if __name__ == "__main__":
    main()
