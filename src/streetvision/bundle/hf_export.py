"""The Hugging Face export: a folder the NATIX base miner serves unchanged.

The miner loads ``AutoModelForImageClassification`` and ``AutoImageProcessor`` from a repo into
``transformers.pipeline("image-classification")`` and answers the score of the label ``"Roadwork"``. We write the
backbone family's standard ``*ForImageClassification`` (no remote code; ``Dinov2ForImageClassification``,
``ConvNextV2ForImageClassification``, ... :mod:`streetvision.models.families`): the backbone's weights and a linear
classifier on the family's own pooling, which is exactly our ``model.pooling=family`` with a ``linear`` head. Labels follow the validator (``{0: "None", 1: "Roadwork"}``).

Calibration and decision threshold are folded into the classifier (:mod:`streetvision.bundle.hf_format`), so the
pipeline's "Roadwork" score crosses 0.5 exactly at the chosen threshold. :func:`check_hf_parity` proves it.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from streetvision.bundle.hf_format import (CHECKSUMS_FILE, PARITY_TOLERANCE, POSITIVE_LABEL, check_exportable,
                                           check_hf_folder, checksums_document, hf_config, processor_config)
from streetvision.bundle.probes import PARITY_PER_LEVEL, PROBES_DIR, parity_rng
from streetvision.bundle.schema import safe_member
from streetvision.bundle.predictor import Predictor
from streetvision.config import SPLIT_NAMES
from streetvision.errors import IntegrityError
from streetvision.models.classifier import SPEC_FILE
from streetvision.io import atomic_write_json, atomic_write_safetensors, atomic_write_text, replace_dir
from streetvision.metrics.classification import validator_decisions
from streetvision.metrics.score import logit
from streetvision.models.families import SHORT_SIDE, family

def _text(value: Any) -> str:
    """A card value as inert one-line Markdown text (no HTML, no line breaks, no table pipes)."""
    return html.escape(" ".join(str(value).split())).replace("|", "&#124;")


def _readme(card: dict[str, Any], facts: dict[str, Any]) -> str:
    card = {k: _text(v) for k, v in card.items()}
    rows = "\n".join(f"| {_text(k)} | {_text(v)} |" for k, v in facts.items())
    return f"""---
library_name: transformers
pipeline_tag: image-classification
tags: [natix, streetvision, roadwork]
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
    """Write the Hugging Face folder for a verified bundle as ``out_dir`` (built beside it, swapped in)."""
    with replace_dir(out_dir) as tmp:
        write_hf(bundle_dir, tmp, card)
    return out_dir


def write_hf(bundle_dir: Path, out_dir: Path, card: dict[str, Any] | None = None) -> Path:
    """Write the Hugging Face folder's files for a verified bundle into the folder ``out_dir``: model.safetensors
    from ``save_pretrained``, config.json and preprocessor_config.json with only the fields every supported miner
    environment reads (:mod:`streetvision.bundle.hf_format`), the card and its README."""
    from transformers import AutoConfig, AutoModelForImageClassification

    from streetvision.models.classifier import load_classifier

    predictor = Predictor.from_bundle(bundle_dir)
    model_dir = bundle_dir / predictor.index["model"]["dir"]
    spec = json.loads((model_dir / SPEC_FILE).read_text())
    classifier = load_classifier(model_dir)
    model_type = getattr(classifier.backbone.config, "model_type", "?")
    check_exportable(spec, model_type)
    names = list(predictor.index["class_names"])
    config_doc = hf_config(classifier.backbone.config.to_dict())
    config = AutoConfig.for_model(**config_doc)
    hf_model = AutoModelForImageClassification.from_config(config).eval()
    base = hf_base_model(hf_model)
    state = {k: v for k, v in classifier.backbone.state_dict().items()  # ViT's mask token: pre-training only
             if not k.endswith("mask_token") or k in base.state_dict()}
    missing, unexpected = base.load_state_dict(state, strict=False)
    if unexpected or [k for k in missing if "mask_token" not in k]:
        raise IntegrityError(f"backbone weights do not fit {type(hf_model).__name__} (missing {missing}, "
                             f"unexpected {unexpected}).", "re-export the bundle with this version.")
    target = [m for m in hf_model.classifier.modules() if isinstance(m, torch.nn.Linear)][-1]
    linear = classifier.head[-1]
    shift = logit(predictor.policy.decision_threshold) / 2.0
    with torch.no_grad():
        target.weight.copy_(linear.weight / predictor.policy.temperature)
        target.bias.copy_(linear.bias / predictor.policy.temperature
                          + torch.tensor([shift, -shift], dtype=linear.bias.dtype))
    pre = predictor.preprocess
    card = dict(card or json.loads((bundle_dir / "model_card.json").read_text()))
    facts = {**_facts(bundle_dir, predictor.index), "classes (ours -> exported)":
             f"{names[0]} -> None, {names[1]} -> Roadwork", "temperature (folded)":
             f"{predictor.policy.temperature:.4f}", "decision threshold (folded)":
             f"{predictor.policy.decision_threshold:.4f}",
             "architecture": config_doc["architectures"][0],
             "input": (f"{pre.size} px: short side resized (bilinear), then centre crop"
                       if family(model_type).processor == SHORT_SIDE else f"{pre.size} x {pre.size} px (bilinear resize)")}
    out_dir = Path(out_dir)
    hf_model.save_pretrained(out_dir, safe_serialization=True)
    _add_legacy_buffers(hf_model, out_dir / "model.safetensors")
    atomic_write_json(out_dir / "config.json", config_doc)  # replaces save_pretrained's version-specific one
    atomic_write_json(out_dir / "preprocessor_config.json", processor_config(pre, model_type))
    atomic_write_json(out_dir / "model_card.json", card)
    atomic_write_text(out_dir / "README.md", _readme(card, facts))
    atomic_write_json(out_dir / CHECKSUMS_FILE, checksums_document(out_dir))  # last: it covers the others
    return out_dir


def _add_legacy_buffers(hf_model: torch.nn.Module, weights: Path) -> None:
    """Write into ``weights`` the buffers that transformers 4.45 (NATIX's pin) expects in the file and 5.x no longer
    saves: Swin's ``relative_position_index`` (5.x: a non-persistent ``attention.relative_position_bias``
    buffer, flat; 4.45: ``attention.self.relative_position_index``, square). Without them the miner's log says
    "newly initialized" (4.45 rebuilds them identically, but a miner cannot know that); 5.x ignores them."""
    from safetensors.torch import load_file

    legacy = {}
    for name, buffer in hf_model.named_buffers():
        if name.endswith("attention.relative_position_bias.relative_position_index"):
            side = int(round(buffer.numel() ** 0.5))
            legacy[name.replace("relative_position_bias.", "self.")] = buffer.reshape(side, side)
    if legacy:
        state = load_file(weights)
        atomic_write_safetensors(weights, {**state, **{k: v for k, v in legacy.items() if k not in state}},
                                 metadata={"format": "pt"})


def hf_base_model(hf_model: torch.nn.Module) -> torch.nn.Module:
    """The part of a ``*ForImageClassification`` that our backbone is (SigLIP's classifier holds its vision model as
    ``vision_model``; the others under their base_model_prefix)."""
    vision = getattr(hf_model, "vision_model", None)
    return vision if vision is not None else hf_model.base_model


def miner_pipeline(hf_dir: Path, use_fast: bool = True) -> Any:
    """The NATIX base miner's classifier for a folder, built with its own arguments
    (``base_miner/detectors/vit_detector.py``: the model, and the processor as ``feature_extractor`` with
    ``use_fast=True``)."""
    from transformers import AutoImageProcessor, AutoModelForImageClassification, pipeline

    return pipeline("image-classification", model=AutoModelForImageClassification.from_pretrained(str(hf_dir)),
                    feature_extractor=AutoImageProcessor.from_pretrained(str(hf_dir), use_fast=use_fast))


def pipeline_scores(hf_dir: Path, images: list, use_fast: bool = True) -> np.ndarray:
    """The "Roadwork" score of each image, loaded and asked exactly as the NATIX base miner does
    (``classify(image)``, then the score of the label "Roadwork")."""
    classify = miner_pipeline(hf_dir, use_fast)
    return np.asarray([{r["label"]: r["score"] for r in classify(image)}[POSITIVE_LABEL] for image in images],
                      dtype=np.float64)


def named_parity_images(bundle_dir: Path, n_per_level: int = PARITY_PER_LEVEL) -> list[tuple[str, Image.Image]]:
    """(name, image) of the bundle's parity images: its first ``n_per_level`` probes as the validator sends them at
    levels 0-3, stored at export as the wire JPEGs (``probes.json``'s ``parity_images``), so reading them needs no
    OpenCV. Bundles exported before they were stored get them drawn again, which needs the ``train`` extra."""
    bundle_dir = Path(bundle_dir)
    probes = json.loads((bundle_dir / PROBES_DIR / "probes.json").read_text())
    images = []
    if "parity_images" in probes:
        for record in probes["parity_images"]:
            if int(record["probe"]) < n_per_level:
                with Image.open(safe_member(bundle_dir, record["path"])) as img:
                    images.append((record["path"], img.convert("RGB")))
        return images
    try:
        from streetvision.validator.challenges import LEVELS, challenge
    except ImportError as exc:
        raise IntegrityError(f"bundle '{bundle_dir}' predates stored parity images, and drawing validator "
                             f"challenges needs OpenCV ({exc}).",
                             "re-export the run (`streetvision export RUN`), or pip install 'streetvision[train]'.")
    for i, record in enumerate(probes["probes"][:n_per_level]):
        with Image.open(safe_member(bundle_dir, record["path"])) as img:
            img = img.convert("RGB")
        images += [(f"{record['path']} level {lv}", challenge(img, parity_rng(i, lv), level=lv)[0]) for lv in LEVELS]
    return images


def parity_images(bundle_dir: Path, n_per_level: int = PARITY_PER_LEVEL) -> list[Image.Image]:
    """The images of :func:`named_parity_images` (probes x levels 0-3, probe by probe)."""
    return [img for _, img in named_parity_images(bundle_dir, n_per_level)]


def check_hf_parity(bundle_dir: Path, hf_dir: Path, tolerance: float = PARITY_TOLERANCE) -> str:
    """Check the folder as the miner environments read it (:func:`check_hf_folder`), then score the parity images
    through the miner's own pipeline call and through the bundle's Predictor; IntegrityError, naming the
    environment and the image, unless the scores agree within ``tolerance`` with the same decisions."""
    import transformers

    check_hf_folder(Path(hf_dir))
    named = named_parity_images(Path(bundle_dir))
    images = [img for _, img in named]
    expected = Predictor.from_bundle(bundle_dir).scores(images)
    got = pipeline_scores(Path(hf_dir), images)
    diffs = np.abs(got - expected)
    flipped = validator_decisions(got) != validator_decisions(expected)
    worst = int(np.argmax(diffs + flipped))
    if diffs[worst] > tolerance or flipped.any():
        raise IntegrityError(f"Hugging Face export '{hf_dir}' disagrees with the bundle under transformers "
                             f"{transformers.__version__} (the NATIX miner's pipeline call): "
                             f"{int(flipped.sum())} of {len(images)} decisions differ, max |score diff| "
                             f"{diffs.max():.2e} (tolerance {tolerance:g}), worst image {named[worst][0]} "
                             f"(bundle {expected[worst]:.6f}, export {got[worst]:.6f}).",
                             "rebuild the export from this bundle: streetvision export RUN --format hf.")
    return (f"{len(images)} images (probes x levels 0-3) through the miner's pipeline call, transformers "
            f"{transformers.__version__}: max |score diff| {diffs.max():.1e}, identical decisions")
