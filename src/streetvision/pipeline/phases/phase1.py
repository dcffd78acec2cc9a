"""Phase 1: supervised training of backbone + head (frozen / a PEFT adapter / full), starting from phase4's merged
backbone when it is committed; writes the model (safetensors), per-split logits, metrics and the learning curve.
With ``model.adapter=auto`` it first picks the adapter on val_select (:func:`select_adapter`).

The recipe (:func:`build_model`, :func:`train_model`) is also what the crossfit phase trains on each fold.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import tempfile

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from torch.utils.data import DataLoader, TensorDataset

from streetvision.config import to_plain
from streetvision.errors import ConfigError
from streetvision.data.datamodules import LabeledDataModule, LoaderOptions
from streetvision.data.splits import Splits, files_digest, load_splits
from streetvision.data.transforms import EvalTransform, train_transform
from streetvision.eval.logits import write_logits
from streetvision.metrics.classification import binary_metrics, softmax_probs
from streetvision.io import atomic_write_json
from streetvision.models.adapters import ADAPTERS, adapter_ranks
from streetvision.models.backbones import load_backbone, preprocess_for
from streetvision.models.classifier import (
    ClassifierSpec,
    RoadworkClassifier,
    apply_finetune_mode,
    save_classifier,
    spec_preprocess,
    trainable_parameters,
)
from streetvision.models.checkpoints import Checkpointing
from streetvision.models.devices import DevicePlan, resolve_devices
from streetvision.models.embedding_cache import cached_embeddings
from streetvision.models.tracking import make_loggers
from streetvision.models.training import (
    ClassifierModule,
    TrainerSettings,
    TrainSettings,
    class_weights,
    epochs_for_steps,
    fit_classifier,
    optimizer_steps_per_epoch,
    predict_logits,
)
from streetvision.pipeline.artifacts import ArtifactSchema
from streetvision.pipeline.distributed import global_rank
from streetvision.pipeline.phases.pretrain import backbone_inputs, committed_backbone, start_backbone
from streetvision.pipeline.registry import PhaseContext, PhaseResult, phase


BACKBONE_PHASES = ("phase4", "pretrain")  # phases whose committed backbone phase1 starts from (backbone_source)


def backbone_source(cfg: DictConfig, art: ArtifactSchema, committed: frozenset[str]) -> str:
    """phase4's merged backbone when requested or (by default) when committed; else the pretrain phase's backbone
    when requested or committed; else ``model.backbone``."""
    return committed_backbone(cfg.model.init_from_explora, "phase4", "model.init_from_explora",
                              art.explora_backbone_dir, committed, lambda: start_backbone(cfg, art, committed))


def build_model(cfg: DictConfig, source: str, class_names: list[str], adapter: str | None = None) -> RoadworkClassifier:
    """Backbone from ``source`` + head, with the configured fine-tuning mode applied (``adapter``: the PEFT adapter
    kind in ``lora`` mode, default ``model.adapter``)."""
    backbone = load_backbone(source, seed=cfg.seed).train()  # from_pretrained returns eval mode
    spec = ClassifierSpec(class_names=class_names, head=cfg.model.head, head_hidden=cfg.model.head_hidden,
                          head_dropout=cfg.model.head_dropout, pooling=cfg.model.pooling,
                          finetune=cfg.model.finetune,
                          preprocess=preprocess_for(backbone, source).as_dict(), backbone_source=source)
    lora = cfg.model.lora
    return apply_finetune_mode(RoadworkClassifier(backbone, spec), cfg.model.finetune, lora.r, lora.alpha,
                               lora.dropout, list(lora.target_modules) or None, adapter or str(cfg.model.adapter))


def train_settings(training: DictConfig) -> TrainSettings:
    """The settings models.training reads, from ``cfg.training``."""
    return TrainSettings(
        lr=float(training.lr), backbone_lr=float(training.backbone_lr), weight_decay=float(training.weight_decay),
        warmup_fraction=float(training.warmup_fraction), loss=str(training.loss),
        focal_gamma=float(training.focal_gamma), epochs=int(training.epochs),
        early_stopping_patience=int(training.early_stopping_patience), optimizer=str(training.optimizer),
        profit_ref_lr=float(training.profit_ref_lr), profit_ref_steps=int(training.profit_ref_steps),
        trainer=TrainerSettings(grad_accum=int(training.grad_accum), gradient_clip=float(training.gradient_clip),
                                progress_bar=bool(training.progress_bar)))


@dataclass(frozen=True)
class FitTarget:
    """Where one supervised fit writes (its learning curve, Lightning's root directory), what it logs to and
    checkpoints into, and the split it keeps the best epoch on (``None``: no validation, the last trained epoch's
    weights are kept; early stopping then never applies). ``stop_epoch`` (0-based) ends training after that epoch
    while the learning-rate schedule keeps the whole budget's length: a crossfit fold model stops where phase1's
    kept epoch was, on the same schedule."""

    curve_csv: Path
    root_dir: Path
    cache_dir: Path  # frozen embeddings, shared across runs
    loggers: list = field(default_factory=list)
    checkpointing: Checkpointing | None = None
    val_split: str | None = "val_select"
    stop_epoch: int | None = None

    def trained_epochs(self, budget: int) -> int:
        """Epochs that train out of a schedule of ``budget`` epochs."""
        return budget if self.stop_epoch is None or self.stop_epoch < 0 else min(budget, self.stop_epoch + 1)


def _loaders(cfg: DictConfig, splits: Splits, model: RoadworkClassifier) -> LabeledDataModule:
    pre = spec_preprocess(model.spec)
    train_tf = train_transform(pre, cfg.training)
    return LabeledDataModule(splits, train_tf, EvalTransform(pre), cfg.training.batch_size,
                             LoaderOptions.from_hardware(cfg.hardware, pre.size,
                                                               resolve_devices(cfg.hardware).devices))


def train_frozen(cfg: DictConfig, model: RoadworkClassifier, dm: LabeledDataModule, splits: Splits,
                 plan: DevicePlan, target: FitTarget) -> dict:
    """Linear probe: cached embeddings per split, then the head trains on them with the same Lightning loop (no
    checkpoints: the embeddings are cached and the head's epochs take milliseconds)."""
    pre = spec_preprocess(model.spec)
    cache = target.cache_dir / "embeddings"
    data, hits = {}, {}
    for split in ("train", target.val_split) if target.val_split else ("train",):
        emb, labels, hit = cached_embeddings(model.backbone, dm.loader(split), pre,
                                             files_digest(splits.rows(split)), cache, pooling=model.spec.pooling)
        data[split], hits[split] = TensorDataset(emb, labels), hit
    epochs = int(cfg.phase1.frozen_epochs)
    bs = int(cfg.training.batch_size)
    train = DataLoader(data["train"], batch_size=bs, shuffle=True)
    val = DataLoader(data[target.val_split], batch_size=512) if target.val_split else None
    training = replace(train_settings(cfg.training), epochs=target.trained_epochs(epochs))
    module = ClassifierModule(model.head, training,
                              total_steps=epochs * optimizer_steps_per_epoch(train, plan.world_size),
                              class_weights=class_weights(splits.labels("train"), cfg.training.class_weighted),
                              head_prefix="")
    info = fit_classifier(module, train, val, replace(plan, compile=False), training, target.curve_csv,
                          target.root_dir,  # nothing to compile: the head trains on cached embeddings
                          loggers=target.loggers)
    return {**info, "epochs": epochs, "trained_epochs": training.epochs, "embedding_cache_hits": hits}


def train_end_to_end(cfg: DictConfig, model: RoadworkClassifier, dm: LabeledDataModule, splits: Splits,
                     plan: DevicePlan, target: FitTarget) -> dict:
    """LoRA or full fine-tuning with validator-style augmentation (the backbone compiled when requested)."""
    train = dm.train_dataloader()
    per_epoch = optimizer_steps_per_epoch(train, plan.world_size, cfg.training.grad_accum)
    epochs = epoch_budget(cfg.training, per_epoch)
    training = replace(train_settings(cfg.training), epochs=target.trained_epochs(epochs))
    steps = epochs * per_epoch
    module = ClassifierModule(model, training, total_steps=steps,
                              class_weights=class_weights(splits.labels("train"), cfg.training.class_weighted),
                              compile_backend=plan.compile_backend if plan.compile else None)
    val = dm.val_dataloader(target.val_split) if target.val_split else None
    info = fit_classifier(module, train, val, plan, training, target.curve_csv, target.root_dir,
                          target.checkpointing, target.loggers)
    return {**info, "epochs": epochs, "optimizer_steps": steps, "trained_epochs": training.epochs,
            "data_loading": dm.describe()}


def train_model(cfg: DictConfig, model: RoadworkClassifier, splits: Splits, plan: DevicePlan,
                target: FitTarget) -> tuple[LabeledDataModule, dict]:
    """Train ``model`` on the train split of ``splits`` by phase1's recipe (``model.finetune``: the frozen probe,
    or LoRA / full fine-tuning); return the data module (to score the other splits) and the training facts."""
    dm = _loaders(cfg, splits, model)
    train = train_frozen if cfg.model.finetune == "frozen" else train_end_to_end
    return dm, train(cfg, model, dm, splits, plan, target)


def select_adapter(cfg: DictConfig, source: str, splits: Splits, plan: DevicePlan, cache_dir: Path,
                   console: Console) -> tuple[str, dict]:
    """``model.adapter=auto``: each of ``model.adapter_search.candidates`` trains on the train split by this recipe
    for ``max_steps`` optimizer steps (the best val_select epoch kept, as phase1 keeps it); the candidate with the
    best val_select MCC (ties: lower val_select loss) wins. Candidates that cannot wrap this backbone are skipped and
    recorded. Never sees test or val_calib. Returns the winner and every candidate's record."""
    search = cfg.model.adapter_search
    candidates = list(dict.fromkeys(str(c) for c in search.candidates))
    if not candidates:
        raise ConfigError("model.adapter=auto with an empty model.adapter_search.candidates: nothing to choose from.",
                          f"list candidates, e.g. model.adapter_search.candidates=[{','.join(ADAPTERS)}].")
    if len(candidates) == 1:
        console.print(f"model.adapter=auto with one candidate ({candidates[0]}): no search, it trains as is")
        return candidates[0], {candidates[0]: {"status": "only candidate"}}
    brief = OmegaConf.merge(cfg, {"training": {"optimizer_steps": int(search.max_steps)}})
    records: dict[str, dict] = {}
    for adapter in candidates:
        L.seed_everything(cfg.seed, workers=True, verbose=False)  # every candidate starts alike
        start = time.perf_counter()
        try:
            model = build_model(brief, source, splits.class_names, adapter)
        except ConfigError as exc:
            records[adapter] = {"status": "skipped", "reason": exc.message}
            console.print(f"adapter search: {adapter} skipped ({exc.message})")
            continue
        with tempfile.TemporaryDirectory(prefix="adapter_search_") as tmp:
            target = FitTarget(Path(tmp) / "curve.csv", Path(tmp), cache_dir)
            dm, info = train_model(brief, model, splits, plan, target)
            logits, labels = predict_logits(model, dm.loader(target.val_split), plan.torch_device)
        m = binary_metrics(labels, softmax_probs(logits))
        loss = float(torch.nn.functional.cross_entropy(torch.from_numpy(logits).float(), torch.from_numpy(labels)))
        records[adapter] = {"status": "ok", "val_select_mcc": float(m["mcc"]), "val_select_loss": loss,
                            "optimizer_steps": info["optimizer_steps"], "best_epoch": info["best_epoch"],
                            "seconds": time.perf_counter() - start}
        console.print(f"adapter search: {adapter} val_select MCC {m['mcc']:.3f} loss {loss:.3f}")
    ok = {a: r for a, r in records.items() if r["status"] == "ok"}
    if not ok:
        raise ConfigError(f"model.adapter=auto: no candidate applies to this backbone ({records}).",
                          "set model.adapter_search.candidates to adapters that wrap it, e.g. [lora,dora].")
    best = max(ok, key=lambda a: (ok[a]["val_select_mcc"], -ok[a]["val_select_loss"]))
    console.print(f"adapter search: {best} kept")
    return best, records


def epoch_budget(training: DictConfig, steps_per_epoch: int) -> int:
    """``training.epochs``, or with ``training.optimizer_steps > 0`` the whole epochs reaching that many optimizer
    steps at ``steps_per_epoch`` (the schedule then has the same length on 135 photos as on 3,200 scenes)."""
    steps = int(training.optimizer_steps)
    return epochs_for_steps(steps, steps_per_epoch) if steps > 0 else int(training.epochs)


def phase1_loggers(cfg: DictConfig, art: ArtifactSchema) -> list:
    """The configured experiment trackers (logging.loggers) for this run's phase1."""
    run = art.identity()
    return make_loggers(list(cfg.logging.loggers), art.logs_dir, "phase1", run["experiment_name"], run["run_id"],
                        cfg.logging.wandb_project)


@phase("phase1", "supervised training of backbone + head", dir="phase1", needs=("splits",), uses=BACKBONE_PHASES,
       config_keys=("seed", "model", "training", "hardware.precision", "phase1"),
       reads=("hardware", "logging", "pipeline.force"))
def run_phase1(ctx: PhaseContext) -> PhaseResult:
    """Train, then score the evaluation splits with the best weights and save everything."""
    cfg, art = ctx.cfg, ctx.artifacts
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    splits = load_splits(art.splits_json)
    source = backbone_source(cfg, art, ctx.committed)
    plan = resolve_devices(cfg.hardware)
    start = time.perf_counter()
    adapter, search = str(cfg.model.adapter), None
    if cfg.model.finetune == "lora" and adapter == "auto":
        adapter, search = select_adapter(cfg, source, splits, plan, art.cache_dir, ctx.console)
        L.seed_everything(cfg.seed, workers=True, verbose=False)
    model = build_model(cfg, source, splits.class_names, adapter)
    trainable, total = trainable_parameters(model)
    shown = f" ({adapter})" if cfg.model.finetune == "lora" else ""
    ctx.console.print(f"backbone: {source}  finetune: {cfg.model.finetune}{shown}  trainable: {trainable:,} / "
                      f"{total:,} ({100 * trainable / total:.2f}%)")
    checkpointing = Checkpointing.prepare(art.checkpoint_dir("phase1"), ctx.fingerprint, "phase1",
                                          bool(cfg.pipeline.force))
    if checkpointing.resume:
        ctx.console.print(f"resuming phase1 from {art.rel(checkpointing.resume)}")
    target = FitTarget(art.training_curve_csv, art.phase_dir("phase1"), art.cache_dir, phase1_loggers(cfg, art),
                       checkpointing)
    dm, train_info = train_model(cfg, model, splits, plan, target)
    train_seconds = time.perf_counter() - start
    if global_rank() > 0:
        return PhaseResult(outputs=[])  # externally launched DDP: rank 0 writes everything

    ranks = adapter_ranks(model)  # AdaLoRA: the ranks its allocation kept (before the merge)
    out_dir = art.phase1_model_dir
    outputs = save_classifier(model, out_dir)
    per_split = {}
    for split in cfg.phase1.score_splits:
        logits, labels = predict_logits(model, dm.loader(split), plan.torch_device)
        ids = [r["path"] for r in splits.rows(split)]
        write_logits(art.logits_csv(split), ids, labels, logits, splits.class_names)
        outputs.append(art.logits_csv(split))
        per_split[split] = binary_metrics(labels, softmax_probs(logits))
    metrics = {
        "splits": per_split, "backbone_source": art.rel(source) if Path(source).exists() else source,
        "finetune": cfg.model.finetune, **({"adapter": adapter} if cfg.model.finetune == "lora" else {}),
        **({"adapter_search": search} if search else {}), **({"adapter_ranks": ranks} if ranks else {}),
        "trainable_parameters": trainable, "total_parameters": total,
        "trainable_percentage": 100.0 * trainable / total, "train_seconds": train_seconds,
        "train_images": len(splits.rows("train")), **train_info, "config": to_plain(cfg.model),
    }
    atomic_write_json(art.metrics_json("phase1"), metrics)
    outputs += [art.metrics_json("phase1"), art.training_curve_csv]
    inputs = backbone_inputs(source)
    checkpointing.discard()
    test = per_split.get("test", next(iter(per_split.values()), {}))
    return PhaseResult(outputs=outputs, inputs=inputs, metrics={k: v for k, v in metrics.items() if k != "config"},
                       summary={"test MCC": f"{test.get('mcc', float('nan')):.3f}",
                                "test acc": f"{test.get('accuracy', float('nan')):.3f}",
                                "train": f"{train_seconds:.0f}s, best epoch {train_info['best_epoch']}"})

