"""Hostile inputs, round two (issue 26): each case gets the exit code the README promises (2: a bad argument or
config value, before any work; 1: bad data, a failed check, a file-system error), one paragraph ending in a
``Fix:``, no traceback (``helpers.cli``), and nothing valid changed."""

from __future__ import annotations

import csv
import errno
import json
import os
import pickle
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from streetvision import Predictor
from streetvision.config import load_config
from streetvision.data.decode import DecodeError, decode_image
from streetvision.data.synthetic import render_scene, write_dataset
from streetvision.errors import ConfigError, DataError, IntegrityError
from streetvision.io import read_json, sha256_file
from tests.robustness.helpers import cli, leftovers, snapshot

RUNS = Path("stage1_ultimate") / "runs"
MICRO = ("model=dinov2_micro", "data.synthetic.n=48", "training.batch_size=8", "training.epochs=1",
         "training.progress_bar=false", "evaluation.n_resamples=20", "evaluation.stream_steps=0")


@pytest.fixture
def quiet_env(monkeypatch, tmp_path):
    """No traceback switch inherited from the environment; run from an empty working directory."""
    monkeypatch.delenv("STREETVISION_DEBUG", raising=False)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return cwd


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, micro_bundle) -> Path:
    """A private copy of the micro bundle."""
    root = tmp_path_factory.mktemp("round2_bundle")
    shutil.copytree(micro_bundle, root / "bundle")
    return root / "bundle"


def one_paragraph(result, *named: str) -> str:
    """The one error paragraph: 'streetvision <kind>: ...' then 'Fix: ...', naming each of ``named``."""
    assert len(result.error_lines) == 1, result.err
    text = result.err[result.err.index("streetvision "):]
    assert "\nFix: " in text, result.err
    for name in named:
        assert name in text, (name, result.err)
    return text


def folder_dataset(root: Path, n: int = 40) -> Path:
    write_dataset(root, n=n)
    (root / "manifest.csv").unlink()
    return root


def run_splits(capfd, outputs: Path, *overrides: str):
    return cli(capfd, "run", f"output_root={outputs}", "run_id=data", "pipeline.phases=[splits]", *overrides)


def write_csv(path: Path, rows: list[tuple[str, str]], bom: bool = False) -> Path:
    with open(path, "w", newline="", encoding="utf-8-sig" if bom else "utf-8") as handle:
        csv.writer(handle).writerows([("path", "label"), *rows])
    return path


# -- case 10: a file name that is not valid UTF-8 ---------------------------------------------------------------

def test_a_file_name_that_is_not_utf8_is_scored_and_written_case_10(bundle, quiet_env, tmp_path, capfd):
    images = tmp_path / "images"
    images.mkdir()
    name = os.fsdecode(b"bad\xff.png")  # the str Python gives such a name: a lone surrogate for the 0xff byte
    render_scene(0, seed=3).image.save(images / name)
    shown = str(images / "bad\\xff.png")  # how every output writes it: valid UTF-8, the byte as \xff
    out = tmp_path / "f.csv"
    result = cli(capfd, "predict", bundle, images / name, "--out", out)
    assert result.code == 0, result.err
    rows = list(csv.DictReader(out.read_text(encoding="utf-8").splitlines()))
    assert [r["path"] for r in rows] == [shown] and not rows[0]["error"] and 0 <= float(rows[0]["score"]) <= 1
    folder = cli(capfd, "predict", bundle, images, "--format", "jsonl")
    assert folder.code == 0, folder.err
    assert [json.loads(line)["path"] for line in folder.out.splitlines()] == [shown]
    (images / os.fsdecode(b"zero\xfe.jpg")).write_bytes(b"")
    unreadable = cli(capfd, "predict", bundle, images)
    assert unreadable.code == 0 and f"{images}/zero\\xfe.jpg: zero-byte file" in unreadable.err, unreadable.err


def test_a_dataset_file_name_that_is_not_utf8_is_trained_on_and_evaluated_case_10(bundle, quiet_env, tmp_path,
                                                                                  capfd):
    data = folder_dataset(tmp_path / "d", n=24)
    odd = data / "roadwork" / os.fsdecode(b"caf\xe9.png")  # a Latin-1 name
    render_scene(5, seed=3).image.save(odd)
    shown = "roadwork/caf\\xe9.png"
    result = cli(capfd, "run", f"output_root={tmp_path / 'out'}", "run_id=r", *MICRO, "data=folder",
                 f"data.root={data}", "pipeline.phases=[phase1]")
    assert result.code == 0, result.err
    phase1 = tmp_path / "out" / RUNS / "r" / "phase1" / "logits"
    ids = [row["sample_id"] for split in ("val_select", "val_calib", "test")
           for row in csv.DictReader((phase1 / f"{split}.csv").read_text(encoding="utf-8").splitlines())]
    splits = read_json(tmp_path / "out" / RUNS / "r" / "splits.json")["files"]
    assert (shown in ids) == (next(f["split"] for f in splits if f["path"] == f"roadwork/{odd.name}") != "train")
    out = tmp_path / "eval"
    evaluated = cli(capfd, "evaluate", bundle, "--folder", data, "--out", out, "--resamples", "20")
    assert evaluated.code == 0, evaluated.err
    rows = csv.DictReader((out / "predictions.csv").read_text(encoding="utf-8").splitlines())
    assert shown in {r["sample_id"] for r in rows}


# -- case 11: a split fraction of 0 that a phase reads ----------------------------------------------------------

@pytest.mark.parametrize(("overrides", "key"), [
    (["data.splits.train=0.7", "data.splits.val_calib=0"], "data.splits.val_calib"),
    (["data.splits.train=0.75", "data.splits.test=0"], "data.splits.test"),
    (["data.splits.train=0.75", "data.splits.val_select=0"], "data.splits.val_select"),
    (["data.splits.train=0", "data.splits.val_select=0.75"], "data.splits.train"),
])
def test_a_zero_split_fraction_that_a_phase_reads_stops_before_work_case_11(overrides, key, quiet_env, tmp_path,
                                                                          capfd):
    result = cli(capfd, "run", f"output_root={tmp_path / 'out'}", "run_id=r", *MICRO, *overrides)
    assert result.code == 2
    text = one_paragraph(result, key, "> 0")
    assert "to 0" not in text  # never suggests the value that fails
    assert not (tmp_path / "out").exists()


def test_a_zero_fraction_no_requested_phase_reads_stays_valid_case_11():
    # the benchmark's fold-runs: no phase5 and no evaluation, phase1 scores val_select only
    cfg = load_config(["data.splits.train=0.8", "data.splits.val_select=0.2", "data.splits.val_calib=0",
                       "data.splits.test=0", "pipeline.phases=[phase1,phase2,phase6]",
                       "phase1.score_splits=[val_select]"])
    assert float(cfg.data.splits.test) == 0.0


def test_too_few_images_for_the_splits_suggests_no_zero_fraction_case_11():
    from streetvision.data.splits import assign_splits

    fractions = {"train": 0.6, "val_select": 0.15, "val_calib": 0.1, "test": 0.15}
    with pytest.raises(DataError) as exc:
        assign_splits([0] * 9 + [1] * 3, list(range(12)), fractions, 0, ["no_roadwork", "roadwork"])
    assert "to 0" not in exc.value.fix and "roadwork" in exc.value.fix


# -- case 12: CSV rows pointing outside the CSV's folder ---------------------------------------------------------

def test_csv_rows_outside_the_csv_folder_are_used_case_12(quiet_env, tmp_path, capfd):
    rows = write_dataset(tmp_path / "ds", n=40)
    (tmp_path / "manifests").mkdir()
    manifest = write_csv(tmp_path / "manifests" / "labels.csv",
                         [(f"../ds/{p.relative_to(tmp_path / 'ds').as_posix()}", str(y)) for p, y in rows])
    before = snapshot(tmp_path / "ds")
    result = run_splits(capfd, tmp_path / "out", "data=csv", f"data.csv_path={manifest}")
    assert result.code == 0, result.err
    from streetvision.data.splits import load_splits

    splits = load_splits(tmp_path / "out" / RUNS / "data" / "splits.json")
    assert len(splits.files) == 40 and all(f["path"].startswith("../ds/") for f in splits.files)
    assert {p.resolve() for s in ("train", "test") for p in splits.paths(s)} <= {p.resolve() for p, _ in rows}
    relative = os.path.relpath(manifest, quiet_env)  # data.csv_path relative to the working directory
    again = run_splits(capfd, tmp_path / "out", "data=csv", f"data.csv_path={relative}", "run_id=relative")
    assert again.code == 0, again.err
    assert load_splits(tmp_path / "out" / RUNS / "relative" / "splits.json").files == splits.files
    assert snapshot(tmp_path / "ds") == before


# -- case 13: data=hf given a file it cannot read ----------------------------------------------------------------

def test_data_hf_with_a_csv_file_names_the_path_and_what_it_reads_case_13(quiet_env, tmp_path, capfd):
    pytest.importorskip("datasets")
    some = write_csv(tmp_path / "some.csv", [("a.png", "roadwork")])
    result = run_splits(capfd, tmp_path / "out", "data=hf", f"data.hf.path={some}")
    assert result.code == 1  # found by the splits phase, like a data.root that is no folder
    one_paragraph(result, str(some), "parquet", "data=csv")
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1 this is not a parquet file")
    result = run_splits(capfd, tmp_path / "out", "data=hf", f"data.hf.path={broken}", "run_id=data2")
    assert result.code == 1
    one_paragraph(result, str(broken))


# -- case 14: a bundle.json nested 200,000 deep ------------------------------------------------------------------

def test_a_deeply_nested_bundle_json_is_an_integrity_error_case_14(bundle, quiet_env, tmp_path, capfd):
    deep = tmp_path / "bundle"
    shutil.copytree(bundle, deep)
    (deep / "bundle.json").write_text("[" * 200_000)
    image = tmp_path / "x.png"
    render_scene(1, seed=3).image.save(image)
    result = cli(capfd, "predict", deep, image)
    assert result.code == 1
    one_paragraph(result, "bundle.json")
    with pytest.raises(IntegrityError, match="bundle.json") as exc:
        Predictor.from_bundle(deep)
    assert exc.value.fix
    verified = cli(capfd, "verify", deep)
    assert verified.code == 1
    fail = [line for line in verified.out.splitlines() if line.startswith("FAIL")]
    assert len(fail) == 1 and "bundle.json" in fail[0] and "Fix:" in fail[0], verified.out


# -- case 15: an epoch checkpoint whose state.pt is a pickle -----------------------------------------------------

def test_a_pickled_checkpoint_state_is_refused_and_the_phase_resumes_earlier_case_15(make_cfg, monkeypatch,
                                                                                     tmp_path):
    from streetvision.models.checkpoints import META_FILE, STATE_FILE, verify_checkpoint
    from streetvision.pipeline.artifacts import ArtifactSchema
    from tests.pipeline.phases.test_phase1 import RESUME, Interrupt, interrupt_after_epoch, run

    interrupt_after_epoch(monkeypatch, 1)
    with pytest.raises(Interrupt):
        run(make_cfg, *RESUME, run_id="cut")
    monkeypatch.undo()
    checkpoints = ArtifactSchema.from_config(make_cfg(run_id="cut")).checkpoint_dir("phase1")
    assert sorted(p.name for p in checkpoints.iterdir()) == ["epoch-0000", "epoch-0001"]
    marker = tmp_path / "unpickled"

    class Payload:
        def __reduce__(self):
            return os.mkdir, (str(marker),)

    latest = checkpoints / "epoch-0001"
    (latest / STATE_FILE).write_bytes(pickle.dumps({"epoch": 1, "payload": Payload()}))
    meta = json.loads((latest / META_FILE).read_text())
    meta["files"][STATE_FILE] = sha256_file(latest / STATE_FILE)  # re-hashed: only a deeper check can refuse it
    (latest / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(IntegrityError, match=STATE_FILE) as exc:
        verify_checkpoint(latest)
    assert "weights_only=False" not in str(exc.value) and not marker.exists()
    _, art, _ = run(make_cfg, *RESUME, run_id="cut")  # no pipeline.force needed
    assert json.loads(art.metrics_json("phase1").read_text())["resumed_from"] == "epoch-0000"
    assert not marker.exists()


# -- case 16: the disk fills while an epoch checkpoint is written ------------------------------------------------

def fsync_fails_under(monkeypatch, fragment: str) -> None:
    """``os.fsync`` reports a full disk for files whose path contains ``fragment`` (as a full disk does)."""
    real = os.fsync

    def fsync(fd):
        if fragment in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


def test_a_full_disk_while_a_checkpoint_is_written_names_the_path_case_16(quiet_env, tmp_path, monkeypatch, capfd):
    from streetvision.models.checkpoints import verify_checkpoint

    args = ["run", f"output_root={tmp_path / 'out'}", "run_id=r", *MICRO, "training.epochs=3",
            "pipeline.phases=[phase1]"]
    real_fsync = os.fsync
    fsync_fails_under(monkeypatch, "/checkpoints/.epoch-0001")
    result = cli(capfd, *args)
    run_dir = tmp_path / "out" / RUNS / "r"
    checkpoints = run_dir / "phase1" / "checkpoints"
    assert result.code == 1
    text = one_paragraph(result, str(checkpoints / "epoch-0001"), "No space left on device", "free")
    assert "::" not in text
    assert sorted(p.name for p in checkpoints.iterdir()) == ["epoch-0000"]  # the one before is intact
    verify_checkpoint(checkpoints / "epoch-0000")
    assert leftovers(run_dir) == [] and (run_dir / "data" / "manifest.json").is_file()
    monkeypatch.setattr(os, "fsync", real_fsync)
    again = cli(capfd, *args)  # space freed: the rerun resumes from the intact checkpoint
    assert again.code == 0, again.err
    assert read_json(run_dir / "phase1" / "metrics.json")["resumed_from"] == "epoch-0000"


def test_a_file_system_error_is_one_paragraph_with_a_fix_main_a_b(quiet_env, monkeypatch, capfd):
    import streetvision.cli as cli_module

    def no_space(args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(cli_module, "cmd_config", no_space)
    result = cli(capfd, "config")
    assert result.code == 1
    text = one_paragraph(result, "No space left on device", "free")
    assert "::" not in text

    def no_space_at(args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/data/run/x.json")

    monkeypatch.setattr(cli_module, "cmd_config", no_space_at)
    text = one_paragraph(cli(capfd, "config"), "'/data/run/x.json'", "No space left on device", "free")
    assert "::" not in text


# -- cases 17, 18, 22: config values found bad before any work ---------------------------------------------------

@pytest.mark.parametrize(("override", "named"), [
    ("training.lr=${oc.env:NOPE}", ["training.lr", "${oc.env:NOPE}"]),  # case 17
    ("training.lr=${nope.key}", ["training.lr", "${nope.key}"]),
    ("seed=99999999999999999999999", ["seed", "4294967295"]),  # case 18
    ("data.class_names=[roadwork,roadwork]", ["data.class_names", "roadwork"]),  # case 22
])
@pytest.mark.parametrize("command", ["run", "config"])
def test_bad_config_values_stop_before_any_work_cases_17_18_22(override, named, command, quiet_env, tmp_path,
                                                                capfd):
    result = cli(capfd, command, f"output_root={tmp_path / 'out'}", "run_id=r", override)
    assert result.code == 2
    one_paragraph(result, *named)
    assert not (tmp_path / "out").exists() and result.out == ""


def test_the_largest_seed_seed_everything_takes_is_valid_case_18():
    assert load_config(["seed=4294967295"]).seed == 2**32 - 1


# -- case 24: verify given a file ---------------------------------------------------------------------------------

def test_verify_and_predict_given_a_file_say_so_with_a_fix_case_24(quiet_env, tmp_path, capfd):
    file = tmp_path / "model.bin"
    file.write_bytes(b"not a bundle")
    result = cli(capfd, "verify", file)
    assert result.code == 1
    fail = [line for line in result.out.splitlines() if line.startswith("FAIL")]
    assert len(fail) == 1 and str(file) in fail[0] and "not a directory" in fail[0] and "Fix:" in fail[0], result.out
    image = tmp_path / "x.png"
    render_scene(1, seed=3).image.save(image)
    predicted = cli(capfd, "predict", file, image)
    assert predicted.code == 1
    one_paragraph(predicted, str(file), "not a directory")


# -- case 25, (e): CSV manifests as spreadsheets write them --------------------------------------------------------

def csv_source(tmp_path: Path, repeat: int = 0, bom: bool = False) -> tuple[Path, list[tuple[str, str]]]:
    """40 images and a manifest listing them (relative paths), its first ``repeat`` rows listed twice."""
    rows = write_dataset(tmp_path / "imgs", n=40)
    listed = [(p.relative_to(tmp_path).as_posix(), str(y)) for p, y in rows]
    return write_csv(tmp_path / "labels.csv", listed + listed[:repeat], bom=bom), listed


def test_a_csv_with_a_utf8_byte_order_mark_is_read_case_25(quiet_env, tmp_path, capfd):
    manifest, _ = csv_source(tmp_path, bom=True)
    assert manifest.read_bytes().startswith(b"\xef\xbb\xbfpath,label")
    result = run_splits(capfd, tmp_path / "out", "data=csv", f"data.csv_path={manifest}")
    assert result.code == 0, result.err
    assert len(read_json(tmp_path / "out" / RUNS / "data" / "splits.json")["files"]) == 40


def test_duplicate_csv_rows_are_counted_once_and_reported_e(quiet_env, tmp_path, capfd):
    manifest, listed = csv_source(tmp_path, repeat=3)
    result = run_splits(capfd, tmp_path / "out", "data=csv", f"data.csv_path={manifest}")
    assert result.code == 0, result.err
    run_dir = tmp_path / "out" / RUNS / "data"
    files = read_json(run_dir / "splits.json")["files"]
    assert len(files) == 40 and len({f["path"] for f in files}) == 40
    report = read_json(run_dir / "data" / "data_report.json")
    assert sum(report["found"].values()) == 40
    duplicates = [s for s in report["skipped"] if "duplicate" in s["reason"]]
    assert [s["path"] for s in duplicates] == [p for p, _ in listed[:3]]
    assert "line 42 repeats line 2" in duplicates[0]["reason"]
    assert "duplicate row" in result.out


# -- cases 26, 27: a FIFO and a symlink loop among images ---------------------------------------------------------

@pytest.fixture
def odd_folder(tmp_path) -> Path:
    folder = tmp_path / "odd"
    folder.mkdir()
    render_scene(2, seed=3).image.save(folder / "good.png")
    os.mkfifo(folder / "fifo.png")
    (folder / "loop.png").symlink_to("loop.png")
    return folder


def test_a_fifo_and_a_symlink_loop_are_named_as_such_cases_26_27(bundle, odd_folder, quiet_env, capfd):
    done = threading.Event()
    results = []

    def predict():
        results.append(cli(capfd, "predict", bundle, odd_folder))
        results.append(cli(capfd, "predict", bundle, odd_folder / "fifo.png", odd_folder / "loop.png",
                           odd_folder / "good.png"))
        done.set()

    worker = threading.Thread(target=predict, daemon=True)
    worker.start()
    if not done.wait(120):  # opening a FIFO without a writer would block forever
        with open(odd_folder / "fifo.png", "wb"):
            pass
        pytest.fail("predict blocked on the FIFO")
    for result in results:
        assert result.code == 0, result.err
        rows = {Path(r["path"]).name: r["error"] for r in csv.DictReader(result.out.splitlines())}
        assert rows == {"fifo.png": "not a regular file (a FIFO)", "good.png": "",
                        "loop.png": "symbolic link loop: the link cannot be resolved"}, rows


def test_a_fifo_and_a_symlink_loop_in_a_dataset_are_quarantined_with_the_reason_cases_26_27(odd_folder):
    with pytest.raises(DecodeError, match="not a regular file"):
        decode_image(odd_folder / "fifo.png")
    with pytest.raises(DecodeError, match="symbolic link loop"):
        decode_image(odd_folder / "loop.png")
    (odd_folder / "dangling.png").symlink_to("nowhere.png")
    with pytest.raises(DecodeError, match="broken symbolic link"):
        decode_image(odd_folder / "dangling.png")


# -- (c): the miner detector given a numpy array -----------------------------------------------------------------

def test_the_detector_takes_a_numpy_image_and_names_what_it_takes_c(bundle, tmp_path):
    from streetvision.miner import StreetVisionDetector

    config = tmp_path / "streetvision.yaml"
    config.write_text(yaml.safe_dump({"model": str(bundle)}))
    detector = StreetVisionDetector(config_name=str(config))
    image = render_scene(4, seed=3).image.convert("RGB")
    array = np.asarray(image)
    assert detector(array) == detector(image)
    for bad in (array.astype(np.float32), array[..., 0], None):
        with pytest.raises(ConfigError, match="PIL image or an HxWx3 uint8") as exc:
            detector(bad)
        assert exc.value.fix


# -- (d): a class folder beyond data.class_names -----------------------------------------------------------------

def test_a_class_folder_beyond_the_class_names_is_reported_d(quiet_env, tmp_path, capfd):
    data = folder_dataset(tmp_path / "d")
    (data / "cats").mkdir()
    for i in range(2):
        render_scene(10 + i, seed=3).image.save(data / "cats" / f"cat_{i}.png")
    result = run_splits(capfd, tmp_path / "out", "data=folder", f"data.root={data}")
    assert result.code == 0, result.err
    assert "cats" in result.out and "data.class_names" in result.out
    report = read_json(tmp_path / "out" / RUNS / "data" / "data" / "data_report.json")
    ignored = [s for s in report["skipped"] if s["path"] == "cats/"]
    assert len(ignored) == 1 and "2 image file(s)" in ignored[0]["reason"]


# -- (f): simulate with a class that has no images ---------------------------------------------------------------

@pytest.mark.parametrize(("how", "named", "in_fix"), [("empty folder", "class 0", "sub-folder"),
                                                      ("no folder", "no_roadwork", "no_roadwork")])
def test_simulate_with_a_class_without_images_is_a_data_error_it_can_fix_f(how, named, in_fix, bundle, quiet_env,
                                                                           tmp_path, capfd):
    folder = tmp_path / "folder"
    (folder / "roadwork").mkdir(parents=True)
    for i in range(2):
        render_scene(i, seed=3).image.save(folder / "roadwork" / f"r{i}.png")
    if how == "empty folder":
        (folder / "no_roadwork").mkdir()
    result = cli(capfd, "simulate", bundle, "--folder", folder, "--n", "10")
    assert result.code == 1
    fix = one_paragraph(result, named).split("\nFix: ", 1)[1]
    assert in_fix in fix and not fix.startswith("set data.class_names"), fix
