"""No command destroys what it did not create: the output-folder rule (``streetvision.io.outputs``) for every
command that writes at a path the user gives, each case checked on a snapshot of the whole file tree (hidden files
included) before and after. Rows refer to issue #26's data-loss table."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from streetvision.io.outputs import OUTPUT_MARKER
from tests.robustness.helpers import cli

HOTKEY = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"


def tree(root: Path) -> dict[str, str]:
    """SHA-256 of every file and the target of every link under ``root``, hidden ones included."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_symlink():
            out[rel] = f"-> {p.readlink()}"
        elif p.is_file():
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
        else:
            out[rel] = "dir"
    return out


@pytest.fixture(scope="module")
def home(tmp_path_factory, exportable_run) -> Path:
    """A user's folder: two runs side by side, a folder with notes, a plain file, a dataset written by `data synth`
    and a folder of the user's own photos."""
    root = tmp_path_factory.mktemp("user_home")
    runs = root / "runs"
    shutil.copytree(exportable_run, runs / "r1")
    shutil.copytree(exportable_run / "export" / "bundle", root / "bundle")
    (runs / "r2").mkdir()
    (runs / "r2" / "notes.md").write_text("sibling run\n")
    (root / "notes").mkdir()
    (root / "notes" / "notes.txt").write_text("mine\n")
    (root / "file.txt").write_text("a plain file\n")
    (root / "photos" / "roadwork").mkdir(parents=True)
    shutil.copy(exportable_run / "export" / "bundle" / "probes" / "probe_00.png", root / "photos" / "roadwork")
    return root


@pytest.fixture
def refused(home, capfd, monkeypatch, tmp_path):
    """Run a command that must be refused with exit 2 before any work; afterwards every file is as it was."""
    monkeypatch.chdir(tmp_path)

    def run(*args, message: str = "") -> str:
        before = tree(home)
        result = cli(capfd, *args)
        assert result.code == 2, result.err
        assert len(result.error_lines) == 1 and message in result.err, result.err
        assert "Fix:" in result.err
        assert tree(home) == before
        return result.err

    return run


def test_export_into_its_own_run_directory_is_refused_row_1(home, refused):
    r1 = home / "runs" / "r1"
    refused("export", r1, "--format", "hf", "--out", r1, message="is inside the input")
    refused("export", r1, "--format", "hf", "--out", r1 / "export" / "hf2", message="is inside the input")


def test_export_into_the_folder_of_the_runs_is_refused_row_2(home, refused):
    refused("export", home / "runs" / "r1", "--format", "hf", "--out", home / "runs", message="holds the input")


def test_a_folder_holding_someone_elses_file_is_refused_row_3(home, refused):
    refused("export", home / "runs" / "r1", "--format", "hf", "--out", home / "notes", message="holds no StreetVision")
    refused("data", "synth", "--out", home / "notes", "--n", "2", "--force", message="holds no StreetVision")


@pytest.mark.parametrize("command", [
    ("export", "{home}/runs/r1", "--format", "hf", "--out", "{home}/file.txt"),
    ("evaluate", "{home}/bundle", "--synthetic", "4", "--out", "{home}/file.txt"),  # row 21
    ("data", "synth", "--out", "{home}/file.txt", "--n", "2"),  # row 21
    ("simulate", "{home}/bundle", "--folder", "{home}/photos", "--out", "{home}/file.txt"),
    ("publish", "{home}/runs/r1", "--repo-id", "my-org/x", "--hotkey", HOTKEY, "--dry-run", "{home}/file.txt"),
])
def test_an_existing_file_is_never_turned_into_a_folder_row_4(home, refused, command):
    refused(*(c.format(home=home) for c in command), message="is a file")


def test_compare_into_an_evaluation_of_its_input_is_refused_row_5(home, refused):
    a = home / "runs" / "r1"
    (a / "evaluation").mkdir(exist_ok=True)
    (a / "evaluation" / "report.html").write_text("<html>committed</html>")
    refused("compare", a, home / "runs" / "r2", "--out", a / "evaluation", message="is inside the input")


def test_data_synth_replaces_only_its_own_output_and_only_with_force_row_6(home, capfd, tmp_path, refused):
    dataset = home / "dataset"
    assert cli(capfd, "data", "synth", "--out", dataset, "--n", "6", "--seed", "1").code == 0
    refused("data", "synth", "--out", dataset, "--n", "2", "--seed", "5", message="--force")
    assert cli(capfd, "data", "synth", "--out", dataset, "--n", "2", "--seed", "5", "--force").code == 0
    rows = (dataset / "manifest.csv").read_text().splitlines()
    images = sorted(p.name for p in dataset.rglob("*.png"))
    assert len(rows) == 3 and len(images) == 2 and all("_5_" in name for name in images)  # nothing stale beside
    marker = json.loads((dataset / OUTPUT_MARKER).read_text())
    assert marker["command"] == "data synth" and marker["complete"] and "manifest.csv" in marker["files"]
    (dataset / "my_notes.txt").write_text("added by the user\n")
    refused("data", "synth", "--out", dataset, "--n", "2", "--force", message="did not write (my_notes.txt)")
    refused("evaluate", home / "bundle", "--synthetic", "4", "--out", dataset, "--force",
            message="holds the output of `streetvision data synth`")


def test_a_user_photo_folder_is_never_an_output_even_with_force(home, refused):
    refused("data", "synth", "--out", home / "photos", "--n", "2", "--force", message="holds no StreetVision")
    refused("evaluate", home / "bundle", "--folder", home / "photos", "--out", home / "photos" / "eval",
            message="is inside the input")


def test_publish_dry_run_and_predict_follow_the_rule(home, refused):
    r1 = home / "runs" / "r1"
    refused("publish", r1, "--repo-id", "my-org/x", "--hotkey", HOTKEY, "--dry-run", r1 / "tree",
            message="is inside the input")
    refused("predict", home / "bundle", home / "photos", "--out", home / "file.txt", message="not a previous output")
    refused("predict", home / "bundle", home / "photos", "--out", home / "photos" / "p.csv",
            message="is inside the input")


def test_export_writes_a_new_folder_and_replaces_it_only_with_force(home, capfd, refused):
    r1, out = home / "runs" / "r1", home / "my_model"
    assert cli(capfd, "export", r1, "--format", "hf", "--out", out).code == 0
    first = tree(out)
    assert json.loads((out / OUTPUT_MARKER).read_text())["command"] == "export --format hf"
    assert {"config.json", "model.safetensors", "preprocessor_config.json"} <= set(first)
    refused("export", r1, "--format", "hf", "--out", out, message="--force")
    assert cli(capfd, "export", r1, "--format", "hf", "--out", out, "--force").code == 0
    assert set(tree(out)) == set(first)


def test_export_with_out_but_not_hf_is_an_argument_error(home, refused):
    refused("export", home / "runs" / "r1", "--out", home / "elsewhere", message="--out applies to --format hf")
