"""The typed configuration schema: every key, its default and its meaning, in one place.

Hydra composes ``configs/config.yaml`` (group files under ``configs/<group>/``) on top of this schema, so an
unknown key or a value of the wrong type is rejected before any work starts. ``load_config`` is the only entry
point; it turns Hydra/OmegaConf errors into :class:`ConfigError` messages that name the key and the choices.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, List, Optional

if TYPE_CHECKING:  # omegaconf is imported where a config is built or read: the schema itself stays a light import
    from omegaconf import DictConfig

from streetvision.errors import ConfigError

CONFIG_DIR = Path(os.environ.get("STREETVISION_CONFIG_DIR", Path(__file__).resolve().parents[2] / "configs"))
SPLIT_NAMES = ("train", "val_select", "val_calib", "test")


@dataclass
class SplitFractions:
    """Fractions of each class that go to each split (must sum to 1; > 0 for each split a requested phase reads,
    ``split_readers``)."""

    train: float = 0.6
    val_select: float = 0.15
    val_calib: float = 0.1
    test: float = 0.15


@dataclass
class SyntheticConfig:
    """Embedded procedural street scenes (data.source=synthetic)."""

    n: int = 3200  # labelled images generated for the run
    domain: str = "source"  # source | target
    image_size: int = 224
    seed: int = 0


@dataclass
class UnlabeledConfig:
    """Unlabelled images for phase4: a folder tree, or synthetic target-domain scenes, or the train split."""

    source: str = "synthetic"  # folder | synthetic | train_split
    root: Optional[str] = None  # folder tree of images (source=folder)
    n: int = 400  # synthetic images (source=synthetic)
    domain: str = "target"


@dataclass
class HFConfig:
    """A Hugging Face ``datasets`` dataset: a Hub dataset id, a local save_to_disk directory or parquet files
    (data.source=hf)."""

    path: Optional[str] = None  # a Hub dataset id (owner/name; a value that exists on disk is a local path), a
    # directory from save_to_disk, or a parquet file / directory of parquet files
    revision: Optional[str] = None  # Hub id: branch, tag or commit hash (None: main); ignored for a local path
    split: Optional[str] = None  # split to read when the dataset has several (None: the first, e.g. train)
    image_column: str = "image"  # column of images (datasets.Image, or bytes/path structs)
    label_column: str = "label"  # column of labels: a ClassLabel, data.class_names, or 0/1
    streaming: bool = False  # read rows as a stream (load_dataset(streaming=True)): no Arrow copy, and a Hub id is
    # not downloaded (offline: read from the hub cache); each image is still written once into the run's data/


SOURCE_KINDS = ("real", "generated")  # the validator's two caches: real photos and generated ("synthetic") images


@dataclass
class SourceConfig:
    """One more labelled source (an item of data.sources): the keys of data's own source, plus its kind."""

    name: Optional[str] = None  # its tag in splits.json and the evaluation (default: its kind); names are unique
    kind: str = "generated"  # real | generated (diffusion-made images, the validator's "synthetic" cache)
    source: str = "folder"  # folder | csv | hf
    root: Optional[str] = None  # folder: one sub-folder per class
    csv_path: Optional[str] = None  # csv: columns path,label
    hf: HFConfig = field(default_factory=HFConfig)  # hf: a Hub dataset id, save_to_disk folder or parquet


@dataclass
class DataConfig:
    """Where labelled images come from, how they are decoded and split."""

    source: str = "synthetic"  # folder | csv | hf | synthetic
    root: Optional[str] = None  # folder source: one sub-folder per class
    csv_path: Optional[str] = None  # csv source: columns path,label (paths relative to the CSV's folder; may leave it)
    class_names: List[str] = field(default_factory=lambda: ["no_roadwork", "roadwork"])  # index 1 = positive
    splits: SplitFractions = field(default_factory=SplitFractions)
    split_seed: int = 42
    near_duplicate_distance: int = 4  # max Hamming distance of 64-bit perceptual hashes that counts as duplicate
    max_bad_fraction: float = 0.05  # stop when more than this fraction of files cannot be decoded
    max_image_pixels: int = 89_478_485  # decompression-bomb limit (Pillow's default)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    unlabeled: UnlabeledConfig = field(default_factory=UnlabeledConfig)
    hf: HFConfig = field(default_factory=HFConfig)
    kind: str = "real"  # real | generated: what data.source's images are (its tag; the validator draws each 50 %)
    sources: List[SourceConfig] = field(default_factory=list)  # more labelled sources, each tagged with its kind


@dataclass
class LoraSettings:
    """PEFT adapters (model.finetune=lora; which kind: model.adapter) and ExPLoRA's adapter kind (phase4)."""

    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: List[str] = field(default_factory=list)  # empty: the backbone's attention projections


@dataclass
class AdapterSearchConfig:
    """model.adapter=auto: every candidate trains on the train split by phase1's recipe for `max_steps` optimizer
    steps; the best val_select score (phase1's val_score) is kept, then trains with the full budget."""

    candidates: List[str] = field(default_factory=lambda: ["lora", "dora", "lokr", "loha", "adalora", "doran"])
    max_steps: int = 100


@dataclass
class ExploraConfig:
    """ExPLoRA parameterisation and objective (phase4)."""

    use_labeled_data: bool = False  # true: supervised CE on the train split of splits.json
    objective: str = "dino"  # dino | masked
    unfrozen_blocks: int = 1  # blocks trained fully (plus the final norm), at the `unfrozen_from` end
    unfrozen_from: str = "last"  # last (the paper's setting) | first (nearer the pixels: low-level shifts)
    train_patch_embeddings: bool = False  # the patch embedding trains fully too
    train_norms: bool = False  # the layer norms of the LoRA blocks train fully too
    r: int = 16
    alpha: int = 32
    dropout: float = 0.0
    gather_embeddings: bool = False  # dino: centre the teacher over all devices (all_reduce)
    merge_tolerance: float = 1e-4  # max abs output difference, compared in float32 at any training precision


@dataclass
class ModelConfig:
    """Backbone (built-in name, hub id or save_pretrained directory), head and fine-tuning mode."""

    backbone: str = "dinov2-tiny"  # a built-in random-weight config of any family (models.families.BUILTIN:
    # dinov2-tiny, convnextv2-atto, resnet-18, efficientnet-b0, vit-tiny, deit-tiny, swin-tiny, siglip-tiny, ...) | a
    # hub id (local cache) or save_pretrained directory of a supported family (models.families.FAMILIES)
    finetune: str = "full"  # frozen | lora (PEFT adapters of kind `adapter`) | full
    adapter: str = "lora"  # lora | dora | lokr | loha | adalora | doran (models/adapters.py) | auto: phase1 picks
    # the best candidate on val_select (adapter_search); phase1's model.finetune=lora and phase4's ExPLoRA blocks
    head: str = "linear"  # linear | mlp
    pooling: str = "family"  # family (what the family's *ForImageClassification computes: exportable) | cls | mean |
    # max | cls_mean | cls_max (backbones.pooled_embedding)
    head_hidden: int = 256
    head_dropout: float = 0.0
    init_from_explora: Optional[bool] = None  # None: start from phase4's backbone when it is committed
    init_from_pretrain: Optional[bool] = None  # None: phase4 (or phase1 without phase4) starts from the pretrain
    # phase's backbone when it is committed
    lora: LoraSettings = field(default_factory=LoraSettings)
    adapter_search: AdapterSearchConfig = field(default_factory=AdapterSearchConfig)
    explora: ExploraConfig = field(default_factory=ExploraConfig)


@dataclass
class TrainingConfig:
    """Supervised training (phase1)."""

    epochs: int = 12
    optimizer_steps: int = 0  # > 0: train ceil(optimizer_steps / steps per epoch) epochs instead of `epochs` (lora /
    # full), so the schedule's length follows the budget, not the data size (a small photo set gets as many updates)
    batch_size: int = 32
    lr: float = 1e-3  # head
    backbone_lr: float = 3e-4  # backbone (full) or adapters (lora)
    weight_decay: float = 0.05
    warmup_fraction: float = 0.1
    gradient_clip: float = 1.0
    grad_accum: int = 1
    loss: str = "ce"  # ce | focal
    focal_gamma: float = 2.0
    optimizer: str = "adamw"  # adamw | profit (models/profit.py: AdamW on gradients orthogonalised against a
    # reference SGD displacement; ref_steps + 1 forward/backward passes per step)
    profit_ref_lr: float = 1e-2  # PROFIT's reference SGD learning rate
    profit_ref_steps: int = 1  # PROFIT's reference steps per optimizer step
    class_weighted: bool = False
    early_stopping_patience: int = 5  # epochs without val_select improvement; 0 disables
    augment: str = "validator"  # none | flip | validator (streetvision.validator.challenges, see below)
    augment_level_probs: List[float] = field(default_factory=lambda: [0.25, 0.25, 0.25, 0.25])  # levels 0-3
    camera: List[str] = field(default_factory=list)  # dashcam effects before the augmentation (data/camera.py):
    # wide_angle | vignette | motion_blur | low_light | glare | compression
    camera_prob: float = 0.3  # probability of each camera option per image
    progress_bar: bool = True


@dataclass
class Phase1Config:
    """Phase 1 outputs."""

    score_splits: List[str] = field(default_factory=lambda: ["val_select", "val_calib", "test"])
    frozen_epochs: int = 100  # head epochs on cached embeddings (model.finetune=frozen)


@dataclass
class CrossfitConfig:
    """The crossfit phase (small data): K models trained by phase1's recipe on K stratified folds of train +
    val_select + val_calib (duplicate groups kept whole; never test), each scoring its held-out fold; when it is
    committed, phase2 and phase5 fit the threshold, temperature and selective policy on these out-of-fold logits
    instead of one small split. Runs after phase1: each fold model trains phase1's schedule and stops after the
    epoch phase1 kept on val_select (no validation is left inside a fold)."""

    folds: int = 3  # K >= 2; each class needs at least K distinct images (duplicate groups); each fold is a
    # phase1 training, and with K = 3 a fold model trains on 2/3 of train + val, about phase1's train size


@dataclass
class SelfSupervisedConfig:
    """Budget and objective hyper-parameters of a self-supervised training phase (phase4 and pretrain)."""

    epochs: int = 3
    max_steps: int = -1  # -1: epochs decide
    batch_size: int = 32
    lr: float = 5e-4
    weight_decay: float = 0.04
    warmup_fraction: float = 0.1
    grad_accum: int = 1
    n_global_crops: int = 2
    n_local_crops: int = 2
    local_crop_size: int = 0  # 0: half the input size, rounded to the patch size
    dino_out_dim: int = 1024
    teacher_temp: float = 0.04
    student_temp: float = 0.1
    center_momentum: float = 0.9
    ema_momentum: float = 0.996
    mask_ratio: float = 0.5


@dataclass
class Phase4Config(SelfSupervisedConfig):
    """Phase 4 (ExPLoRA) training budget and objective hyper-parameters."""

    validation_images: int = 8  # real preprocessed images used to prove the merge


@dataclass
class PretrainConfig(SelfSupervisedConfig):
    """The pretrain phase: self-supervised training of the whole backbone (every weight, no adapters), starting
    from ``model.backbone`` (a built-in name: random weights, i.e. from scratch), on unlabelled ``images``."""

    objective: str = "dino"  # dino | masked
    images: UnlabeledConfig = field(default_factory=lambda: UnlabeledConfig(n=1500, domain="source"))


@dataclass
class Phase2Config:
    """Phase 2: decision-threshold sweep on val_select (on crossfit's out-of-fold logits when committed)."""

    n_thresholds: int = 5000
    metric: str = "mcc"  # mcc | validator_reward | fnr_constrained
    max_fnr: float = 0.05  # fnr_constrained: the largest acceptable false-negative rate


@dataclass
class Phase5Config:
    """Phase 5: temperature scaling and the selective (defer) policy on val_calib (on crossfit's out-of-fold
    logits when committed)."""

    n_bins: int = 15
    policy: str = "ltt"  # ltt: one confidence threshold, Learn-then-Test (target_risk, delta) | crc_classwise: one
    # threshold per class by conformal risk control, each class's miss rate <= alpha (metrics/crc.py)
    target_risk: float = 0.02  # ltt: error rate allowed among accepted images
    delta: float = 0.1  # ltt: the guarantee holds with probability >= 1 - delta
    alpha: float = 0.1  # crc_classwise: miss rate allowed per class (its class not in the prediction set)


@dataclass
class ModelCardConfig:
    """NATIX model_card.json fields."""

    model_name: str = "streetvision-roadwork"
    description: str = "Roadwork classifier trained with StreetVision (calibrated, with defer policy)"
    version: str = "0.1.0"  # X.Y.Z
    submitted_by: str = ""
    submission_time: Optional[int] = None  # unix seconds; None: export time


@dataclass
class Phase6Config:
    """Phase 6: the deployable bundle."""

    onnx: bool = True
    onnx_tolerance: float = 1e-4  # max |P_onnx - P_torch| on the probe images
    n_probes: int = 8
    probe_tolerance: float = 1e-4  # verify: max |diff| of recomputed probe outputs
    model_card: ModelCardConfig = field(default_factory=ModelCardConfig)


@dataclass
class EvaluationConfig:
    """The evaluation phase: the bundle on the run's test split, clean and under validator conditions."""

    n_resamples: int = 1000  # bootstrap resamples per condition
    seed: int = 0  # distortions and bootstrap
    backend: str = "torch"  # torch | onnx
    stream_steps: int = 1000  # simulated validator challenges (streetvision.validator.stream); 0 skips


@dataclass
class DeployConfig:
    """Where the model will be used: the validator draws roadwork / no roadwork 50/50."""

    prior_roadwork: float = 0.5  # P(roadwork) at deployment: phase2 selects at it, reports show metrics at it


@dataclass
class PipelineConfig:
    """Which phases to run (any order; the runner orders them) and whether to rerun up-to-date ones."""

    phases: List[str] = field(default_factory=lambda: ["phase1", "phase2", "phase5", "phase6", "evaluation"])
    force: bool = False


@dataclass
class HardwareConfig:
    """Devices, precision, compilation and loader workers (resolved and checked in models/devices.py)."""

    accelerator: str = "auto"  # auto | cpu | gpu
    num_gpus: int = 0  # seed-compatible alias: >0 means accelerator=gpu, devices=num_gpus
    devices: int = 1
    num_nodes: int = 1
    precision: str = "32"  # 32 | bf16-mixed | 16-mixed (16-mixed and GPU bf16 are checked before any phase runs)
    compile: bool = False  # torch.compile the backbone for phase1 / phase4 training (not the LightningModule)
    compile_backend: str = "inductor"  # torch.compile backend; aot_eager traces without code generation (tests)
    num_workers: int = -1  # loader workers per training process; -1 = auto (cores - 1, at most 8); 0 = none
    pin_memory: bool = False
    decode_cache_mb: float = 1024.0  # decoded training images kept in memory, all loader processes together (0: none)


@dataclass
class LoggingConfig:
    """Experiment tracking of phase1 / phase4 training (models/tracking.py), under ``<run>/logs/``."""

    loggers: List[str] = field(default_factory=lambda: ["csv"])  # csv | tensorboard | mlflow | wandb (offline)
    wandb_project: str = "streetvision"


@dataclass
class StreetVisionConfig:
    """Top-level config; a run lives in ``<output_root>/<experiment_name>/runs/<run_id>/``."""

    output_root: str = "outputs"
    experiment_name: str = "stage1_ultimate"
    run_id: Optional[str] = None  # default: a timestamp; reuse an id to continue that run
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    hardware: HardwareConfig = field(default_factory=HardwareConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    phase1: Phase1Config = field(default_factory=Phase1Config)
    crossfit: CrossfitConfig = field(default_factory=CrossfitConfig)
    phase2: Phase2Config = field(default_factory=Phase2Config)
    phase4: Phase4Config = field(default_factory=Phase4Config)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    phase5: Phase5Config = field(default_factory=Phase5Config)
    phase6: Phase6Config = field(default_factory=Phase6Config)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    deploy: DeployConfig = field(default_factory=DeployConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)


# Allowed values of string keys: checked after composition, reported with the valid choices.
CHOICES: dict[str, tuple[str, ...]] = {
    "data.source": ("folder", "csv", "hf", "synthetic"),
    "data.kind": SOURCE_KINDS,
    "data.synthetic.domain": ("source", "target"),
    "data.unlabeled.source": ("folder", "synthetic", "train_split"),
    "data.unlabeled.domain": ("source", "target"),
    "hardware.accelerator": ("auto", "cpu", "gpu"),
    "model.finetune": ("frozen", "lora", "full"),
    "model.adapter": ("lora", "dora", "lokr", "loha", "adalora", "doran", "auto"),
    "model.adapter_search.candidates": ("lora", "dora", "lokr", "loha", "adalora", "doran"),  # a list, each checked
    "model.head": ("linear", "mlp"),
    "model.pooling": ("family", "cls", "mean", "max", "cls_mean", "cls_max"),
    "training.loss": ("ce", "focal"),
    "training.optimizer": ("adamw", "profit"),
    "phase5.policy": ("ltt", "crc_classwise"),
    "training.augment": ("none", "flip", "validator"),
    # a list, each item checked; applied in this order (data/camera.py)
    "training.camera": ("wide_angle", "vignette", "motion_blur", "low_light", "glare", "compression"),
    "model.explora.objective": ("dino", "masked"),
    "model.explora.unfrozen_from": ("last", "first"),
    "pretrain.objective": ("dino", "masked"),
    "pretrain.images.source": ("folder", "synthetic", "train_split"),
    "pretrain.images.domain": ("source", "target"),
    "phase2.metric": ("mcc", "validator_reward", "fnr_constrained"),
    "evaluation.backend": ("torch", "onnx"),
    "hardware.precision": ("32", "bf16-mixed", "16-mixed"),
    "logging.loggers": ("csv", "tensorboard", "mlflow", "wandb"),  # a list: each item is checked
}


# Keys added after runs existed, in the sets they were added together, with the values that behave as before they
# existed: while every key of a set has its value here, up-to-date checks leave the set out of a phase's config slice
# (pipeline.runner.config_slice), so a run made before the keys existed stays up to date and exportable.
ADDED_KEYS: list[dict[str, Any]] = [
    {"training.camera": [], "training.camera_prob": 0.3},
    {"phase5.policy": "ltt", "phase5.alpha": 0.1},
    {"training.optimizer": "adamw", "training.profit_ref_lr": 1e-2, "training.profit_ref_steps": 1},
    {"model.adapter": "lora", "model.adapter_search": asdict(AdapterSearchConfig())},
]
# Keys that were removed, with the value every run written before then had: a config slice that holds their
# parent gets them back at that value, so removing a key leaves older runs up to date.
RETIRED_KEYS: dict[str, Any] = {"model.lora.use_dora": False}


# Numeric keys and the interval each must lie in ("[" / "]" inclusive, "(" / ")" exclusive): checked after
# composition, so a value that would train with lr 0 or a negative epoch count stops before any work.
RANGES: dict[str, str] = {
    "seed": "[0, 4294967295]",  # what Lightning's seed_everything (and numpy's legacy seeding) accepts: 0 .. 2**32 - 1
    "data.synthetic.n": "[1, inf)",
    "data.synthetic.image_size": "[1, inf)",
    "data.unlabeled.n": "[1, inf)",
    "data.max_bad_fraction": "[0, 1]",
    "data.max_image_pixels": "[1, inf)",
    "model.head_hidden": "[1, inf)",
    "model.head_dropout": "[0, 1)",
    "model.lora.r": "[1, inf)",
    "model.adapter_search.max_steps": "[1, inf)",
    "training.profit_ref_lr": "(0, inf)",
    "phase5.alpha": "(0, 1)",
    "training.profit_ref_steps": "[1, inf)",
    "model.lora.alpha": "(0, inf)",
    "model.lora.dropout": "[0, 1)",
    "model.explora.unfrozen_blocks": "[0, inf)",
    "model.explora.r": "[1, inf)",
    "model.explora.alpha": "(0, inf)",
    "model.explora.dropout": "[0, 1)",
    "model.explora.merge_tolerance": "(0, inf)",
    "training.epochs": "[1, inf)",
    "training.optimizer_steps": "[0, inf)",
    "training.batch_size": "[1, inf)",
    "training.lr": "(0, inf)",
    "training.backbone_lr": "(0, inf)",
    "training.weight_decay": "[0, inf)",
    "training.warmup_fraction": "[0, 1)",
    "training.gradient_clip": "[0, inf)",
    "training.grad_accum": "[1, inf)",
    "training.focal_gamma": "[0, inf)",
    "training.camera_prob": "[0, 1]",
    "training.early_stopping_patience": "[0, inf)",
    "phase1.frozen_epochs": "[1, inf)",
    "crossfit.folds": "[2, inf)",
    "phase2.n_thresholds": "[2, inf)",
    "phase2.max_fnr": "[0, 1]",
    "phase4.validation_images": "[1, inf)",
    "phase5.n_bins": "[1, inf)",
    "phase5.target_risk": "(0, 1)",
    "phase5.delta": "(0, 1)",
    "phase6.onnx_tolerance": "(0, inf)",
    "phase6.n_probes": "[1, inf)",
    "phase6.probe_tolerance": "(0, inf)",
    "evaluation.n_resamples": "[1, inf)",
    "deploy.prior_roadwork": "(0, 1)",
    "hardware.num_gpus": "[0, inf)",
    "hardware.devices": "[1, inf)",
    "hardware.num_nodes": "[1, inf)",
    "hardware.num_workers": "[-1, inf)",
    "hardware.decode_cache_mb": "[0, inf)",
}
# The self-supervised phases (phase4, pretrain) share their budget and objective keys.
_SELF_SUPERVISED_RANGES = {
    "epochs": "[1, inf)",
    "batch_size": "[1, inf)",
    "lr": "(0, inf)",
    "weight_decay": "[0, inf)",
    "warmup_fraction": "[0, 1)",
    "grad_accum": "[1, inf)",
    "n_global_crops": "[1, inf)",
    "n_local_crops": "[0, inf)",
    "local_crop_size": "[0, inf)",
    "dino_out_dim": "[1, inf)",
    "teacher_temp": "(0, inf)",
    "student_temp": "(0, inf)",
    "center_momentum": "[0, 1]",
    "ema_momentum": "[0, 1]",
    "mask_ratio": "(0, 1)",
}
RANGES.update({f"{phase}.{key}": spec for phase in ("phase4", "pretrain") for key, spec in
               _SELF_SUPERVISED_RANGES.items()})
RANGES["pretrain.images.n"] = RANGES["data.unlabeled.n"]

# List keys that are a probability distribution, and over what (checked after composition).
DISTRIBUTIONS: dict[str, tuple[int, str]] = {"training.augment_level_probs": (4, "the validator's levels 0-3")}

# Keys that become one directory name under output_root (``<experiment_name>/runs/<run_id>``).
PATH_COMPONENT_KEYS = ("experiment_name", "run_id")
MAX_COMPONENT_BYTES = 200  # below the usual 255-byte NAME_MAX, leaving room for hidden temp names beside it


def _interval(spec: str) -> tuple[float, float, bool, bool]:
    """``"[0, 1)"`` -> (low, high, low inclusive, high inclusive)."""
    low, high = (float(x) for x in spec[1:-1].split(","))
    return low, high, spec[0] == "[", spec[-1] == "]"


def describe_interval(spec: str) -> str:
    """``"(0, inf)"`` -> ``"> 0"``; ``"[0, 1)"`` -> ``"in [0, 1)"``."""
    low, high, low_in, _ = _interval(spec)
    if high == float("inf"):
        return f"{'>=' if low_in else '>'} {low:g}"
    return f"in {spec}"


def in_interval(value: float, spec: str) -> bool:
    """Whether ``value`` lies in the interval ``spec``."""
    low, high, low_in, high_in = _interval(spec)
    return (value >= low if low_in else value > low) and (value <= high if high_in else value < high)


def check_ranges(cfg: DictConfig) -> None:
    """Reject numeric values outside their interval (RANGES), naming the key and what it must be."""
    from omegaconf import OmegaConf

    for key, spec in RANGES.items():
        value = OmegaConf.select(cfg, key)
        if value is not None and not in_interval(float(value), spec):
            default = OmegaConf.select(OmegaConf.structured(StreetVisionConfig), key)
            hint = " (model.finetune=frozen keeps the backbone fixed)" if key == "training.backbone_lr" else ""
            raise ConfigError(f"Invalid value {value} for '{key}': it must be {describe_interval(spec)}{hint}.",
                              f"set {key} to a value {describe_interval(spec)} (the default is {default}).")


def check_distributions(cfg: DictConfig) -> None:
    """Reject a DISTRIBUTIONS key that is not non-negative numbers summing to 1 of the right length."""
    from omegaconf import OmegaConf

    for key, (length, over) in DISTRIBUTIONS.items():
        probs = [float(p) for p in OmegaConf.select(cfg, key)]
        if len(probs) != length or min(probs, default=0) < 0 or abs(sum(probs) - 1.0) > 1e-9:
            raise ConfigError(f"Invalid value {probs} for '{key}': it must be {length} non-negative "
                              f"probabilities summing to 1 ({over}).",
                              f"set {key}=[0.25,0.25,0.25,0.25], the validator's mix.")


def check_path_components(cfg: DictConfig) -> None:
    """``experiment_name`` and ``run_id`` each name exactly one directory inside ``output_root``."""
    from omegaconf import OmegaConf

    for key in PATH_COMPONENT_KEYS:
        value = OmegaConf.select(cfg, key)
        if value is None:
            continue
        text = str(value)
        bad = ("it is empty" if not text.strip() else
               "it contains a path separator" if "/" in text or "\\" in text else
               f"'{text}' names no new directory" if text in (".", "..") else
               "it contains a NUL byte" if "\0" in text else
               f"it is {len(text.encode())} bytes long (at most {MAX_COMPONENT_BYTES})"
               if len(text.encode()) > MAX_COMPONENT_BYTES else None)
        if bad:
            raise ConfigError(f"Invalid value for '{key}': it must be one directory name (one path component), "
                              f"but {bad}: '{text[:80]}{'...' if len(text) > 80 else ''}'.",
                              f"set {key}= to a short name without '/', e.g. {key}=exp1; put the parent folder in "
                              f"output_root=.")


def _register_schema() -> None:
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="streetvision_schema", node=StreetVisionConfig)


def _valid_keys(cfg: DictConfig, dotted: str) -> tuple[str, list[str]]:
    """The deepest existing parent of ``dotted`` and the keys it has."""
    from omegaconf import DictConfig

    parts = dotted.split(".")
    node: Any = cfg
    parent = ""
    for i, part in enumerate(parts[:-1]):
        if isinstance(node, DictConfig) and part in node:
            node = node[part]
            parent = ".".join(parts[: i + 1])
        else:
            break
    keys = sorted(node.keys()) if isinstance(node, DictConfig) else []
    return parent, [str(k) for k in keys]


def _explain_override_error(exc: Exception, overrides: list[str]) -> ConfigError:
    from omegaconf import OmegaConf

    text = f"{exc} {exc.__cause__ or ''}"
    base = _compose([])  # defaults compose cleanly, so this shows the valid keys
    m = re.search(r"override '([^']+)'", text) or re.search(r"Key '([^']+)' (?:is not in struct|not in)", text)
    key = m.group(1) if m else None
    if key and "." not in key:
        for ov in overrides:  # Hydra names the leaf only in some messages; recover the full key
            lhs = ov.split("=", 1)[0].lstrip("+~")
            if lhs.endswith(key):
                key = lhs
                break
    if "is not in struct" in text or "Could not override" in text and key:
        parent, keys = _valid_keys(base, key or "")
        if key and OmegaConf.select(base, key, default="__missing__") == "__missing__":
            where = f"under '{parent}'" if parent else "at the top level"
            return ConfigError(
                f"Unknown config key '{key}'. Valid keys {where}: {', '.join(keys)}.",
                "check the spelling, or see `streetvision config` for the full resolved config.",
            )
    m = re.search(r"Could not find '([^'/]+)/([^']+)'", text)
    if m:
        group, option = m.groups()
        options = re.findall(r"^\s+(\w[\w-]*)\s*$", text.split("Config search path")[0], flags=re.M)
        return ConfigError(f"Unknown option '{option}' for config group '{group}'. Valid choices: "
                           f"{', '.join(options)}.", f"use {group}=<one of the choices>.")
    m = re.search(r"Value '([^']*)' of type '(\w+)' could not be converted to (\w+)", text)
    full = re.search(r"full_key: (\S+)", text)
    if m:
        key_name = full.group(1) if full else "?"
        return ConfigError(f"Invalid value '{m.group(1)}' for '{key_name}': expected {m.group(3)}.",
                           f"pass a {m.group(3).lower()}, e.g. {key_name}=<{m.group(3).lower()}>.")
    first = text.strip().splitlines()[0] if text.strip() else repr(exc)
    return ConfigError(f"Invalid override ({' '.join(overrides)}): {first}",
                       "use Hydra syntax KEY=VALUE with a value of the key's type, e.g. seed=3.")


def _compose(overrides: list[str]) -> DictConfig:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    _register_schema()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def check_choices(cfg: DictConfig) -> None:
    """Reject string values outside their allowed choices, naming the key and the choices."""
    from omegaconf import OmegaConf

    for key, allowed in CHOICES.items():
        value = OmegaConf.select(cfg, key)
        for item in (value if OmegaConf.is_list(value) else [value]):
            if item is not None and str(item) not in allowed:
                raise ConfigError(f"Invalid value '{item}' for '{key}'. Valid choices: {', '.join(allowed)}.",
                                  f"set {key}=<one of the choices>.")
    required = {"folder": ("data.root", cfg.data.root), "csv": ("data.csv_path", cfg.data.csv_path),
                "hf": ("data.hf.path", cfg.data.hf.path)}.get(str(cfg.data.source))
    if required and not required[1]:
        raise ConfigError(f"data.source={cfg.data.source} needs '{required[0]}', which is not set.",
                          f"pass {required[0]}=PATH on the command line.")
    if cfg.training.optimizer == "profit" and int(cfg.training.grad_accum) > 1:
        raise ConfigError(f"training.optimizer=profit re-runs each batch at displaced weights, which gradient "
                          f"accumulation (training.grad_accum={cfg.training.grad_accum}) would mix across batches.",
                          "set training.grad_accum=1 (raise training.batch_size instead), or training.optimizer=adamw.")
    bad = [s for s in cfg.phase1.score_splits if s not in SPLIT_NAMES]
    if bad:
        raise ConfigError(f"Unknown split(s) {bad} in phase1.score_splits. Valid choices: {', '.join(SPLIT_NAMES)}.",
                          "set phase1.score_splits=[val_select,val_calib,test].")
    check_split_fractions(cfg)
    check_distributions(cfg)
    version = str(cfg.phase6.model_card.version)
    if not re.fullmatch(r"\d+\.\d+\.\d+", version):
        raise ConfigError(f"phase6.model_card.version '{version}' is not X.Y.Z.",
                          "e.g. phase6.model_card.version=1.0.0.")
    names = [str(n) for n in cfg.data.class_names]
    if len(names) != 2 or len(set(names)) != 2 or not all(n.strip() for n in names):
        raise ConfigError(f"data.class_names must name exactly 2 distinct, non-empty classes (negative, positive); "
                          f"got {names}.", "set data.class_names=[no_roadwork,roadwork].")


def split_readers(cfg: DictConfig) -> dict[str, str]:
    """Split -> what reads it (so its fraction must be > 0), for the configured phases: phase1 trains on train,
    selects its epoch on val_select and scores ``phase1.score_splits``; phase5 fits on val_calib (crossfit's
    out-of-fold logits instead, when crossfit runs) and reports on test; evaluation scores test."""
    phases = {str(p) for p in cfg.pipeline.phases}
    readers = {"train": "every training phase trains on it", "val_select": "phase1 selects its epoch on it"}
    for split in cfg.phase1.score_splits:
        readers.setdefault(str(split), "phase1 scores it (phase1.score_splits)")
    if "phase5" in phases:
        readers.setdefault("test", "phase5 reports its calibration on it")
        if "crossfit" not in phases:
            readers.setdefault("val_calib", "phase5 fits the temperature on it")
    if "evaluation" in phases:
        readers.setdefault("test", "the evaluation phase scores it")
    return readers


def check_split_fractions(cfg: DictConfig) -> None:
    """data.splits: non-negative fractions summing to 1, and > 0 for every split a configured phase reads (an empty
    split would only fail later, inside training or scoring)."""
    fractions = {name: float(cfg.data.splits[name]) for name in SPLIT_NAMES}
    total = sum(fractions.values())
    if abs(total - 1.0) > 1e-6 or any(v < 0 for v in fractions.values()):
        raise ConfigError(f"data.splits fractions must be non-negative and sum to 1 (got {total:.4f}).",
                          "adjust data.splits.train / val_select / val_calib / test (defaults 0.6 / 0.15 / 0.1 / "
                          "0.15).")
    for split, reader in split_readers(cfg).items():
        if split in fractions and fractions[split] <= 0:
            default = getattr(SplitFractions(), split)
            raise ConfigError(f"Invalid value {fractions[split]:g} for 'data.splits.{split}': it must be > 0, "
                              f"because {reader}.",
                              f"give data.splits.{split} a fraction > 0 (the default is {default}) and lower another "
                              f"split's so that they sum to 1.")


def load_config(overrides: list[str] | None = None) -> DictConfig:
    """Compose the config with Hydra overrides; raise ConfigError (naming key and choices) on any problem."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    overrides = list(overrides or [])
    try:
        cfg = _compose(overrides)
    except (HydraException, OmegaConfBaseException) as exc:
        raise _explain_override_error(exc, overrides) from exc
    check_config(cfg)
    return cfg


DATA_PATH_KEYS = {"folder": "data.root", "csv": "data.csv_path", "hf": "data.hf.path"}  # what each source reads


def check_data_source(cfg: DictConfig) -> None:
    """A data path set for another source than data.source is a mistake (``data.root=PHOTOS`` without
    ``data=folder`` would train on synthetic scenes): ConfigError naming the key and the group to add."""
    from omegaconf import OmegaConf

    source = OmegaConf.select(cfg, "data.source")
    for kind, key in DATA_PATH_KEYS.items():
        if kind != source and OmegaConf.select(cfg, key) is not None:
            raise ConfigError(f"{key} is set, but data.source is '{source}', which does not read it: the run would "
                              f"ignore your data.", f"add data={kind} (e.g. streetvision run data={kind} "
                              f"{key}={OmegaConf.select(cfg, key)}), or drop {key}.")


@dataclass(frozen=True)
class TaggedSource:
    """A labelled source with its tag: ``spec`` has the keys source, root, csv_path, hf (``cfg.data`` itself, or an
    item of data.sources); ``key`` is where it is configured (``data`` or ``data.sources[i]``)."""

    name: str
    kind: str
    spec: Any
    key: str


def data_sources(data: Any) -> list[TaggedSource]:
    """``data.source`` (tagged ``data.kind``) and every item of ``data.sources``; ConfigError for an unknown kind
    or source type, or two sources with one name."""
    found = [TaggedSource(str(data.kind), str(data.kind), data, "data")]
    for i, item in enumerate(data.sources):
        key = f"data.sources[{i}]"
        if not isinstance(item, Mapping) or item.get("kind") not in SOURCE_KINDS or item.get(
                "source") not in DATA_PATH_KEYS:
            if not isinstance(item, Mapping):
                raise ConfigError(f"{key} is '{item}', not a source.", f"write {key} as {{kind: generated, source: "
                                                                       f"folder, root: PATH}}.")
            raise ConfigError(f"{key}: kind '{item.kind}', source '{item.source}'; kind must be one of "
                              f"{', '.join(SOURCE_KINDS)} and source one of {', '.join(DATA_PATH_KEYS)}.",
                              f"fix {key}, e.g. {{kind: generated, source: folder, root: PATH}}.")
        found.append(TaggedSource(str(item.name or item.kind), str(item.kind), item, key))
    names = [t.name for t in found]
    for t in found:
        if names.count(t.name) > 1:
            raise ConfigError(f"{names.count(t.name)} data sources are named '{t.name}' (a source's name defaults to "
                              f"its kind, and data.source's is data.kind).",
                              "give each item of data.sources its own name: {name: gen_sdxl, kind: generated, ...}.")
    return found


def _unresolved(cfg: DictConfig, key: str) -> Any:
    """The value of ``key`` (``a.b``, ``a.list[0]``) as written, interpolations unresolved."""
    from omegaconf import OmegaConf

    node: Any = OmegaConf.to_container(cfg, resolve=False)
    for part in re.findall(r"[^.\[\]]+", key):
        try:
            node = node[int(part)] if isinstance(node, list) else node[part]
        except (KeyError, IndexError, TypeError, ValueError):
            return "?"
    return node


def check_interpolations(cfg: DictConfig) -> None:
    """Resolve every value once, so that an interpolation that cannot be resolved (``${oc.env:NOPE}``, a missing
    key, a value of the wrong type) stops before any work, naming the key and the interpolation."""
    from omegaconf import OmegaConf
    from omegaconf.errors import InterpolationResolutionError, InterpolationValidationError

    try:
        OmegaConf.to_container(cfg, resolve=True)
    except InterpolationResolutionError as exc:
        key = str(getattr(exc, "full_key", None) or "?")
        raw = _unresolved(cfg, key)
        reason = str(getattr(exc, "msg", None) or exc).strip().splitlines()[0]
        what = ("make it resolve to a value of the key's type" if isinstance(exc, InterpolationValidationError)
                else "set the environment variable it reads" if "oc.env" in str(raw)
                else "point it at an existing key")
        raise ConfigError(f"Config key '{key}' is the interpolation '{raw}', which cannot be resolved: {reason}.",
                          f"{what}, or pass a plain value, e.g. {key}=<value>.") from exc


def check_config(cfg: DictConfig) -> None:
    """Every check on a composed config: interpolations, choices, numeric ranges, directory names and which data
    it reads (the phase names are checked by the runner, which knows the registered phases)."""
    check_interpolations(cfg)
    check_choices(cfg)
    check_ranges(cfg)
    check_path_components(cfg)
    check_data_source(cfg)


def to_plain(cfg: Any) -> Any:
    """A resolved plain-Python copy of a config node (for hashing and JSON)."""
    from omegaconf import DictConfig, OmegaConf

    if isinstance(cfg, DictConfig) or OmegaConf.is_config(cfg):
        return OmegaConf.to_container(cfg, resolve=True)
    return cfg
