"""The Hugging Face export: a folder the NATIX base miner serves unchanged.

The miner loads ``AutoModelForImageClassification`` and ``AutoImageProcessor`` from a repo into
``transformers.pipeline("image-classification")`` and answers the score of the label ``"Roadwork"``. We write a
standard ``Dinov2ForImageClassification`` (no remote code): the backbone's weights, and a linear classifier on the
CLS token concatenated with the mean of the patch tokens, which is exactly our ``model.pooling=cls_mean`` with a
``linear`` head. Labels follow the validator (``{0: "None", 1: "Roadwork"}``).

Calibration and decision threshold are folded into the classifier (:mod:`streetvision.bundle.hf_format`), so the
pipeline's "Roadwork" score crosses 0.5 exactly at the chosen threshold. :func:`check_hf_parity` proves it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from streetvision.bundle.hf_format import (HF_FILES, PARITY_TOLERANCE, POSITIVE_LABEL, check_exportable, folded_score,
                                           logit)
from streetvision.bundle.predictor import Predictor
from streetvision.config import SPLIT_NAMES
from streetvision.errors import IntegrityError
from streetvision.models.classifier import SPEC_FILE
from streetvision.io import atomic_write_json, atomic_write_text, replace_dir
from streetvision.metrics.classification import validator_decisions
from streetvision.validator.prior import CHALLENGE_TYPE

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
                    str(raw["counts"].get(s, "-")) for s in SPLIT_NAMES)
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
    spec = json.loads((model_dir / SPEC_FILE).read_text())
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
    shift = logit(predictor.policy.decision_threshold) / 2.0
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
    same = bool(np.array_equal(validator_decisions(got), np.array([p.decision for p in preds], dtype=bool)))
    if diff > tolerance or not same:
        raise IntegrityError(f"Hugging Face export '{hf_dir}' disagrees with the bundle on {len(images)} images: "
                             f"max |score diff| {diff:.2e} (tolerance {tolerance:g}), same decisions: {same}.",
                             "rebuild the export from this bundle.")
    return f"{len(images)} images (probes x levels 0-3): max |score diff| {diff:.1e}, identical decisions"


