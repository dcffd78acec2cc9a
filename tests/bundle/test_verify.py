"""``verify``'s flow on a tiny hand-made bundle with stand-in loaders: which checks run, in which order, what
stops the rest, and how each failure is reported. Fast, for the mutation run (test_bundle.py verifies real ones)."""

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from streetvision.bundle import verify as verify_mod
from streetvision.bundle.predictor import Predictor
from streetvision.bundle.verify import Check
from streetvision.errors import IntegrityError
from tests.bundle.test_schema import make_bundle


@pytest.fixture
def loads(monkeypatch):
    """Predictor.from_bundle and check_probes replaced by recorders; returns the calls and a failure switch."""
    calls, fail = [], {}
    bundle_dirs = []
    real_verify = verify_mod.verify_bundle

    def verify_and_note(path):
        bundle_dirs.append(Path(path))
        return real_verify(path)

    monkeypatch.setattr(verify_mod, "verify_bundle", verify_and_note)

    def from_bundle(path, backend="torch", verify_files=True, device="cpu"):
        calls.append(("load", backend, verify_files))
        assert Path(path) == bundle_dirs[-1]  # the bundle being verified
        if ("load", backend) in fail:
            raise fail[("load", backend)]
        return SimpleNamespace(backend=backend, policy=SimpleNamespace(policy_type="scrc", decision_threshold=0.61234))

    def check_probes(predictor):
        calls.append(("probes", predictor.backend))
        if ("probes", predictor.backend) in fail:
            raise fail[("probes", predictor.backend)]
        return f"8 probe images ({predictor.backend})"

    monkeypatch.setattr(Predictor, "from_bundle", staticmethod(from_bundle))
    monkeypatch.setattr(verify_mod, "check_probes", check_probes)
    return calls, fail


def verify_bundle(path):
    return verify_mod.verify_bundle(path)


def table(checks):
    return [(c.name, c.ok) for c in checks]


def test_a_good_bundle_passes_every_check_in_order_with_files_verified_once(tmp_path, loads):
    root, _ = make_bundle(tmp_path / "bundle")
    checks = verify_bundle(root)
    assert table(checks) == [("schema", True), ("checksums", True), ("load (torch)", True), ("probes (torch)", True)]
    assert checks[1].detail == "4 files match bundle.json"
    assert checks[2].detail == "torch model loaded (policy scrc, threshold 0.6123)"
    assert checks[3].detail == "8 probe images (torch)" and checks[0].detail == "bundle.json valid"
    assert loads[0] == [("load", "torch", False), ("probes", "torch")]  # checksums were the check above


def test_an_onnx_model_adds_its_own_load_and_probe_checks(tmp_path, loads):
    root, index = make_bundle(tmp_path / "bundle")
    index["model"]["onnx"] = "model.onnx"
    (root / "bundle.json").write_text(json.dumps(index))
    assert table(verify_bundle(root))[2:] == [("load (torch)", True), ("probes (torch)", True),
                                             ("load (onnx)", True), ("probes (onnx)", True)]


def test_a_schema_failure_stops_everything_and_a_checksum_failure_stops_loading(tmp_path, loads):
    root, index = make_bundle(tmp_path / "bundle")
    (root / "model" / "model.json").write_text("[]")
    checks = verify_bundle(root)
    assert table(checks) == [("schema", True), ("checksums", False)] and "model/model.json" in checks[1].detail
    index.pop("policy")
    (root / "bundle.json").write_text(json.dumps(index))
    checks = verify_bundle(root)
    assert table(checks) == [("schema", False)] and "'policy'" in checks[0].detail
    assert loads[0] == []


def test_a_backend_that_fails_to_load_skips_its_probes_but_not_the_other_backend(tmp_path, loads):
    calls, fail = loads
    root, index = make_bundle(tmp_path / "bundle")
    index["model"]["onnx"] = "model.onnx"
    (root / "bundle.json").write_text(json.dumps(index))
    fail[("load", "torch")] = IntegrityError("weights unreadable", "re-export")
    fail[("probes", "onnx")] = RuntimeError("graph broken")
    checks = verify_bundle(root)
    assert table(checks)[2:] == [("load (torch)", False), ("load (onnx)", True), ("probes (onnx)", False)]
    assert "weights unreadable" in checks[2].detail and "re-export" in checks[2].detail
    assert checks[4].detail == "RuntimeError: graph broken"  # any library's error is a failed check, named
    assert ("probes", "torch") not in calls


def test_a_hugging_face_export_beside_the_bundle_is_checked(tmp_path, loads, monkeypatch):
    from streetvision.bundle import hf_export

    root, _ = make_bundle(tmp_path / "export" / "bundle")
    seen = []
    monkeypatch.setattr(hf_export, "check_hf_parity", lambda b, h: seen.append((b, h)) or "parity ok")
    assert table(verify_bundle(root))[-1] == ("probes (torch)", True)  # no export/hf yet: no check
    (tmp_path / "export" / "hf").mkdir()
    checks = verify_bundle(root)
    assert checks[-1] == Check("hugging face export (miner pipeline)", True, "parity ok")
    assert seen == [(root, tmp_path / "export" / "hf")]
