"""``streetvision verify BUNDLE`` (or a Hugging Face export folder): one line per check, non-zero exit on any
failure."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from streetvision.bundle.probes import check_probes
from streetvision.bundle.schema import BUNDLE_INDEX, check_files, load_index
from streetvision.errors import StreetVisionError

HF_DIR_NAME = "hf"


@dataclass(frozen=True)
class Check:
    """The outcome of one check."""

    name: str
    ok: bool
    detail: str


def verify_bundle(path: str | Path) -> list[Check]:
    """Run every check; later checks are skipped once the files cannot be trusted."""
    from streetvision.bundle.predictor import Predictor

    bundle_dir = Path(path)
    checks: list[Check] = []

    def attempt(name: str, fn) -> bool:
        try:
            detail = fn()
            checks.append(Check(name, True, detail))
            return True
        except StreetVisionError as exc:
            checks.append(Check(name, False, str(exc)))
        except Exception as exc:  # a malformed bundle can fail in any library; report it as a failed check
            checks.append(Check(name, False, f"{type(exc).__name__}: {exc}"))
        return False

    holder: dict = {}
    if not (bundle_dir / BUNDLE_INDEX).is_file() and (bundle_dir / "config.json").is_file():
        return verify_hf_folder(bundle_dir, attempt, checks)
    if not attempt("schema", lambda: (holder.setdefault("index", load_index(bundle_dir)), "bundle.json valid")[1]):
        return checks
    index = holder["index"]
    if not attempt("checksums", lambda: f"{check_files(bundle_dir, index)} files match bundle.json"):
        return checks
    for backend in ("torch", "onnx"):
        if backend == "onnx" and not index["model"].get("onnx"):
            continue

        def load(b=backend):
            holder[b] = Predictor.from_bundle(bundle_dir, backend=b, verify_files=False)
            return f"{b} model loaded (policy {holder[b].policy.policy_type}, threshold "\
                   f"{holder[b].policy.decision_threshold:.4f})"

        if attempt(f"load ({backend})", load):
            attempt(f"probes ({backend})", lambda b=backend: check_probes(holder[b]))
    hf_dir = bundle_dir.parent / HF_DIR_NAME  # a run's export/hf beside export/bundle
    if hf_dir.is_dir():
        from streetvision.bundle.hf_export import check_hf_parity

        attempt("hugging face export (miner pipeline)", lambda: check_hf_parity(bundle_dir, hf_dir))
    return checks


def verify_hf_folder(hf_dir: Path, attempt, checks: list[Check]) -> list[Check]:
    """A Hugging Face export on its own (no bundle to compare with): the fields the miner environments read, then
    the miner's own pipeline call loading it and scoring an image into [0, 1]."""
    from PIL import Image

    from streetvision.bundle.hf_export import pipeline_scores
    from streetvision.bundle.hf_format import check_hf_folder

    if attempt("hugging face folder (miner environments)", lambda: check_hf_folder(hf_dir)):
        def score() -> str:
            value = float(pipeline_scores(hf_dir, [Image.new("RGB", (224, 224), (128, 128, 128))])[0])
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"the 'Roadwork' score of a grey image is {value}, outside [0, 1]")
            return f"the miner's pipeline call loads it; 'Roadwork' score of a grey 224 x 224 image {value:.4f}"

        attempt("load (miner pipeline)", score)
    return checks
