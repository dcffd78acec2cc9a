"""Issue #26, integrity and wrong answers: what a command must refuse (exit 2 before any work, or an integrity
failure naming the file) instead of silently doing the wrong thing. Rows refer to the issue's tables."""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import pytest

from streetvision import Predictor
from streetvision.bundle.hf_export import _readme
from streetvision.bundle.verify import verify_bundle
from streetvision.errors import IntegrityError
from streetvision.io.manifest import StepManifest
from tests.robustness.helpers import cli, snapshot

ALICE = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"


@pytest.fixture
def run_copy(exportable_run, tmp_path) -> Path:
    """A copy of the exportable micro run (at output_root=tmp_path/o, run_id=run), where it may be edited."""
    return Path(shutil.copytree(exportable_run, tmp_path / "o" / "stage1_ultimate" / "runs" / "run"))


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch):
    monkeypatch.delenv("STREETVISION_DEBUG", raising=False)


def test_empty_phases_is_an_argument_error_and_a_no_op_run_keeps_config_yaml_row_7(run_copy, capfd):
    config = (run_copy / "config.yaml").read_bytes()
    root = run_copy.parents[2]
    empty = cli(capfd, "run", f"output_root={root}", "run_id=run", "pipeline.phases=[]", "seed=99")
    assert empty.code == 2 and "pipeline.phases is empty" in empty.err
    noop = cli(capfd, "run", f"output_root={root}", "run_id=run", "model=dinov2_micro", "model.pooling=cls_mean",
               "data.synthetic.n=120", "pipeline.phases=[phase2]", "hardware.num_workers=1")
    assert noop.code == 0 and "up to date" in noop.out, noop.err
    assert (run_copy / "config.yaml").read_bytes() == config


def test_export_refuses_a_config_that_did_not_train_the_model_row_7(run_copy, capfd):
    before = snapshot(run_copy)
    config = (run_copy / "config.yaml").read_bytes()
    result = cli(capfd, "export", run_copy, "model.pooling=max")
    assert result.code == 2 and "model.pooling" in result.err and "phase1" in result.err, result.err
    assert snapshot(run_copy) == before and (run_copy / "config.yaml").read_bytes() == config
    assert cli(capfd, "export", run_copy, "phase6.model_card.version=2.0.0").code == 0  # phase6's own keys: fine


def test_an_edited_hf_folder_is_refused_by_from_pretrained_verify_and_the_detector_row_8(run_copy, tmp_path,
                                                                                        capfd):
    from streetvision.miner import StreetVisionDetector

    hf = run_copy / "export" / "hf"
    assert verify_bundle(hf)[0].ok and "checksums" in verify_bundle(hf)[0].detail
    config = json.loads((hf / "config.json").read_text())
    config["id2label"], config["label2id"] = {"0": "Roadwork", "1": "None"}, {"Roadwork": 0, "None": 1}
    (hf / "config.json").write_text(json.dumps(config))
    with pytest.raises(IntegrityError, match="config.json' does not match its SHA-256"):
        Predictor.from_pretrained(hf)
    assert not verify_bundle(hf)[0].ok and not verify_bundle(run_copy / "export" / "bundle")[-1].ok
    (tmp_path / "sv.yaml").write_text(f"model: {hf}\n")
    with pytest.raises(IntegrityError, match="does not match its SHA-256"):
        StreetVisionDetector(config_name=str(tmp_path / "sv.yaml"))


def test_swapped_class_names_in_bundle_json_fail_verify_and_loading_row_9(run_copy):
    bundle = run_copy / "export" / "bundle"
    index = json.loads((bundle / "bundle.json").read_text())
    index["class_names"] = index["class_names"][::-1]
    (bundle / "bundle.json").write_text(json.dumps(index))
    failed = [c for c in verify_bundle(bundle) if not c.ok]
    assert failed and "class_names" in failed[0].detail
    with pytest.raises(IntegrityError, match="class_names"):
        Predictor.from_bundle(bundle)


@pytest.mark.parametrize("hotkey", [ALICE[:-1] + ("R" if ALICE[-1] != "R" else "S"), "1" * 46, ALICE[:-2]])
def test_a_hotkey_without_a_valid_ss58_checksum_is_refused_row_19(exportable_run, capfd, hotkey, tmp_path):
    result = cli(capfd, "publish", exportable_run, "--repo-id", "my-org/x", "--hotkey", hotkey, "--dry-run",
                 tmp_path / "tree")
    assert result.code == 2 and "SS58 checksum" in result.err and not (tmp_path / "tree").exists()


def test_a_model_name_that_is_not_one_line_of_text_is_refused_and_card_text_is_escaped(exportable_run, capfd,
                                                                                      tmp_path):
    result = cli(capfd, "publish", exportable_run, "--repo-id", "my-org/x", "--hotkey", ALICE, "--dry-run",
                 tmp_path / "tree", "--model-name", "x\n<script>alert(1)</script>")
    assert result.code == 2 and "--model-name" in result.err
    text = _readme({"model_name": "a <b>\n# title", "description": "<img src=x>|"}, {"k|": "<i>"})
    assert "<b>" not in text and "<img" not in text and "<i>" not in text and "\n# title" not in text


def test_exporting_a_non_exportable_run_is_refused_before_phase6_is_rebuilt_row_20(micro_run, tmp_path, capfd):
    run = Path(shutil.copytree(micro_run, tmp_path / "o" / "stage1_ultimate" / "runs" / "run"))
    before = snapshot(run)
    result = cli(capfd, "export", run, "--format", "hf", "--out", tmp_path / "hf")
    assert result.code == 2 and "model.pooling=family" in result.err
    assert snapshot(run) == before and not (tmp_path / "hf").exists()


def test_simulate_refuses_an_absurd_stream_length_row_23(micro_bundle, tmp_path, capfd):
    result = cli(capfd, "simulate", micro_bundle, "--folder", tmp_path, "--n", "1000000000")
    assert result.code == 2 and "at most 1,000,000" in result.err


def test_touching_a_photo_reruns_the_split_but_not_the_training_row_28(tmp_path, capfd):
    data = tmp_path / "photos"
    assert cli(capfd, "data", "synth", "--out", data, "--n", "24", "--seed", "3").code == 0
    args = ["run", f"output_root={tmp_path / 'o'}", "run_id=t", "model=dinov2_micro", "data=folder",
            f"data.root={data}", "training.epochs=1", "training.progress_bar=false", "pipeline.phases=[phase1]"]
    assert cli(capfd, *args).code == 0
    photo = next(data.rglob("*.png"))
    os.utime(photo, ns=(photo.stat().st_atime_ns, photo.stat().st_mtime_ns + 10**9))
    again = cli(capfd, *args)
    assert again.code == 0
    rows = {line.split("│")[1].strip(): line.split("│")[2].strip() for line in again.out.splitlines()
            if line.startswith("│") and line.split("│")[1].strip() in ("splits", "phase1")}
    assert rows == {"splits": "ran", "phase1": "up to date"}, again.out


def test_a_data_path_without_its_source_is_an_argument_error_row_29(tmp_path, capfd):
    result = cli(capfd, "run", f"output_root={tmp_path}", "run_id=x", f"data.root={tmp_path}")
    assert result.code == 2 and "data=folder" in result.err and not (tmp_path / "stage1_ultimate").exists()


def test_a_missing_data_root_is_refused_before_a_run_directory_exists_row_30(tmp_path, capfd):
    result = cli(capfd, "run", f"output_root={tmp_path}", "run_id=x", "data=folder", f"data.root={tmp_path / 'no'}")
    assert result.code == 2 and "data.root" in result.err and "does not exist" in result.err
    assert list(tmp_path.iterdir()) == []


def test_sigterm_during_training_stops_it_and_exits_143_row_31(tmp_path, capfd, monkeypatch):
    from streetvision.models.training import ClassifierModule

    def terminated(self, batch, batch_idx):
        os.kill(os.getpid(), signal.SIGTERM)  # what `kill PID` does to the command

    monkeypatch.setattr(ClassifierModule, "training_step", terminated)
    handler = signal.getsignal(signal.SIGTERM)
    result = cli(capfd, "run", f"output_root={tmp_path}", "run_id=c", "model=dinov2_micro", "data.synthetic.n=48",
                 "training.progress_bar=false", "pipeline.phases=[phase1]")
    assert result.code == 143 and "terminated (SIGTERM); committed phases are intact" in result.err
    assert signal.getsignal(signal.SIGTERM) is handler
    run = tmp_path / "stage1_ultimate" / "runs" / "c"
    assert StepManifest.load(run / "data" / "manifest.json").verify(run) == []
    assert not (run / "phase1" / "manifest.json").exists()
