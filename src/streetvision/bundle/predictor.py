"""The Predictor: what a miner runs. Loads a verified bundle (safetensors + JSON only) and turns images into the
validator score, with probability, decision and accept/defer.

    from streetvision import Predictor
    predictor = Predictor.from_bundle("outputs/.../export/bundle")
    score = predictor(pil_image)          # float in [0, 1]; > 0.5 means roadwork
    predictor = Predictor.from_pretrained("my-org/roadwork")   # a Hub repo (bundle or Hugging Face format)
"""

from __future__ import annotations

import json
import shutil
import weakref
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from streetvision.bundle.hf_format import load_hf_model
from streetvision.bundle.hub import materialise, resolve_pretrained
from streetvision.bundle.probes import check_probes
from streetvision.bundle.schema import BUNDLE_INDEX, check_files, load_index, safe_member
from streetvision.data.decode import decode_image
from streetvision.data.preprocess import Preprocess
from streetvision.errors import ConfigError, IntegrityError
from streetvision.metrics.classification import softmax_probs
from streetvision.metrics.score import validator_score
from streetvision.metrics.policy import FOLDED, Policy
from streetvision.models.classifier import load_classifier

BACKENDS = ("torch", "onnx")


@dataclass(frozen=True)
class Prediction:
    """One image's outputs."""

    probability: float  # calibrated P(roadwork)
    decision: int  # 1 = roadwork
    score: float  # the float for the validator
    accepted: bool | None  # None when the policy has no selective threshold

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _onnx_session(bundle_dir: Path, index: dict) -> Any:
    """An ONNX Runtime CPU session for the bundle's ONNX file; IntegrityError naming it when it does not load."""
    import onnxruntime as ort

    onnx_rel = index["model"].get("onnx")
    if not onnx_rel:
        raise ConfigError("This bundle has no ONNX model.", "re-export with phase6.onnx=true, or use "
                                                           "backend='torch'.")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(safe_member(bundle_dir, onnx_rel)), options,
                                    providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's errors (InvalidProtobuf, Fail, ...) share no narrower base class
        raise IntegrityError(f"'{onnx_rel}' is not a loadable ONNX model ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0] if str(exc) else ''}).",
                             "restore the original file or re-export the bundle.") from exc


class Predictor:
    """Bundle -> validator scores. Use :meth:`from_bundle`."""

    def __init__(self, bundle_dir: Path, index: dict, policy: Policy, model: Any, backend: str, device: str) -> None:
        self.bundle_dir = bundle_dir
        self.index = index
        self.policy = policy
        self.backend = backend
        self.device = device
        self._model = model
        self.preprocess = Preprocess.from_dict(json.loads(safe_member(bundle_dir, index["preprocess"]).read_text()))

    @classmethod
    def from_bundle(cls, path: str | Path, device: str = "cpu", backend: str = "torch",
                    verify_files: bool = True) -> Predictor:
        """Check the bundle (schema, paths, formats, checksums), load it (never unpickles), then recompute the
        probe outputs (``streetvision.bundle.probes``). ``verify_files=False`` skips the checksums and probes
        (export, while the bundle is being built, and ``verify``, which reports each check on its own line)."""
        if backend not in BACKENDS:
            raise ConfigError(f"Unknown backend '{backend}'. Valid choices: {', '.join(BACKENDS)}.",
                              "use backend='torch' or backend='onnx'.")
        bundle_dir = Path(path)
        index = load_index(bundle_dir)
        if verify_files:
            check_files(bundle_dir, index)
        policy = Policy.from_file(safe_member(bundle_dir, index["policy"]["policy_path"]),
                                  index["policy"]["policy_type"])
        if backend == "onnx":
            model = _onnx_session(bundle_dir, index)
        else:
            model = load_classifier(safe_member(bundle_dir, index["model"]["dir"])).to(device).eval()
        try:
            predictor = cls(bundle_dir, index, policy, model, backend, device)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise IntegrityError(f"'{index['preprocess']}' is missing or malformed ({exc}).",
                                 "re-export the bundle.") from exc
        if verify_files:
            check_probes(predictor)
        return predictor

    @classmethod
    def from_pretrained(cls, repo_id_or_dir: str | Path, revision: str | None = None, backend: str = "torch",
                        device: str = "cpu") -> Predictor:
        """A local folder or a Hub repo id (``huggingface_hub.snapshot_download``; offline, the local cache serves
        it), in the bundle format (bundle.json: loaded and checked by :meth:`from_bundle`) or the Hugging Face
        format of ``streetvision export --format hf`` (config.json + preprocessor_config.json)."""
        if backend not in BACKENDS:
            raise ConfigError(f"Unknown backend '{backend}'. Valid choices: {', '.join(BACKENDS)}.",
                              "use backend='torch' or backend='onnx'.")
        folder, from_hub = resolve_pretrained(repo_id_or_dir, revision)
        if not (folder / BUNDLE_INDEX).is_file():
            model, preprocess, class_names, positive = load_hf_model(folder, backend)
            return HFPredictor(folder, model, preprocess, class_names, positive, device)
        if not from_hub:
            return cls.from_bundle(folder, device=device, backend=backend)
        copy = materialise(folder)  # the cache's files are links to shared blobs; a bundle refuses links
        try:
            predictor = cls.from_bundle(copy, device=device, backend=backend)
        except BaseException:
            shutil.rmtree(copy, ignore_errors=True)
            raise
        weakref.finalize(predictor, shutil.rmtree, copy, True)
        return predictor

    # -- inference -------------------------------------------------------------------------------------
    def tensor(self, image: Image.Image | str | Path) -> torch.Tensor:
        """Decode (any mode, EXIF; files at full resolution, exactly as ``Image.open``) and preprocess one image."""
        return self.preprocess.to_tensor(decode_image(image))

    def logits(self, batch: torch.Tensor) -> np.ndarray:
        """Raw logits [N, 2] for a preprocessed batch."""
        if self.backend == "onnx":
            return self._model.run(["logits"], {"pixel_values": batch.numpy()})[0].astype(np.float64)
        with torch.inference_mode():
            return self._model(batch.to(self.device)).float().cpu().numpy().astype(np.float64)

    def predict_tensor(self, batch: torch.Tensor) -> list[Prediction]:
        """Predictions for a preprocessed batch."""
        probs = softmax_probs(self.logits(batch), self.policy.temperature)
        decisions, _ = self.policy.decide(probs)
        scores = validator_score(probs, self.policy.decision_threshold)
        accepted = self.policy.accepted(probs)
        return [Prediction(float(p), int(d), float(s), None if accepted is None else bool(accepted[i]))
                for i, (p, d, s) in enumerate(zip(probs, decisions, scores))]

    def predict_batch(self, images: list[Image.Image | str | Path]) -> list[Prediction]:
        """Predictions for a list of images (PIL images or paths)."""
        if not images:
            return []
        return self.predict_tensor(torch.stack([self.tensor(img) for img in images]))

    def scores(self, images: list[Image.Image | str | Path], batch_size: int = 64) -> np.ndarray:
        """The validator floats of ``images`` (batched)."""
        out = [p.score for i in range(0, len(images), batch_size) for p in self.predict_batch(images[i:i + batch_size])]
        return np.asarray(out, dtype=np.float64)

    def __call__(self, image: Image.Image) -> float:
        """The validator score of one image (a NATIX miner detector's ``__call__``)."""
        return self.predict_batch([image])[0].score


class HFPredictor(Predictor):
    """A Hugging Face export behind the Predictor API: no bundle.json, so none of the bundle's checks apply; the
    "Roadwork" column is the positive class; temperature 1 and threshold 0.5 (both are folded in)."""

    def __init__(self, hf_dir: Path, model: torch.nn.Module, preprocess: Preprocess, class_names: list[str],
                 positive: int, device: str) -> None:  # not the bundle constructor: it reads bundle files
        self.bundle_dir, self.backend, self.device, self.preprocess = hf_dir, "torch", device, preprocess
        self.index = {"format": "hf", "class_names": class_names}
        self.policy = Policy(FOLDED)
        self._model = model.to(device).eval()
        self._columns = [1 - positive, positive]

    def logits(self, batch: torch.Tensor) -> np.ndarray:
        """Logits [N, 2] with the "Roadwork" column second."""
        with torch.inference_mode():
            out = self._model(pixel_values=batch.to(self.device)).logits
        return out.float().cpu().numpy().astype(np.float64)[:, self._columns]
