"""Evaluate a bundle through the Predictor (the code a miner runs) on clean images and under validator
conditions, with seeded BCa bootstrap intervals.

Conditions: ``clean`` (the decoded file through the model's preprocessing, no validator processing),
``level0``..``level3`` (each image as the validator sends it at that level: :func:`streetvision.validator.challenges`,
JPEG wire included, seeded per image), and ``validator_mix`` (each image at a level drawn with the validator's
probabilities). Metrics per condition: MCC, accuracy, precision, recall, FNR, FPR and reward
((0.5 MCC + 0.5 accuracy) ** 3) at the validator's reading of the score (it rounds at 0.5), AUROC of the probability,
ECE and Brier of the calibrated probability, coverage / selective risk of the accept policy, and MCC, accuracy and
reward at the deployment prior (``*_deploy``: the validator's 50/50 by default, :mod:`streetvision.validator.prior`).
Every metric is computed from the per-image rows of :mod:`streetvision.eval.predictions`.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image

from streetvision.bundle.predictor import Predictor
from streetvision.console import progress
from streetvision.data.decode import DecodeError, decode_image
from streetvision.data.sources import path_text
from streetvision.eval.bootstrap import bootstrap_intervals
from streetvision.metrics.calibration import calibration_metrics, ece_along_last_axis
from streetvision.metrics.classification import (
    auroc,
    auroc_along_last_axis,
    confusion_along_last_axis,
    metrics_from_decisions,
    rates_from_counts,
)
from streetvision.eval.predictions import NO_LEVEL, ConditionPredictions, from_logits, subset
from streetvision.io import sha256_file
from streetvision.validator.challenges import LEVELS, challenge, draw_level
from streetvision.validator.prior import VALIDATOR_FAKE_PROB, VALIDATOR_PRIOR, prior_weights

if TYPE_CHECKING:
    from rich.console import Console

CONDITIONS = ("clean", *(f"level{lv}" for lv in LEVELS), "validator_mix")
CI_METRICS = ("mcc", "accuracy", "precision", "recall", "fnr", "fpr", "reward", "auroc", "ece", "brier",
              "coverage", "selective_risk", "mcc_deploy", "accuracy_deploy", "reward_deploy")
SELECTIVE_METRICS = ("coverage", "selective_risk")
MIX_SEED = 10_000  # validator_mix draws its levels from default_rng([seed, MIX_SEED])


@dataclass
class ConditionOutputs:
    """Raw logits, labels, and the validator level and challenge parameters each image was seen under."""

    logits: np.ndarray
    labels: np.ndarray
    levels: np.ndarray
    params: list[dict] = field(default_factory=list)


def condition_image(image: Image.Image, seed: int, index: int, level: int) -> Image.Image:
    """The image as the model saw it in a condition: the file itself for ``NO_LEVEL`` (clean), else the validator's
    challenge at ``level`` seeded by (seed, index, level) -- what :func:`score_conditions` scored."""
    if level == NO_LEVEL:
        return image
    return challenge(image, np.random.default_rng([seed, index, level]), level=level)[0]


Batches = Iterable[tuple[list[Image.Image], int]]  # (decoded images, files skipped before them)


def _score_batches(predictor: Predictor, batches: Batches, seed: int, total: int, console: Console | None,
                   ) -> tuple[int, dict[str, list[np.ndarray]], dict[int, list[dict]]]:
    """Score each batch under every condition while it is in memory: (images scored, logits chunks per condition,
    challenge parameters per level). Image ``i`` (in scoring order) is challenged with the seed (seed, i, level)."""
    logits: dict[str, list[np.ndarray]] = {"clean": [], **{f"level{lv}": [] for lv in LEVELS}}
    params: dict[int, list[dict]] = {lv: [] for lv in LEVELS}
    index = 0

    def run(images: list[Image.Image]) -> np.ndarray:
        return predictor.logits(torch.stack([predictor.preprocess.to_tensor(im) for im in images]))

    with progress(f"scoring clean + levels {LEVELS[0]}-{LEVELS[-1]}", total * (1 + len(LEVELS)), console) as advance:
        for batch, skipped in batches:
            advance(skipped * (1 + len(LEVELS)))
            if not batch:
                continue
            logits["clean"].append(run(batch))
            advance(len(batch))
            for level in LEVELS:
                sent = []
                for offset, image in enumerate(batch):
                    shown, _, drawn = challenge(image, np.random.default_rng([seed, index + offset, level]),
                                                level=level)
                    sent.append(shown)
                    params[level].append(drawn)
                logits[f"level{level}"].append(run(sent))
                advance(len(batch))
            index += len(batch)
    return index, logits, params


def _condition_outputs(n: int, logits: dict[str, list[np.ndarray]], params: dict[int, list[dict]],
                       labels: np.ndarray, seed: int) -> dict[str, ConditionOutputs]:
    def joined(chunks: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(chunks) if chunks else np.zeros((0, 2))

    out = {"clean": ConditionOutputs(joined(logits["clean"]), labels, np.full(n, NO_LEVEL), [{} for _ in range(n)])}
    for level in LEVELS:
        out[f"level{level}"] = ConditionOutputs(joined(logits[f"level{level}"]), labels, np.full(n, level),
                                                params[level])
    mix_rng = np.random.default_rng([seed, MIX_SEED])
    mix_levels = np.array([draw_level(mix_rng) for _ in range(n)], dtype=np.int64)
    mix = np.stack([out[f"level{lv}"].logits[i] for i, lv in enumerate(mix_levels)]) if n else np.zeros((0, 2))
    out["validator_mix"] = ConditionOutputs(mix, labels, mix_levels,
                                            [out[f"level{lv}"].params[i] for i, lv in enumerate(mix_levels)])
    return out


def score_conditions(predictor: Predictor, images: Sequence[Image.Image], labels: np.ndarray, seed: int,
                     batch_size: int = 64, console: Console | None = None) -> dict[str, ConditionOutputs]:
    """Logits for every condition of images already in memory; each image's challenge is seeded by (seed, index,
    level). A ``console`` shows a progress bar over every (condition, image)."""
    n = len(images)
    batches = (([images[i] for i in range(start, min(start + batch_size, n))], 0) for start in range(0, n, batch_size))
    count, logits, params = _score_batches(predictor, batches, seed, n, console)
    return _condition_outputs(count, logits, params, labels, seed)


def score_files(predictor: Predictor, samples: list[tuple[Path, int]], seed: int, batch_size: int = 64,
                console: Console | None = None,
                ) -> tuple[dict[str, ConditionOutputs], np.ndarray, list[Path], list[dict]]:
    """:func:`score_conditions` streamed from files: each file is decoded once and scored under every condition
    while its batch is in memory, so at most two batches of decoded images (the one scored, the next one
    decoded) are held whatever the number of files.
    Returns (outputs, labels, the files scored, the files skipped with the reason); the same outputs as decoding
    every file first (:func:`load_samples`) and calling :func:`score_conditions`."""
    kept: list[Path] = []
    labels: list[int] = []
    skipped: list[dict] = []

    def batches() -> Iterator[tuple[list[Image.Image], int]]:
        batch: list[Image.Image] = []
        reported = 0  # skipped files already passed on (the progress bar counts them too)
        for path, label, image in decoded_files(samples, skipped):
            kept.append(path)
            labels.append(label)
            batch.append(image)
            if len(batch) == batch_size:
                yield batch, len(skipped) - reported
                batch, reported = [], len(skipped)
        if batch or len(skipped) > reported:
            yield batch, len(skipped) - reported

    count, logits, params = _score_batches(predictor, batches(), seed, len(samples), console)
    label_array = np.asarray(labels, dtype=np.int64)
    return _condition_outputs(count, logits, params, label_array, seed), label_array, kept, skipped


def to_predictions(outputs: dict[str, ConditionOutputs], predictor: Predictor, sample_ids: list[str],
                   image_sha256: list[str]) -> dict[str, ConditionPredictions]:
    """The per-image rows of every condition under the bundle's policy."""
    policy = predictor.policy
    return {name: from_logits(out.logits, out.labels, out.levels, out.params, sample_ids, image_sha256, policy)
            for name, out in outputs.items()}


def condition_metrics(pred: ConditionPredictions, prior: float = VALIDATOR_PRIOR) -> dict:
    """All metrics of one condition from its rows; ``*_deploy`` at P(roadwork) = ``prior``."""
    y = pred.labels
    m: dict = dict(metrics_from_decisions(y, pred.decision))
    deploy = metrics_from_decisions(y, pred.decision, prior_weights(y, prior))
    m["mcc_deploy"], m["accuracy_deploy"], m["reward_deploy"] = deploy["mcc"], deploy["accuracy"], deploy["reward"]
    m["auroc"] = auroc(y, pred.probability)
    cal = calibration_metrics(y, pred.probability)
    m["ece"], m["brier"] = cal["ece"], cal["brier"]
    if pred.accepted is not None:
        accepted = pred.accepted
        m["coverage"] = float(accepted.mean()) if len(y) else 0.0
        m["selective_risk"] = float((~pred.correct[accepted]).mean()) if accepted.any() else 0.0
    return m


def _deploy_weights(labels: np.ndarray, prior: float) -> np.ndarray:
    """:func:`prior_weights` of each row of ``labels`` (ones where a row holds one class, as unweighted)."""
    flat = labels.reshape(-1, labels.shape[-1])
    w = np.ones(flat.shape)
    for i, row in enumerate(flat):
        wi = prior_weights(row, prior)
        if wi is not None:
            w[i] = wi
    return w.reshape(labels.shape)


def threshold_metrics_along_last_axis(labels: np.ndarray, decisions: np.ndarray, prior: float) -> dict:
    """Threshold metrics and their ``*_deploy`` versions over the last axis (vectorised over resamples)."""
    rates = rates_from_counts(*confusion_along_last_axis(labels, decisions))
    deploy = rates_from_counts(*confusion_along_last_axis(labels, decisions, _deploy_weights(labels, prior)))
    return {**rates, "mcc_deploy": deploy["mcc"], "accuracy_deploy": deploy["accuracy"],
            "reward_deploy": deploy["reward"]}


def interval_names(pred: ConditionPredictions) -> tuple[str, ...]:
    """The metrics with intervals for a condition (coverage and selective risk need a selective policy)."""
    return tuple(k for k in CI_METRICS if pred.accepted is not None or k not in SELECTIVE_METRICS)


def condition_intervals(pred: ConditionPredictions, n_resamples: int, seed: int,
                        prior: float = VALIDATOR_PRIOR) -> dict:
    """Paired BCa intervals (images resampled with all their columns) of every metric in ``interval_names``;
    one vectorised pass per resample batch (:func:`streetvision.eval.bootstrap.bootstrap_intervals`)."""
    names = interval_names(pred)
    accepted = pred.accepted if pred.accepted is not None else np.zeros(len(pred), dtype=bool)

    def statistic(y, p, d, correct, acc):
        values = threshold_metrics_along_last_axis(y, d, prior)
        values["auroc"] = auroc_along_last_axis(y, p)
        values["ece"] = ece_along_last_axis(y, p)
        values["brier"] = np.mean((p - y) ** 2, axis=-1)
        n_acc = acc.sum(-1)
        values["coverage"] = n_acc / y.shape[-1]
        values["selective_risk"] = np.divide((acc & ~correct).sum(-1), n_acc,
                                             out=np.zeros(n_acc.shape), where=n_acc > 0)
        return np.stack([np.broadcast_to(values[k], y.shape[:-1]) for k in names])

    return bootstrap_intervals([pred.labels, pred.probability, pred.decision, pred.correct, accepted], statistic,
                               names, n_resamples, seed)


def common_root(paths: list[Path]) -> Path:
    """The deepest folder holding every path (the data root sample ids are relative to)."""
    if not paths:
        return Path(".")
    return Path(os.path.commonpath([str(Path(p).absolute().parent) for p in paths]))


def decoded_files(samples: list[tuple[Path, int]], skipped: list[dict], what: str | None = None,
                  console: Console | None = None) -> Iterator[tuple[Path, int, Image.Image]]:
    """(path, label, decoded image) of each (path, label) pair that decodes, in order, one at a time; the others
    are appended to ``skipped`` with the reason. With ``what``, a ``console`` shows a progress bar of that name."""
    with progress(what or "", len(samples), console if what else None) as advance:
        for path, label in samples:
            try:
                image = decode_image(path)
            except DecodeError as exc:
                skipped.append({"path": str(path), "reason": exc.reason})
            else:
                yield Path(path), label, image
            advance()


def load_samples(samples: list[tuple[Path, int]], console: Console | None = None,
                 ) -> tuple[list[Image.Image], np.ndarray, list[Path], list[dict]]:
    """Decode (path, label) pairs: (images, labels, their paths, skipped files with the reason); a ``console``
    shows a progress bar."""
    skipped: list[dict] = []
    decoded = list(decoded_files(samples, skipped, "decoding images", console))
    return ([image for _, _, image in decoded], np.asarray([label for _, label, _ in decoded], dtype=np.int64),
            [path for path, _, _ in decoded], skipped)


class FileImages(Sequence[Image.Image]):
    """Images decoded from their files when asked for, the last ``keep`` kept: what the stream simulation and the
    report gallery read, at a memory cost that does not grow with the number of files."""

    def __init__(self, paths: list[Path], keep: int = 8) -> None:
        self.paths, self.keep = list(paths), keep
        self._cache: OrderedDict[int, Image.Image] = OrderedDict()

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> Image.Image:  # type: ignore[override]
        if index in self._cache:
            self._cache.move_to_end(index)
            return self._cache[index]
        image = decode_image(self.paths[index])
        self._cache[index] = image
        if len(self._cache) > self.keep:
            self._cache.popitem(last=False)
        return image


def file_images(samples: list[tuple[Path, int]], console: Console | None = None,
                ) -> tuple[FileImages, np.ndarray, list[dict]]:
    """(images read from their files on demand, labels, skipped files with the reason) of (path, label) pairs:
    each file is decoded once to check it, and not kept."""
    skipped: list[dict] = []
    usable = [(path, label) for path, label, _ in decoded_files(samples, skipped, "checking images", console)]
    return FileImages([p for p, _ in usable]), np.asarray([lb for _, lb in usable], dtype=np.int64), skipped


def load_labelled_images(samples: list[tuple[Path, int]], console: Console | None = None,
                         ) -> tuple[list[Image.Image], np.ndarray, list[dict]]:
    """Decode (path, label) pairs; unreadable files are returned as skipped with their reason."""
    images, labels, _, skipped = load_samples(samples, console)
    return images, labels, skipped


def predict_conditions(predictor: Predictor, images: Sequence[Image.Image], labels: np.ndarray, seed: int = 0,
                       paths: list[Path] | None = None, console: Console | None = None,
                       ) -> tuple[dict[str, ConditionPredictions], Path]:
    """(per-image predictions per condition, the data root sample ids are relative to) of images in memory;
    ``paths`` (the files the images came from) give the sample ids and content hashes; a ``console`` shows
    progress bars."""
    paths = paths if paths is not None else [Path(f"image_{i:05d}") for i in range(len(images))]
    outputs = score_conditions(predictor, images, labels, seed, console=console)
    return condition_rows(outputs, predictor, paths, console)


def predict_files(predictor: Predictor, samples: list[tuple[Path, int]], seed: int = 0,
                  console: Console | None = None,
                  ) -> tuple[dict[str, ConditionPredictions], Path, np.ndarray, list[Path], list[dict]]:
    """:func:`predict_conditions` streamed from files (:func:`score_files`): (predictions, data root, labels, the
    files scored, the files skipped with the reason)."""
    outputs, labels, paths, skipped = score_files(predictor, samples, seed, console=console)
    predictions, root = condition_rows(outputs, predictor, paths, console)
    return predictions, root, labels, paths, skipped


def condition_rows(outputs: dict[str, ConditionOutputs], predictor: Predictor, paths: list[Path],
                   console: Console | None = None) -> tuple[dict[str, ConditionPredictions], Path]:
    """The per-image rows of scored outputs, with sample ids relative to the files' common root and their
    content hashes; (rows per condition, that root)."""
    root = common_root(paths)
    sample_ids = [path_text(Path(os.path.relpath(Path(p).absolute(), root)).as_posix()) for p in paths]
    hashes = []
    with progress("hashing images", len(paths), console) as advance:
        for p in paths:
            hashes.append(sha256_file(p) if Path(p).is_file() else "")
            advance()
    return to_predictions(outputs, predictor, sample_ids, hashes), root


def evaluate(predictor: Predictor, images: list[Image.Image], labels: np.ndarray, seed: int = 0,
             n_resamples: int = 1000, prior: float = VALIDATOR_PRIOR, paths: list[Path] | None = None,
             ) -> tuple[dict[str, ConditionPredictions], dict, dict]:
    """(per-image predictions per condition, metrics summary, bootstrap intervals) for labelled images."""
    predictions, _ = predict_conditions(predictor, images, labels, seed, paths)
    return predictions, *summarise(predictions, n_resamples, seed, prior)


def source_mix_weights(labels: np.ndarray, kinds: np.ndarray, prior: float = VALIDATOR_PRIOR,
                       fake_prob: float = VALIDATOR_FAKE_PROB) -> np.ndarray | None:
    """Per-image weights that make (kind, label) cells weigh what the validator draws: P(roadwork) = ``prior``,
    P(generated) = ``fake_prob``, each cell's images alike; None when a cell has no image."""
    weights = np.zeros(len(labels))
    for kind, p_kind in (("real", 1.0 - fake_prob), ("generated", fake_prob)):
        for label, p_label in ((0, 1.0 - prior), (1, prior)):
            cell = (kinds == kind) & (labels == label)
            if not cell.any():
                return None
            weights[cell] = p_kind * p_label / cell.sum()
    return weights * len(labels)


def source_metrics(predictions: dict[str, ConditionPredictions], kinds: np.ndarray,
                   prior: float = VALIDATOR_PRIOR, fake_prob: float = VALIDATOR_FAKE_PROB) -> dict:
    """Per condition: the metrics of each kind's images (real, generated) and, when every (kind, class) cell has
    images, the threshold metrics at the validator's draw (:func:`source_mix_weights`); ``kinds`` per image."""
    out: dict = {"by_kind": {}, "validator_source_mix": {}, "fake_prob": fake_prob}
    for name, pred in predictions.items():
        row_kinds = kinds[pred.image_index]
        for kind in sorted(set(row_kinds.tolist())):
            out["by_kind"].setdefault(kind, {})[name] = condition_metrics(subset(pred, row_kinds == kind), prior)
        weights = source_mix_weights(pred.labels, row_kinds, prior, fake_prob)
        out["validator_source_mix"][name] = (None if weights is None else
                                             metrics_from_decisions(pred.labels, pred.decision, weights))
    return out


def summarise(predictions: dict[str, ConditionPredictions], n_resamples: int, seed: int,
              prior: float = VALIDATOR_PRIOR) -> tuple[dict, dict]:
    """(metrics per condition, intervals per condition) from per-image predictions."""
    summary = {name: condition_metrics(p, prior) for name, p in predictions.items()}
    intervals = {name: condition_intervals(p, n_resamples, seed, prior) for name, p in predictions.items()}
    return summary, intervals
