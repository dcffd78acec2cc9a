"""``streetvision verify BUNDLE``: one line per check, non-zero exit on any failure."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from streetvision.bundle.probes import check_probes
from streetvision.bundle.schema import check_files, load_index
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
