"""Every bad input gets a clear answer (issue 14). The corpus is generated here: config values, data folders,
files to predict and tampered bundles. Each case asserts the exit code, one error message that names the
offending thing, no traceback (``helpers.cli``), and that nothing valid was lost or overwritten.

Exit codes (README, "Guarantees"): 0 done; 1 the run or check failed (data, integrity, nothing scorable);
2 a config value or command-line argument is invalid, reported before any work."""

from __future__ import annotations

import csv
import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from streetvision import Predictor
from streetvision.data.synthetic import render_scene, write_dataset
from streetvision.errors import IntegrityError
from streetvision.io import read_json
from tests.data.corpus import build_corpus
from tests.robustness.helpers import cli, leftovers, rehash, snapshot

LONG = "x" * 300


@pytest.fixture(scope="module")
def world(tmp_path_factory, micro_bundle) -> Path:
    """A user's folder: a bundle, images good and bad, an earlier prediction file and an earlier run."""
    root = tmp_path_factory.mktemp("bad_inputs")
    shutil.copytree(micro_bundle, root / "bundle")
    images = root / "images"
    images.mkdir()
    for i in range(2):
        render_scene(i, seed=3).image.save(images / f"good_{i}.png")
    (images / "zero.jpg").write_bytes(b"")
    (images / "text.jpg").write_text("this is not an image\n")
    (images / "empty_folder").mkdir()
    (root / "preds.csv").write_text("path,probability,decision,score,accepted,error\nearlier.png,0.25,0,0.25,,\n")
    return root


@pytest.fixture
def outputs(tmp_path) -> Path:
    """This test's output root, holding an earlier run that no failure may touch."""
    earlier = tmp_path / "outputs" / "stage1_ultimate" / "runs" / "earlier"
    earlier.mkdir(parents=True)
    (earlier / "splits.json").write_text("{}\n")
    return tmp_path / "outputs"


@pytest.fixture
def unchanged(world, tmp_path, monkeypatch):
    """Run the test from an empty directory; afterwards, the world and that directory must be as they were."""
    monkeypatch.delenv("STREETVISION_DEBUG", raising=False)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    before = snapshot(world)
    yield
    assert snapshot(world) == before
    assert list(cwd.iterdir()) == []


# -- config ---------------------------------------------------------------------------------------------------

CONFIG_CASES = {  # id: (overrides, the name the message must contain)
    "negative epochs (row 1)": ({"training.epochs": "-1"}, "training.epochs"),
    "zero learning rates (row 2)": ({"training.lr": "0", "training.backbone_lr": "0"}, "training.lr"),
    "run_id escapes runs/ (row 3)": ({"run_id": "../../../escape"}, "run_id"),
    "experiment_name with a separator": ({"experiment_name": "a/b"}, "experiment_name"),
    "output_root not writable (row 4)": ({"output_root": "/proc/streetvision"}, "/proc/streetvision"),
    "output_root is a file (row 4)": ({"output_root": "{world}/preds.csv"}, "preds.csv"),
    "output_root too long (row 5)": ({"output_root": f"{{world}}/{LONG}"}, "File name too long"),
    "run_id too long (row 5)": ({"run_id": LONG}, "run_id"),
    "unknown key": ({"data.nosuchkey": "1"}, "data.nosuchkey"),
    "unknown phase": ({"pipeline.phases": "[nosuchphase]"}, "nosuchphase"),
    "wrong type": ({"data.synthetic.n": "abc"}, "data.synthetic.n"),
}


@pytest.mark.parametrize("case", CONFIG_CASES)
def test_bad_config_stops_before_any_work(case, world, unchanged, outputs, capfd):
    overrides, named = CONFIG_CASES[case]
    before = snapshot(outputs.parent)
    args = {"output_root": str(outputs), "run_id": "new", "pipeline.phases": "[splits]", **overrides}
    result = cli(capfd, "run", *(f"{k}={v.format(world=world)}" for k, v in args.items()))
    assert result.code == 2
    assert len(result.error_lines) == 1 and named in result.error_lines[0], result.err
    assert snapshot(outputs.parent) == before  # no run directory, nothing escaped into the parent folder
    assert sorted(p.name for p in outputs.rglob("*")) == ["earlier", "runs", "splits.json", "stage1_ultimate"]


# -- data -----------------------------------------------------------------------------------------------------

def folder_dataset(root: Path, n: int = 40) -> Path:
    write_dataset(root, n=n)
    (root / "manifest.csv").unlink()
    return root


def run_splits(capfd, outputs: Path, *overrides: str):
    return cli(capfd, "run", f"output_root={outputs}", "run_id=data", "pipeline.phases=[splits]", "data=folder",
               *overrides)


def test_same_image_under_both_labels_is_quarantined_with_its_reason_row_6(unchanged, outputs, tmp_path, capfd):
    data = folder_dataset(tmp_path / "data")
    original = sorted((data / "roadwork").glob("*.png"))[0]
    shutil.copy(original, data / "no_roadwork" / "copy_of_a_roadwork_scene.png")
    before = snapshot(data)
    result = run_splits(capfd, outputs, f"data.root={data}")
    assert result.code == 0, result.err
    assert "copy_of_a_roadwork_scene.png" in result.out and "conflicting labels" in result.out
    run_dir = outputs / "stage1_ultimate" / "runs" / "data"
    report = read_json(run_dir / "data" / "data_report.json")
    conflicted = {f"roadwork/{original.name}", "no_roadwork/copy_of_a_roadwork_scene.png"}
    assert report["label_conflicts"] == 2
    assert {q["path"] for q in report["quarantined"] if q["reason"].startswith("conflicting labels")} == conflicted
    assert not conflicted & {f["path"] for f in read_json(run_dir / "splits.json")["files"]}
    assert snapshot(data) == before


def write_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows([("path", "label"), *rows])
    return path


DATA_CASES = {  # id: (builder(tmp) -> overrides, name the message must contain)
    "too many undecodable files": (
        lambda tmp: (build_corpus(tmp / "d" / "roadwork"), build_corpus(tmp / "d" / "no_roadwork"),
                     [f"data.root={tmp / 'd'}"])[-1], "data.max_bad_fraction"),
    "missing class folder": (
        lambda tmp: (folder_dataset(tmp / "d"), shutil.rmtree(tmp / "d" / "no_roadwork"),
                     [f"data.root={tmp / 'd'}"])[-1], "no_roadwork"),
    # a data.root that does not exist is an argument error before any work (exit 2): test_integrity_round2 row 30
    "csv label not a class": (
        lambda tmp: ["data=csv", f"data.csv_path={write_csv(tmp / 'labels.csv', [('a.png', 'cones')])}"],
        "labels.csv:2"),
}


@pytest.mark.parametrize("case", DATA_CASES)
def test_unusable_data_stops_with_a_message_naming_it(case, unchanged, outputs, tmp_path, capfd):
    build, named = DATA_CASES[case]
    overrides = build(tmp_path)
    before = snapshot(tmp_path / "d"), snapshot(outputs / "stage1_ultimate" / "runs" / "earlier")
    result = run_splits(capfd, outputs, *overrides)
    assert result.code == 1
    assert len(result.error_lines) == 1 and named in result.error_lines[0], result.err
    assert (snapshot(tmp_path / "d"), snapshot(outputs / "stage1_ultimate" / "runs" / "earlier")) == before
    assert not (outputs / "stage1_ultimate" / "runs" / "data" / "splits.json").exists()


def test_too_many_bad_files_names_one_of_them(unchanged, outputs, tmp_path, capfd):
    build_corpus(tmp_path / "d" / "roadwork")
    build_corpus(tmp_path / "d" / "no_roadwork")
    result = run_splits(capfd, outputs, f"data.root={tmp_path / 'd'}")
    assert result.code == 1 and "e.g. no_roadwork/bomb.png" in result.error_lines[0], result.err


# -- predict --------------------------------------------------------------------------------------------------

def predict(capfd, world: Path, *args: str):
    return cli(capfd, "predict", world / "bundle", *args)


def rows_of(text: str) -> list[dict]:
    return list(csv.DictReader(text.splitlines()))


def test_batch_size_zero_is_an_argument_error_row_7(world, unchanged, capfd):
    result = predict(capfd, world, world / "images" / "good_0.png", "--batch-size", "0", "--out",
                     world / "preds.csv")
    assert result.code == 2 and "--batch-size" in result.err and result.out == ""


@pytest.mark.parametrize("out", ["/sys/preds.csv", "/proc/streetvision/preds.csv", "{world}/preds.csv/inside.csv",
                                 "{world}/images"])
def test_unwritable_out_fails_before_scoring_row_8(out, world, unchanged, capfd):
    target = out.format(world=world)
    result = predict(capfd, world, world / "images" / "good_0.png", "--out", target)
    assert result.code == 2
    assert len(result.error_lines) == 1 and f"--out '{target}'" in result.error_lines[0], result.err


def test_missing_and_unreadable_files_are_rows_in_input_order_rows_9_11(world, unchanged, capfd):
    images = world / "images"
    inputs = [images / "zero.jpg", images / "good_0.png", world / "nonexistent.jpg", images / "text.jpg",
              images / "empty_folder", images / "good_1.png"]
    result = predict(capfd, world, *inputs, "--batch-size", "4")
    assert result.code == 0, result.err
    rows = rows_of(result.out)
    assert [r["path"] for r in rows] == [str(p) for p in inputs]
    assert [bool(r["error"]) for r in rows] == [True, False, True, True, True, False]
    assert rows[2]["error"] == "does not exist" and rows[0]["error"] == "zero-byte file"
    assert all(0.0 <= float(r["score"]) <= 1.0 for r in rows if not r["error"])
    assert "nonexistent.jpg: does not exist" in result.err and "scored 2 image(s), 4 unreadable" in result.err


def test_nothing_scorable_exits_1_and_keeps_the_earlier_output_row_10(world, unchanged, capfd):
    images = world / "images"
    result = predict(capfd, world, images / "zero.jpg", images / "text.jpg", "--out", world / "preds.csv",
                     "--force")  # preds.csv is an earlier predict output: --force lets the command replace it
    assert result.code == 1 and result.out == ""
    assert len(result.error_lines) == 1 and "zero.jpg" in result.error_lines[0], result.err
    assert "nothing was written" in result.error_lines[0]


def test_missing_bundle_is_named(world, unchanged, capfd):
    result = cli(capfd, "predict", world / "no_bundle", world / "images" / "good_0.png")
    assert result.code == 1 and "no_bundle" in result.error_lines[0], result.err


# -- other commands -------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("args", "code", "named"), [
    (["data", "synth", "--out", "/proc/streetvision/synth", "--n", "2"], 1, "/proc/streetvision"),
    (["data", "synth", "--out", "{tmp}/synth", "--n", "0"], 2, "--n"),
    (["evaluate", "{world}/bundle", "--synthetic", "4", "--resamples", "-5", "--out", "{tmp}/e"], 2, "--resamples"),
])
def test_other_commands_answer_bad_arguments_and_file_system_errors_in_one_paragraph(args, code, named, world,
                                                                                      unchanged, tmp_path, capfd):
    result = cli(capfd, *(a.format(world=world, tmp=tmp_path) for a in args))
    assert result.code == code and named in result.err, result.err
    assert not (tmp_path / "synth").exists() and not (tmp_path / "e").exists()


# -- bundle ---------------------------------------------------------------------------------------------------

def edit_head_bias(bundle: Path) -> None:
    path = bundle / "model" / "head.safetensors"
    tensors = load_file(path)
    bias = next(k for k in tensors if k.endswith("bias"))
    tensors[bias][1] += 1.0  # one class only: a shift of both logits would leave every probability unchanged
    save_file(tensors, path)


def edit_backbone_weight(bundle: Path) -> None:
    path = bundle / "model" / "backbone" / "model.safetensors"
    tensors = load_file(path)
    tensors["layernorm.weight"] = tensors["layernorm.weight"] * 3
    save_file(tensors, path, metadata={"format": "pt"})


def edit_temperature(bundle: Path) -> None:
    path = bundle / "scrcparams.json"
    raw = json.loads(path.read_text())
    raw["scrc_params"]["temperature"] *= 3
    path.write_text(json.dumps(raw))


def edit_onnx_bias(bundle: Path) -> None:
    import onnx
    from onnx import numpy_helper

    model = onnx.load(bundle / "model.onnx")
    init = next(i for i in model.graph.initializer if list(i.dims) == [2])
    bias = numpy_helper.to_array(init).copy()
    bias[1] += 2.0
    init.CopyFrom(numpy_helper.from_array(bias, init.name))
    onnx.save(model, bundle / "model.onnx")


def edit_config_layers(n: int):
    def edit(bundle: Path) -> None:
        path = bundle / "model" / "backbone" / "config.json"
        raw = json.loads(path.read_text())
        raw["num_hidden_layers"] = n
        if n > 2:  # drop the stage bookkeeping too, so only the weights can disagree
            for key in ("out_features", "out_indices", "stage_names"):
                raw.pop(key, None)
        path.write_text(json.dumps(raw))
    return edit


def flip_byte(bundle: Path) -> None:
    path = bundle / "model" / "backbone" / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))


BUNDLE_CASES = {  # id: (edit, re-hash bundle.json afterwards, backend, file the message must name)
    "head bias (row 12)": (edit_head_bias, True, "torch", "model/head.safetensors"),
    "backbone weight (row 12)": (edit_backbone_weight, True, "torch", "model/backbone/model.safetensors"),
    "temperature (row 12)": (edit_temperature, True, "torch", "scrcparams.json"),
    "temperature, onnx (row 12)": (edit_temperature, True, "onnx", "scrcparams.json"),
    "onnx bias (row 12)": (edit_onnx_bias, True, "onnx", "model.onnx"),
    "pickle as head.safetensors (row 13)": (
        lambda b: (b / "model" / "head.safetensors").write_bytes(pickle.dumps({"w": 1}, protocol=0)), True,
        "torch", "model/head.safetensors"),
    "random bytes as model.onnx (row 14)": (
        lambda b: (b / "model.onnx").write_bytes(os.urandom(2048)), True, "onnx", "model.onnx"),
    "config.json with 1 layer (row 15)": (edit_config_layers(1), True, "torch", "model/backbone/config.json"),
    "config.json with 3 layers (row 15)": (edit_config_layers(3), True, "torch", "model/backbone/config.json"),
    "flipped byte, not re-hashed": (flip_byte, False, "torch", "model/backbone/model.safetensors"),
    "no bundle.json": (lambda b: (b / "bundle.json").unlink(), False, "torch", "bundle.json"),
}


@pytest.mark.parametrize("case", BUNDLE_CASES)
def test_tampered_bundle_is_refused_naming_the_file(case, world, unchanged, tmp_path, capfd):
    edit, re_hash, backend, named = BUNDLE_CASES[case]
    bundle = tmp_path / "bundle"
    shutil.copytree(world / "bundle", bundle)
    edit(bundle)
    if re_hash:
        rehash(bundle)
    before = snapshot(bundle)
    out = tmp_path / "preds.csv"
    result = cli(capfd, "predict", bundle, world / "images" / "good_0.png", "--backend", backend, "--out", out)
    assert result.code == 1
    assert len(result.error_lines) == 1 and named in result.error_lines[0], result.err
    assert not out.exists() and snapshot(bundle) == before
    with pytest.raises(IntegrityError, match=named):
        Predictor.from_bundle(bundle, backend=backend)
    verified = cli(capfd, "verify", bundle)
    assert verified.code == 1 and named in "\n".join(l for l in verified.out.splitlines() if "FAIL" in l)
    assert leftovers(bundle) == []
