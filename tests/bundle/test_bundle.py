"""The bundle a miner deploys: round trip, tamper cases, backends, awkward images, predict CLI."""

import json
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from streetvision import Predictor
from streetvision.bundle.verify import verify_bundle
from streetvision.data.synthetic import render_scene
from streetvision.errors import IntegrityError
from streetvision.io import sha256_file


@pytest.fixture
def bundle(micro_bundle):
    return micro_bundle


@pytest.fixture
def copy(bundle, tmp_path):
    dst = tmp_path / "copied_bundle"
    shutil.copytree(bundle, dst)
    return dst


def failures(path):
    return [c for c in verify_bundle(path) if not c.ok]


def reindex(bundle_dir, mutate):
    index = json.loads((bundle_dir / "bundle.json").read_text())
    mutate(index)
    (bundle_dir / "bundle.json").write_text(json.dumps(index))


def test_copied_bundle_verifies_and_predicts_the_same(bundle, copy):
    assert failures(copy) == []
    images = [render_scene(i, seed=77).image for i in range(6)]
    a = Predictor.from_bundle(bundle).predict_batch(images)
    b = Predictor.from_bundle(copy).predict_batch(images)
    assert a == b
    assert all(0.0 <= p.score <= 1.0 and (p.score > 0.5) == bool(p.decision) for p in a)
    assert isinstance(Predictor.from_bundle(copy)(images[0]), float)
    index = json.loads((copy / "bundle.json").read_text())
    assert all(not f["path"].startswith("/") and ".." not in f["path"] for f in index["files"])
    card = json.loads((copy / "model_card.json").read_text())
    assert set(card) == {"model_name", "description", "version", "submitted_by", "submission_time"}


def test_flipped_weight_byte_is_named(copy):
    weights = copy / "model" / "backbone" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    bad = failures(copy)
    assert bad[0].name == "checksums" and "model/backbone/model.safetensors" in bad[0].detail
    with pytest.raises(IntegrityError, match="model/backbone/model.safetensors"):
        Predictor.from_bundle(copy)


def test_edited_policy_value_is_named(copy):
    policy = copy / "scrcparams.json"
    raw = json.loads(policy.read_text())
    raw["scrc_params"]["decision_threshold"] = 0.01
    policy.write_text(json.dumps(raw))
    assert "scrcparams.json" in failures(copy)[0].detail


@pytest.mark.parametrize(("bad_path", "message"), [("../outside.json", "escapes the bundle"),
                                                   ("/etc/passwd", "absolute path")])
def test_escaping_paths_are_refused(copy, bad_path, message):
    reindex(copy, lambda ix: ix["files"].append({"path": bad_path, "sha256": "0" * 64, "size": 1}))
    detail = failures(copy)[0].detail
    assert message in detail and bad_path in detail


def test_pickle_payload_is_refused_even_when_listed_with_its_checksum(copy):
    payload = copy / "model" / "extra.bin"
    payload.write_bytes(pickle.dumps({"evil": 1}))
    entry = {"path": "model/extra.bin", "sha256": sha256_file(payload), "size": payload.stat().st_size}
    reindex(copy, lambda ix: ix["files"].append(entry))
    assert "model/extra.bin" in failures(copy)[0].detail
    disguised = copy / "model" / "extra.json"  # a pickle under an allowed name
    payload.rename(disguised)
    entry = {"path": "model/extra.json", "sha256": sha256_file(disguised), "size": disguised.stat().st_size}
    reindex(copy, lambda ix: ix["files"].__setitem__(-1, entry))
    assert "pickle" in failures(copy)[0].detail


def test_missing_file_is_named(copy):
    (copy / "preprocess.json").unlink()
    assert "preprocess.json" in failures(copy)[0].detail


def test_schema_error_names_the_field(copy):
    reindex(copy, lambda ix: ix.pop("policy"))
    assert "'policy'" in failures(copy)[0].detail


def test_onnx_and_torch_agree(copy):
    images = [render_scene(i, seed=5, domain="target").image for i in range(8)]
    torch_p = [p.probability for p in Predictor.from_bundle(copy).predict_batch(images)]
    onnx_p = [p.probability for p in Predictor.from_bundle(copy, backend="onnx").predict_batch(images)]
    assert np.max(np.abs(np.array(torch_p) - np.array(onnx_p))) <= 1e-4


def test_exported_onnx_graph_passes_the_onnx_checker_and_a_broken_one_is_refused(bundle, tmp_path):
    import onnx

    from streetvision.bundle.export import check_onnx_graph
    from streetvision.errors import ValidationFailure

    check_onnx_graph(bundle / "model.onnx")
    model = onnx.load(bundle / "model.onnx")
    model.graph.node[0].op_type = "NoSuchOp"
    onnx.save(model, tmp_path / "broken.onnx")
    with pytest.raises(ValidationFailure, match="does not pass onnx.checker .*NoSuchOp"):
        check_onnx_graph(tmp_path / "broken.onnx")


def test_predictor_handles_rgba_grayscale_and_very_large_images(copy):
    predictor = Predictor.from_bundle(copy)
    base = render_scene(1).image
    rgba = base.convert("RGBA")
    gray = base.convert("L")
    large = base.resize((6000, 4500))
    scores = [predictor(img) for img in (rgba, gray, large)]
    assert all(0.0 <= s <= 1.0 for s in scores)


def test_predict_cli_reports_a_corrupt_file_and_scores_the_rest(copy, tmp_path):
    folder = tmp_path / "imgs" / "nested"
    folder.mkdir(parents=True)
    for i in range(3):
        render_scene(i).image.save(folder / f"ok_{i}.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0garbage")
    out = tmp_path / "preds.jsonl"
    proc = subprocess.run([sys.executable, "-m", "streetvision.cli", "predict", str(copy), str(tmp_path / "imgs"),
                           "--format", "jsonl", "--out", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 4 and sum(r["error"] is None for r in rows) == 3
    assert "broken.jpg" in proc.stderr and "1 unreadable" in proc.stderr


def test_verify_cli_exit_codes(bundle, copy):
    ok = subprocess.run([sys.executable, "-m", "streetvision.cli", "verify", str(bundle)], capture_output=True,
                        text=True)
    assert ok.returncode == 0 and ok.stdout.count("PASS") >= 4
    (copy / "model_card.json").write_text("{}")
    bad = subprocess.run([sys.executable, "-m", "streetvision.cli", "verify", str(copy)], capture_output=True,
                         text=True)
    assert bad.returncode == 1 and "FAIL checksums" in bad.stdout and "model_card.json" in bad.stdout


def test_export_command_rebuilds_the_bundle(bundle):
    run_dir = bundle.parents[1]
    proc = subprocess.run([sys.executable, "-m", "streetvision.cli", "export", str(run_dir)], capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
    assert failures(bundle) == []


def test_a_file_path_and_the_opened_image_score_identically(bundle, tmp_path):
    path = tmp_path / "street.jpg"
    render_scene(4, size=224).image.resize((1200, 900)).save(path, quality=90)  # large enough for a reduced decode
    predictor = Predictor.from_bundle(bundle)
    from_path = predictor.predict_batch([path])[0]
    from_image = predictor.predict_batch([Image.open(path)])[0]
    assert from_path == from_image
    assert predictor(Image.open(path)) == predictor.scores([path])[0]


def test_bundle_directories_get_the_umask_mode_so_others_can_serve_it(bundle):
    from streetvision.io.atomic import default_dir_mode

    directories = [bundle, *(p for p in bundle.rglob("*") if p.is_dir())]
    assert {oct(d.stat().st_mode & 0o777) for d in directories} == {oct(default_dir_mode())}
    assert (bundle / "model" / "backbone") in directories


def test_the_predictors_outputs_follow_from_the_bundles_files_alone(bundle, micro_run):
    """Recompute each image's probability independently of the Predictor: pixels normalised by hand with the
    bundle's preprocess.json (square images at the model size, so crop and resize are the identity), logits
    from the bundle's ONNX file through onnxruntime and from its safetensors, softmax(logits / T) with T and
    the thresholds read from the policy file. The bundle's policy and weights are those of phase5 and phase1."""
    import onnxruntime as ort
    from safetensors.numpy import load_file

    from streetvision.metrics.score import validator_score
    from streetvision.models.classifier import load_classifier

    index = json.loads((bundle / "bundle.json").read_text())
    pre = json.loads((bundle / index["preprocess"]).read_text())
    scrc = json.loads((bundle / index["policy"]["policy_path"]).read_text())["scrc_params"]
    temperature, threshold = scrc["temperature"], scrc["decision_threshold"]
    accept_at = scrc["selective"]["confidence_threshold"]
    assert scrc == json.loads((micro_run / "phase5_scrc" / "scrcparams.json").read_text())["scrc_params"]
    for rel in ("head.safetensors", "backbone/model.safetensors"):
        shipped, trained = load_file(bundle / "model" / rel), load_file(micro_run / "phase1" / rel)
        assert shipped.keys() == trained.keys() and all(np.array_equal(shipped[k], trained[k]) for k in shipped)

    size = pre["size"]
    images = [render_scene(i, seed=31, size=size).image for i in range(12)]
    pixels = np.stack([((np.asarray(img.convert("RGB"), dtype=np.float32) / 255 - pre["mean"]) / pre["std"])
                       .transpose(2, 0, 1) for img in images]).astype(np.float32)
    onnx_logits = ort.InferenceSession(str(bundle / index["model"]["onnx"]), providers=["CPUExecutionProvider"]) \
        .run(["logits"], {"pixel_values": pixels})[0].astype(np.float64)
    import torch

    with torch.inference_mode():
        torch_logits = load_classifier(bundle / index["model"]["dir"])(torch.from_numpy(pixels)).double().numpy()
    assert np.abs(onnx_logits - torch_logits).max() < 1e-4

    def probability(logits):
        z = logits / temperature
        return 1.0 / (1.0 + np.exp(z[:, 0] - z[:, 1]))

    for backend, logits, tol in (("torch", torch_logits, 1e-6), ("onnx", onnx_logits, 1e-6)):
        predictions = Predictor.from_bundle(bundle, backend=backend).predict_batch(images)
        p = np.array([x.probability for x in predictions])
        assert np.abs(p - probability(logits)).max() < tol, backend
        decisions = p >= threshold
        assert [x.decision for x in predictions] == decisions.astype(int).tolist()
        assert np.allclose([x.score for x in predictions], validator_score(p, threshold))
        confidence = np.where(decisions, p, 1 - p)
        expected = [accept_at is not None and bool(c >= accept_at) for c in confidence]  # None: defer all
        assert [x.accepted for x in predictions] == expected
