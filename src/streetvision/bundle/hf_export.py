"""The Hugging Face export: a folder the NATIX base miner serves unchanged.

The miner loads ``AutoModelForImageClassification`` and ``AutoImageProcessor`` from a repo into
``transformers.pipeline("image-classification")`` and answers the score of the label ``"Roadwork"``. We write a
standard ``Dinov2ForImageClassification`` (no remote code): the backbone's weights, and a linear classifier on the
CLS token concatenated with the mean of the patch tokens, which is exactly our ``model.pooling=cls_mean`` with a
``linear`` head. Labels follow the validator (``{0: "None", 1: "Roadwork"}``).

The calibration and the decision threshold are folded into the classifier: with ``z`` our logits, ``T`` the
temperature and ``t`` the threshold on the calibrated probability, the exported logits are ``z / T`` shifted by
``-logit(t) / 2`` (roadwork) and ``+logit(t) / 2`` (none), so the pipeline's "Roadwork" score is
``sigmoid(logit(p) - logit(t))`` for the calibrated ``p``: it crosses 0.5 exactly at the chosen threshold and is
monotone in ``p`` (:func:`folded_score`).

:func:`load_hf_predictor` reads such a folder back behind the Predictor API (``Predictor.from_pretrained``), with
temperature 1 and threshold 0.5, since both are already folded in.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from streetvision.bundle.predictor import Policy, Predictor
from streetvision.data.transforms import CENTRE_CROP, SQUASH, Preprocess
from streetvision.errors import ConfigError, IntegrityError
from streetvision.io import atomic_write_json, atomic_write_text, replace_dir
from streetvision.validator.prior import CHALLENGE_TYPE

EXPORTABLE_POOLING = "cls_mean"
EXPORTABLE_HEAD = "linear"
POSITIVE_LABEL = CHALLENGE_TYPE[1]
HF_FILES = ("config.json", "model.safetensors", "preprocessor_config.json", "model_card.json", "README.md")
THRESHOLD_CLIP = 1e-6
PARITY_TOLERANCE = 1e-4


def _logit(p: float) -> float:
    p = min(max(float(p), THRESHOLD_CLIP), 1 - THRESHOLD_CLIP)
    return math.log(p) - math.log1p(-p)


def folded_score(probs: np.ndarray, threshold: float) -> np.ndarray:
    """The exported pipeline's "Roadwork" score for calibrated probabilities ``probs``: sigmoid(logit(p) - logit(t))."""
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1 - 1e-12)
    z = np.log(p) - np.log1p(-p) - _logit(threshold)
    return 1.0 / (1.0 + np.exp(-z))


def check_exportable(spec: dict[str, Any], model_type: str) -> None:
    """Raise ConfigError unless the classifier maps onto Dinov2ForImageClassification."""
    if model_type != "dinov2":
        raise ConfigError(f"The Hugging Face export needs a DINOv2 backbone; this one is '{model_type}'.",
                          "train with a DINOv2 backbone (model=dinov2_small, dinov2_base, dinov2_tiny).")
    if spec.get("pooling") != EXPORTABLE_POOLING or spec.get("head") != EXPORTABLE_HEAD:
        raise ConfigError(f"The Hugging Face export needs model.pooling={EXPORTABLE_POOLING} and "
                          f"model.head={EXPORTABLE_HEAD} (what Dinov2ForImageClassification computes); this model "
                          f"has pooling '{spec.get('pooling')}' and head '{spec.get('head')}'.",
                          f"retrain with model.pooling={EXPORTABLE_POOLING} model.head={EXPORTABLE_HEAD}; the "
                          "StreetVision bundle itself serves any pooling.")


def is_exportable(spec: dict[str, Any], model_type: str) -> bool:
    """Whether :func:`check_exportable` passes."""
    try:
        check_exportable(spec, model_type)
        return True
    except ConfigError:
        return False


def _readme(card: dict[str, Any], facts: dict[str, Any]) -> str:
    rows = "\n".join(f"| {k} | {v} |" for k, v in facts.items())
    return f"""---
library_name: transformers
pipeline_tag: image-classification
tags: [natix, streetvision, roadwork, dinov2]
---
# {card.get("model_name", "streetvision-roadwork")} {card.get("version", "")}

{card.get("description", "")}

Roadwork classifier for NATIX StreetVision (Bittensor subnet 72), trained and calibrated with StreetVision. It
loads with `transformers` alone (no remote code):

```python
from transformers import pipeline
classify = pipeline("image-classification", model="THIS_REPO")
score = {{r["label"]: r["score"] for r in classify(image)}}["Roadwork"]   # > 0.5 means roadwork
```

The "Roadwork" score is the calibrated probability with the decision threshold folded in: it crosses 0.5 exactly
at the threshold chosen on held-out data, as the validator rounds it.

| fact | value |
|---|---|
{rows}

## Intended use and limitations
For answering NATIX StreetVision roadwork challenges on street-level photos (224 x 224, possibly rotated, cropped,
colour-shifted, blurred or noisy, as the validator sends them). Numbers above come from the training run's own
held-out split and a simulated validator stream; the validator's images (real and generated) may differ from the
training data, so expect lower numbers on a new domain. Not for safety-critical decisions.
"""


def _facts(bundle_dir: Path, index: dict[str, Any]) -> dict[str, Any]:
    """Training-data summary and held-out metrics from the bundle, for the model card."""
    facts: dict[str, Any] = {"backbone": index["model"].get("backbone_source", "")}
    for name, key in (("splits_summary.json", "counts"), ("metrics.json", "phase1")):
        path = bundle_dir / name
        if path.is_file():
            raw = json.loads(path.read_text())
            if key == "counts":
                facts["images (train / val_select / val_calib / test)"] = " / ".join(
                    str(raw["counts"].get(s, "-")) for s in ("train", "val_select", "val_calib", "test"))
            else:
                test = raw.get("phase1", {}).get("test", {})
                for metric in ("mcc", "accuracy", "auroc"):
                    if isinstance(test.get(metric), (int, float)):
                        facts[f"test {metric} (phase1, threshold 0.5)"] = f"{test[metric]:.3f}"
    evaluation = bundle_dir.parent.parent / "evaluation" / "metrics_summary.json"
    if evaluation.is_file():
        raw = json.loads(evaluation.read_text())
        for cond in ("clean", "validator_mix"):
            m = raw.get("conditions", {}).get(cond)
            if m:
                facts[f"{cond}: MCC / accuracy / reward"] = f"{m['mcc']:.3f} / {m['accuracy']:.3f} / {m['reward']:.3f}"
        stream = raw.get("stream")
        if stream:
            ci = stream["mean_reward_ci"]
            facts["simulated validator stream: mean reward"] = (f"{stream['mean_reward']:.3f} [{ci['low']:.3f}, "
                                                                f"{ci['high']:.3f}] over {stream['steps']} steps")
    return facts


def export_hf(bundle_dir: Path, out_dir: Path, card: dict[str, Any] | None = None) -> Path:
    """Write the Hugging Face folder for a verified bundle into ``out_dir`` (built beside it, swapped in)."""
    from transformers import BitImageProcessor, Dinov2Config, Dinov2ForImageClassification
    from transformers.image_utils import PILImageResampling

    from streetvision.models.classifier import load_classifier

    predictor = Predictor.from_bundle(bundle_dir)
    model_dir = bundle_dir / predictor.index["model"]["dir"]
    spec = json.loads((model_dir / "model.json").read_text())
    classifier = load_classifier(model_dir)
    check_exportable(spec, getattr(classifier.backbone.config, "model_type", "?"))
    names = list(predictor.index["class_names"])
    config = Dinov2Config(**{k: v for k, v in classifier.backbone.config.to_dict().items()
                             if k not in ("architectures", "id2label", "label2id", "num_labels")})
    config.id2label = {0: CHALLENGE_TYPE[0], 1: CHALLENGE_TYPE[1]}
    config.label2id = {v: k for k, v in config.id2label.items()}
    config.architectures = ["Dinov2ForImageClassification"]
    hf_model = Dinov2ForImageClassification(config).eval()
    missing, unexpected = hf_model.dinov2.load_state_dict(classifier.backbone.state_dict(), strict=False)
    if unexpected or [k for k in missing if "mask_token" not in k]:
        raise IntegrityError(f"backbone weights do not fit Dinov2ForImageClassification (missing {missing}, "
                             f"unexpected {unexpected}).", "re-export the bundle with this version.")
    linear = classifier.head[-1]
    shift = _logit(predictor.policy.decision_threshold) / 2.0
    with torch.no_grad():
        hf_model.classifier.weight.copy_(linear.weight / predictor.policy.temperature)
        hf_model.classifier.bias.copy_(linear.bias / predictor.policy.temperature
                                       + torch.tensor([shift, -shift], dtype=linear.bias.dtype))
    pre = predictor.preprocess
    processor = BitImageProcessor(
        do_resize=True, size={"shortest_edge": pre.size}, resample=PILImageResampling.BILINEAR,
        do_center_crop=True, crop_size={"height": pre.size, "width": pre.size}, do_rescale=True,
        rescale_factor=1 / 255, do_normalize=True, image_mean=list(pre.mean), image_std=list(pre.std),
        do_convert_rgb=True)
    card = dict(card or json.loads((bundle_dir / "model_card.json").read_text()))
    facts = {**_facts(bundle_dir, predictor.index), "classes (ours -> exported)":
             f"{names[0]} -> None, {names[1]} -> Roadwork", "temperature (folded)":
             f"{predictor.policy.temperature:.4f}", "decision threshold (folded)":
             f"{predictor.policy.decision_threshold:.4f}", "input": f"{pre.size} px, centre crop, bilinear"}
    with replace_dir(out_dir) as tmp:
        hf_model.save_pretrained(tmp, safe_serialization=True)
        processor.save_pretrained(tmp)
        atomic_write_json(tmp / "model_card.json", card)
        atomic_write_text(tmp / "README.md", _readme(card, facts))
    return out_dir


def pipeline_scores(hf_dir: Path, images: list, device: str = "cpu") -> np.ndarray:
    """The "Roadwork" score of each image, loaded and asked exactly as the NATIX base miner does."""
    from transformers import AutoImageProcessor, AutoModelForImageClassification, pipeline

    model = AutoModelForImageClassification.from_pretrained(str(hf_dir))
    processor = AutoImageProcessor.from_pretrained(str(hf_dir))
    classify = pipeline("image-classification", model=model, image_processor=processor, device=device)
    out = []
    for image in images:
        scores = {r["label"]: r["score"] for r in classify(image, top_k=None)}
        out.append(scores[POSITIVE_LABEL])
    return np.asarray(out, dtype=np.float64)


def parity_images(bundle_dir: Path, n_per_level: int = 8) -> list:
    """The bundle's probe images as the validator would send them at levels 0-3 (32 images by default)."""
    from PIL import Image

    from streetvision.validator.challenge import LEVELS, challenge

    probes = json.loads((bundle_dir / "probes" / "probes.json").read_text())["probes"][:n_per_level]
    images = []
    for i, record in enumerate(probes):
        with Image.open(bundle_dir / record["path"]) as img:
            img = img.convert("RGB")
        images += [challenge(img, np.random.default_rng([7, i, lv]), level=lv)[0] for lv in LEVELS]
    return images


def check_hf_parity(bundle_dir: Path, hf_dir: Path, tolerance: float = PARITY_TOLERANCE) -> str:
    """Score the parity images through the exported pipeline and through the bundle's Predictor; IntegrityError
    unless the scores agree within ``tolerance`` and every decision is the same."""
    missing = [name for name in HF_FILES if not (Path(hf_dir) / name).is_file()]
    if missing:
        raise IntegrityError(f"Hugging Face export '{hf_dir}' lacks {', '.join(missing)}.",
                             "rebuild it: streetvision export RUN --format hf --out DIR.")
    images = parity_images(Path(bundle_dir))
    predictor = Predictor.from_bundle(bundle_dir)
    preds = predictor.predict_batch(images)
    expected = folded_score(np.array([p.probability for p in preds]), predictor.policy.decision_threshold)
    got = pipeline_scores(Path(hf_dir), images)
    diff = float(np.max(np.abs(got - expected)))
    same = bool(np.array_equal(got > 0.5, np.array([p.decision for p in preds], dtype=bool)))
    if diff > tolerance or not same:
        raise IntegrityError(f"Hugging Face export '{hf_dir}' disagrees with the bundle on {len(images)} images: "
                             f"max |score diff| {diff:.2e} (tolerance {tolerance:g}), same decisions: {same}.",
                             "rebuild the export from this bundle.")
    return f"{len(images)} images (probes x levels 0-3): max |score diff| {diff:.1e}, identical decisions"


# -- loading an export back behind the Predictor API ----------------------------------------------------------------
FOLDED_POLICY_TYPE = "folded"  # temperature 1 and threshold 0.5: both are folded into the exported classifier
BILINEAR = 2  # PIL's code, as preprocessor_config.json stores "resample"


def preprocess_from_processor(raw: dict[str, Any], where: str) -> Preprocess:
    """Our Preprocess for a preprocessor_config.json: resize the short side to S and centre-crop S x S (what
    :func:`export_hf` writes), or resize to S x S without a crop; bilinear, scaled by 1/255, normalised. Anything
    else would be scored differently from the miner's pipeline, so it is refused, naming the fields."""
    size, crop = raw.get("size") or {}, raw.get("crop_size") or {}
    side, rule = None, None
    if raw.get("do_resize", True) and raw.get("do_center_crop") and size.get("shortest_edge") is not None \
            and crop.get("height") == crop.get("width") == size["shortest_edge"]:
        side, rule = int(size["shortest_edge"]), CENTRE_CROP
    elif raw.get("do_resize", True) and not raw.get("do_center_crop") and size.get("height") is not None \
            and size.get("height") == size.get("width"):
        side, rule = int(size["height"]), SQUASH
    rescale = raw.get("do_rescale", True) and abs(float(raw.get("rescale_factor", 1 / 255)) - 1 / 255) < 1e-9
    if side is None or raw.get("resample", BILINEAR) != BILINEAR or not rescale:
        raise IntegrityError(f"'{where}': size {size}, crop_size {crop}, do_center_crop {raw.get('do_center_crop')}, "
                             f"resample {raw.get('resample')}, rescale_factor {raw.get('rescale_factor')}: the "
                             f"Predictor reproduces a square bilinear input (short side resized and centre-cropped "
                             f"to S, or resized to S x S) scaled by 1/255.",
                             "export the model with `streetvision export RUN --format hf`, or score this folder "
                             "with transformers.pipeline directly.")
    normalise = raw.get("do_normalize", True)
    return Preprocess.from_dict({"size": side, "mean": raw.get("image_mean") if normalise else [0.0] * 3,
                                 "std": raw.get("image_std") if normalise else [1.0] * 3, "resize_rule": rule})


class HFPredictor(Predictor):
    """A Hugging Face export behind the Predictor API: no bundle.json, so none of the bundle's checks apply; the
    "Roadwork" column is the positive class; temperature 1 and threshold 0.5 (both are folded in)."""

    def __init__(self, hf_dir: Path, model: torch.nn.Module, preprocess: Preprocess, class_names: list[str],
                 positive: int, device: str) -> None:  # not the bundle constructor: it reads bundle files
        self.bundle_dir, self.backend, self.device, self.preprocess = hf_dir, "torch", device, preprocess
        self.index = {"format": "hf", "class_names": class_names}
        self.policy = Policy(FOLDED_POLICY_TYPE, 1.0, 0.5, None, False)
        self._model = model.to(device).eval()
        self._columns = [1 - positive, positive]

    def logits(self, batch: torch.Tensor) -> np.ndarray:
        """Logits [N, 2] with the "Roadwork" column second."""
        with torch.inference_mode():
            out = self._model(pixel_values=batch.to(self.device)).logits
        return out.float().cpu().numpy().astype(np.float64)[:, self._columns]


def load_hf_predictor(hf_dir: Path, backend: str = "torch", device: str = "cpu") -> HFPredictor:
    """A Predictor over a Hugging Face export (config.json + preprocessor_config.json): logits from
    AutoModelForImageClassification (safetensors only, no remote code), preprocessing from
    preprocessor_config.json, class names from id2label."""
    from transformers import AutoModelForImageClassification

    hf_dir = Path(hf_dir)
    if backend != "torch":
        raise ConfigError(f"The Hugging Face export '{hf_dir}' has no {backend} model.",
                          "use backend='torch' (ONNX is served from a StreetVision bundle).")
    missing = [n for n in ("config.json", "preprocessor_config.json") if not (hf_dir / n).is_file()]
    if missing:
        raise IntegrityError(f"'{hf_dir}' is neither a StreetVision bundle (no bundle.json) nor a Hugging Face "
                             f"export (no {', '.join(missing)}).",
                             "pass an export/bundle or export/hf folder, or a Hub repo id published with "
                             "`streetvision publish`.")
    try:
        config = json.loads((hf_dir / "config.json").read_text())
        preprocess = preprocess_from_processor(json.loads((hf_dir / "preprocessor_config.json").read_text()),
                                               str(hf_dir / "preprocessor_config.json"))
        labels = {int(k): str(v) for k, v in (config.get("id2label") or {}).items()}
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        raise IntegrityError(f"'{hf_dir}': config.json or preprocessor_config.json is malformed ({exc}).",
                             "re-export it with `streetvision export RUN --format hf`.") from exc
    if sorted(labels) != [0, 1] or POSITIVE_LABEL not in labels.values():
        raise IntegrityError(f"'{hf_dir / 'config.json'}': id2label {labels} is not two classes with "
                             f"'{POSITIVE_LABEL}' (the label the NATIX miner answers).",
                             "re-export it with `streetvision export RUN --format hf`.")
    positive = next(i for i, name in labels.items() if name == POSITIVE_LABEL)
    try:
        model = AutoModelForImageClassification.from_pretrained(str(hf_dir), use_safetensors=True)
    except (OSError, ValueError, RuntimeError) as exc:
        raise IntegrityError(f"'{hf_dir}' does not load as an image classifier from safetensors "
                             f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}).",
                             "re-export it with `streetvision export RUN --format hf`.") from exc
    return HFPredictor(hf_dir, model, preprocess, [labels[1 - positive], labels[positive]], positive, device)
