"""The Hugging Face folder format StreetVision writes and reads: what an export must be (a supported family's
``*ForImageClassification``: the family's pooling and a linear head), how calibration and threshold are folded into its classifier (its
score is :func:`streetvision.metrics.score.validator_score`), and how such a folder is loaded back
(:func:`load_hf_model`) behind the Predictor API.

The calibration and the decision threshold are folded into the classifier: with ``z`` our logits, ``T`` the
temperature and ``t`` the threshold on the calibrated probability, the exported logits are ``z / T`` shifted by
``-logit(t) / 2`` (roadwork) and ``+logit(t) / 2`` (none), so the pipeline's "Roadwork" score is
``sigmoid(logit(p) - logit(t))`` for the calibrated ``p``: it crosses 0.5 exactly at the chosen threshold and is
monotone in ``p``. A loaded export therefore has temperature 1 and threshold 0.5.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from streetvision.data.preprocess import SHORT_SIDE_THEN_CROP, SQUASH, Preprocess
from streetvision.errors import ConfigError, IntegrityError
from streetvision.io.atomic import sha256_file
from streetvision.models.families import BILINEAR, FAMILIES, SHORT_SIDE, family
from streetvision.validator.prior import CHALLENGE_TYPE

EXPORTABLE_HEAD = "linear"
POSITIVE_LABEL = CHALLENGE_TYPE[1]
# the files of an export; CHECKSUMS_FILE lists the SHA-256 of the others (transformers and the miner ignore it;
# verify, Predictor.from_pretrained and StreetVisionDetector check it)
CHECKSUMS_FILE = "streetvision_checksums.json"
CHECKED_FILES = ("config.json", "model.safetensors", "preprocessor_config.json", "model_card.json", "README.md")
HF_FILES = (*CHECKED_FILES, CHECKSUMS_FILE)
PARITY_TOLERANCE = 1e-4


def check_exportable(spec: dict[str, Any], model_type: str) -> None:
    """Raise ConfigError unless the classifier is exactly its family's ``*ForImageClassification``: a supported
    family, the family's own pooling and a linear head."""
    fam = family(model_type)
    if not fam.natix:
        raise ConfigError(f"The Hugging Face export of a {fam.model_type} backbone would be a {fam.classifier}, which "
                          "NATIX's pinned transformers 4.45 does not have: the stock miner could not load it.",
                          "serve the StreetVision bundle, or train a family the miner loads "
                          f"({', '.join(t for t, f in FAMILIES.items() if f.natix)}).")
    if spec.get("pooling") not in (fam.pooling, "family") or spec.get("head") != EXPORTABLE_HEAD:
        raise ConfigError(f"The Hugging Face export of a {fam.model_type} backbone needs model.pooling=family (here "
                          f"'{fam.pooling}', what {fam.classifier} computes) and model.head={EXPORTABLE_HEAD}; this "
                          f"model has pooling '{spec.get('pooling')}' and head '{spec.get('head')}'.",
                          f"retrain with model.pooling=family model.head={EXPORTABLE_HEAD}; the StreetVision bundle "
                          "itself serves any pooling.")


def check_saved_exportable(model_dir: Path) -> None:
    """:func:`check_exportable` for a saved classifier (``model.json`` and its backbone's ``config.json``), so a
    command can refuse before it rebuilds anything; silent when the files are not there yet."""
    from streetvision.models.classifier import BACKBONE_DIR, SPEC_FILE

    try:
        spec = json.loads((Path(model_dir) / SPEC_FILE).read_text())
        backbone = json.loads((Path(model_dir) / BACKBONE_DIR / "config.json").read_text())
    except (OSError, ValueError):
        return
    check_exportable(spec, str(backbone.get("model_type", "?")))


def is_exportable(spec: dict[str, Any], model_type: str) -> bool:
    """Whether :func:`check_exportable` passes."""
    try:
        check_exportable(spec, model_type)
        return True
    except ConfigError:
        return False


# The fields an export writes: those that transformers 4.45 (NATIX's pin) and today's transformers both read, and
# nothing version-specific (each family's config fields: models.families). No "image_processor_type": with it, the
# NATIX miner's AutoImageProcessor.from_pretrained(repo, use_fast=True) asks transformers 4.45 for e.g. a
# "BitImageProcessorFast", which that version lacks ("Unrecognized image processor"); without it the processor
# follows config.json's model_type (dinov2: BitImageProcessor; convnextv2, resnet: ConvNextImageProcessor; vit, swin:
# ViTImageProcessor; deit, efficientnet, siglip: their own; the PIL ones wherever torchvision is missing).
DINOV2_FIELDS = FAMILIES["dinov2"].config_fields
EXPORT_TYPES = {fam.export_model_type: fam for fam in FAMILIES.values() if fam.natix}
# keys whose presence makes a supported miner environment load something else than this format describes
FOREIGN_KEYS = {"preprocessor_config.json": ("image_processor_type", "processor_class", "auto_map"),
                "config.json": ("auto_map",)}
MINER_ENVIRONMENTS = "transformers 4.45.x (NATIX's lock) and 5.x, with and without torchvision, use_fast=True/False"


def hf_config(backbone: dict[str, Any]) -> dict[str, Any]:
    """config.json of an export: the family's fields of ``backbone`` (a config's to_dict; SigLIP's as the
    classifier's ``vision_config``), its classifier architecture and the validator's labels."""
    fam = family(str(backbone.get("model_type")))
    fields = {k: backbone[k] for k in fam.config_fields if k in backbone}
    id2label = {0: CHALLENGE_TYPE[0], 1: CHALLENGE_TYPE[1]}
    if fam.export_model_type != fam.model_type:
        fields = {"vision_config": {"model_type": fam.model_type, **fields}}
    return {"model_type": fam.export_model_type, "architectures": [fam.classifier], **fields,
            "id2label": id2label, "label2id": {v: k for k, v in id2label.items()}}


def processor_config(pre: Preprocess, model_type: str = "dinov2") -> dict[str, Any]:
    """preprocessor_config.json of an export, in the fields of the family's image processor: short side to S and
    centre crop S x S (BiT; ConvNeXt with crop_pct 1), or a resize to S x S (ViT, DeiT, EfficientNet, SigLIP);
    bilinear, /255, normalised."""
    fam = family(model_type)
    if fam.processor == SHORT_SIDE and "crop_pct" in fam.processor_extra:
        frame = {"size": {"shortest_edge": pre.size}}
    elif fam.processor == SHORT_SIDE:
        frame = {"size": {"shortest_edge": pre.size}, "do_center_crop": True,
                 "crop_size": {"height": pre.size, "width": pre.size}}
    else:
        frame = {"size": {"height": pre.size, "width": pre.size}}
    return {"do_resize": True, **frame, "resample": BILINEAR, "do_rescale": True, "rescale_factor": 1 / 255,
            "do_normalize": True, "image_mean": list(pre.mean), "image_std": list(pre.std),
            **({"do_convert_rgb": True} if fam.model_type == "dinov2" else {}), **fam.processor_extra}


def checksums_document(hf_dir: Path) -> dict[str, Any]:
    """The checksum file's content for the export files in ``hf_dir``."""
    return {"format": "streetvision hugging face export",
            "sha256": {name: sha256_file(Path(hf_dir) / name) for name in CHECKED_FILES}}


def check_checksums(hf_dir: Path, required: bool = True) -> str:
    """IntegrityError naming the first export file whose SHA-256 differs from the checksum file (a swapped
    id2label, edited weights, ...). Without the file: IntegrityError when ``required``, else nothing is claimed."""
    path = Path(hf_dir) / CHECKSUMS_FILE
    if not path.is_file():
        if required:
            raise IntegrityError(f"'{hf_dir}' has no {CHECKSUMS_FILE}: its files cannot be checked.",
                                 "rebuild it: streetvision export RUN --format hf --out DIR.")
        return f"no {CHECKSUMS_FILE}: not checked"
    try:
        recorded = json.loads(path.read_text())["sha256"]
        names = sorted(recorded)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise IntegrityError(f"'{path}' is malformed ({exc}).", "rebuild the export.") from exc
    for name in CHECKED_FILES:
        file = Path(hf_dir) / name
        if name not in recorded or not file.is_file() or sha256_file(file) != recorded[name]:
            raise IntegrityError(f"'{file}' does not match its SHA-256 in {CHECKSUMS_FILE} (edited after export: a "
                                 f"changed id2label or classifier would change every score the miner returns).",
                                 "restore the original file or rebuild the export: streetvision export RUN "
                                 "--format hf --out DIR.")
    return f"{len(names)} files match {CHECKSUMS_FILE}"


def check_hf_folder(hf_dir: Path) -> str:
    """The static part of "a supported miner environment loads this folder": every file, no key that makes
    transformers 4.45 or 5.x pick another class, the architecture and labels the miner needs, a processor the
    Predictor reproduces. IntegrityError naming the environment and the field; returns a one-line summary."""
    hf_dir = Path(hf_dir)
    missing = [name for name in HF_FILES if not (hf_dir / name).is_file()]
    if missing:
        raise IntegrityError(f"Hugging Face export '{hf_dir}' lacks {', '.join(missing)}.",
                             "rebuild it: streetvision export RUN --format hf --out DIR.")
    docs = {}
    for name in FOREIGN_KEYS:
        try:
            docs[name] = json.loads((hf_dir / name).read_text())
            if not isinstance(docs[name], dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as exc:
            raise IntegrityError(f"'{hf_dir / name}' is not a readable JSON object ({exc}).",
                                 "rebuild it: streetvision export RUN --format hf --out DIR.") from exc
    for name, keys in FOREIGN_KEYS.items():
        for key in keys:
            if key in docs[name]:
                why = ("the NATIX miner's AutoImageProcessor.from_pretrained(repo, use_fast=True) under transformers "
                       f"4.45.x (NATIX's lock) looks for '{docs[name][key]}Fast' and stops with 'Unrecognized image "
                       "processor'" if key == "image_processor_type" else
                       "transformers would load another class than the one this format describes (remote code "
                       "or a processor bundle), which the miner environments do not run the same way")
                raise IntegrityError(f"'{hf_dir / name}' has \"{key}\": {why}.",
                                     f"remove the \"{key}\" field, or rebuild the folder with "
                                     "`streetvision export RUN --format hf`.")
    config = docs["config.json"]
    labels = {str(k): v for k, v in (config.get("id2label") or {}).items()}
    fam = EXPORT_TYPES.get(str(config.get("model_type")))
    if fam is None or config.get("architectures") != [fam.classifier] \
            or labels != {"0": CHALLENGE_TYPE[0], "1": CHALLENGE_TYPE[1]}:
        pairs = ", ".join(f"{t!r}: ['{f.classifier}']" for t, f in EXPORT_TYPES.items())
        raise IntegrityError(f"'{hf_dir / 'config.json'}': model_type {config.get('model_type')!r}, architectures "
                             f"{config.get('architectures')}, id2label {labels}; the miner (transformers 4.45.x "
                             f"and 5.x) needs a model_type with its classifier ({pairs}) and "
                             f"{{'0': '{CHALLENGE_TYPE[0]}', '1': '{CHALLENGE_TYPE[1]}'}} (it answers the score of "
                             f"'{POSITIVE_LABEL}').", "rebuild it: streetvision export RUN --format hf.")
    preprocess_from_processor(docs["preprocessor_config.json"], str(hf_dir / "preprocessor_config.json"))
    check_checksums(hf_dir)
    return f"checksums, config.json and preprocessor_config.json load alike in {MINER_ENVIRONMENTS}"


def preprocess_from_processor(raw: dict[str, Any], where: str) -> Preprocess:
    """Our Preprocess for a preprocessor_config.json: resize the short side to S and centre-crop S x S (what
    :func:`export_hf` writes), or resize to S x S without a crop; bilinear, scaled by 1/255, normalised. Anything
    else would be scored differently from the miner's pipeline, so it is refused, naming the fields."""
    size, crop = raw.get("size") or {}, raw.get("crop_size") or {}
    side, rule = None, None
    if raw.get("include_top") or raw.get("rescale_offset"):
        pass  # EfficientNet's second division by the std, or a [-1, 1] offset: refused below
    elif raw.get("do_resize", True) and "crop_pct" in raw and size.get("shortest_edge") is not None:
        # ConvNeXt's processor: below 384 px, short side to S / crop_pct then centre crop S; from 384 px, S x S
        side = int(size["shortest_edge"])
        if side >= 384:
            rule = SQUASH
        elif raw["crop_pct"] is not None and int(side / float(raw["crop_pct"])) == side:
            rule = SHORT_SIDE_THEN_CROP
        else:
            side = None
    elif raw.get("do_resize", True) and raw.get("do_center_crop") and size.get("shortest_edge") is not None \
            and crop.get("height") == crop.get("width") == size["shortest_edge"]:
        side, rule = int(size["shortest_edge"]), SHORT_SIDE_THEN_CROP
    elif raw.get("do_resize", True) and not raw.get("do_center_crop") and size.get("height") is not None \
            and size.get("height") == size.get("width"):
        side, rule = int(size["height"]), SQUASH
    rescale = raw.get("do_rescale", True) and abs(float(raw.get("rescale_factor", 1 / 255)) - 1 / 255) < 1e-9
    if side is None or raw.get("resample", BILINEAR) != BILINEAR or not rescale:
        raise IntegrityError(f"'{where}': size {size}, crop_size {crop}, do_center_crop {raw.get('do_center_crop')}, "
                             f"resample {raw.get('resample')}, rescale_factor {raw.get('rescale_factor')}: the "
                             f"Predictor reproduces a square bilinear input (short side resized and centre-cropped "
                             f"to S, or resized to S x S) scaled by 1/255 (crop_pct 1, no include_top or "
                             f"rescale_offset).",
                             "export the model with `streetvision export RUN --format hf`, or score this folder "
                             "with transformers.pipeline directly.")
    normalise = raw.get("do_normalize", True)
    return Preprocess.from_dict({"size": side, "mean": raw.get("image_mean") if normalise else [0.0] * 3,
                                 "std": raw.get("image_std") if normalise else [1.0] * 3, "resize_rule": rule})


def load_hf_model(hf_dir: Path, backend: str = "torch") -> tuple[torch.nn.Module, Preprocess, list[str], int]:
    """(model, preprocessing, class names [negative, positive], index of the "Roadwork" logit) of a Hugging Face
    export (config.json + preprocessor_config.json): AutoModelForImageClassification (safetensors only, no remote
    code), preprocessing from preprocessor_config.json, class names from id2label."""
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
    check_checksums(hf_dir, required=False)  # exports written before the checksum file load unchecked
    try:
        model = AutoModelForImageClassification.from_pretrained(str(hf_dir), use_safetensors=True)
    except (OSError, ValueError, RuntimeError) as exc:
        raise IntegrityError(f"'{hf_dir}' does not load as an image classifier from safetensors "
                             f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}).",
                             "re-export it with `streetvision export RUN --format hf`.") from exc
    return model, preprocess, [labels[1 - positive], labels[positive]], positive
