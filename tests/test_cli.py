"""The CLI's contract: bad input gives one clear paragraph and a non-zero exit, never a traceback."""

import subprocess
import sys

import pytest


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "streetvision.cli", *args], capture_output=True, text=True,
                          cwd=cwd)


@pytest.mark.parametrize(("args", "expected"), [
    (["run", "pipeline.phases=[nosuchphase]"], "Unknown phase(s) in pipeline.phases: nosuchphase. Valid phases:"),
    (["run", "data.nosuchkey=1"], "Unknown config key 'data.nosuchkey'. Valid keys under 'data':"),
    (["run", "data.synthetic.n=abc"], "Invalid value 'abc' for 'data.synthetic.n': expected Integer"),
    (["run", "data=nosuch"], "Unknown option 'nosuch' for config group 'data'. Valid choices: csv, folder"),
    (["run", "data.source=ftp"], "Invalid value 'ftp' for 'data.source'. Valid choices: folder, csv, hf"),
    (["run", "deploy.prior_roadwork=1.5"], "Invalid value 1.5 for 'deploy.prior_roadwork': it must be in (0, 1)"),
    (["run", "training.augment_level_probs=[1,1,0,0]"], "it must be 4 non-negative probabilities summing to 1"),
    (["run", "hardware.precision=fp8"], "Invalid value 'fp8' for 'hardware.precision'. Valid choices: 32, bf16"),
    (["run", "hardware.accelerator=cpu", "hardware.precision=16-mixed"], "16-mixed needs a CUDA GPU"),
])
def test_bad_config_is_one_paragraph_without_traceback(args, expected, tmp_path):
    proc = cli(*args, cwd=tmp_path)
    assert proc.returncode == 2
    assert expected in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not (tmp_path / "outputs").exists()  # failed before any work


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
def test_gpus_on_a_cpu_machine_are_one_paragraph_before_any_work(tmp_path):
    proc = cli("run", "hardware.num_gpus=2", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "config error: hardware.num_gpus=2 asks for 2 GPU(s) per node, but this machine has no CUDA GPU" in (
        " ".join(proc.stderr.split()))
    assert "Traceback" not in proc.stderr + proc.stdout and "Misconfiguration" not in proc.stderr
    assert not (tmp_path / "outputs").exists()


def test_debug_flag_shows_traceback(tmp_path):
    proc = cli("--debug", "run", "data.nosuchkey=1", cwd=tmp_path)
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_seed_entry_point_is_an_alias_of_run(tmp_path):
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "train_cli_v2.py"
    proc = subprocess.run([sys.executable, str(script), "pipeline.phases=[nosuchphase]"], capture_output=True,
                          text=True, cwd=tmp_path)
    assert proc.returncode == 2 and "Unknown phase(s)" in proc.stderr


NOISE = ("GPU available", "TPU available", "Tip:", "litlogger", "Warning", "warnings.warn", "Trainer.fit` stopped",
         "Loading weights")
TINY_RUN = ("model=dinov2_micro", "data.synthetic.n=48", "data.unlabeled.n=32", "phase4.epochs=1", "training.epochs=1",
            "run_id=q")


def test_a_run_prints_no_third_party_noise(tmp_path):  # ~20 s: ExPLoRA, training and an ONNX export
    proc = cli("run", *TINY_RUN, "pipeline.phases=[phase4,phase1,phase2,phase6]", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    printed = proc.stdout + proc.stderr
    assert [n for n in NOISE if n in printed] == [], printed[-3000:]
    assert (tmp_path / "outputs" / "stage1_ultimate" / "runs" / "q" / "export" / "bundle" / "model.onnx").is_file()


def test_verbose_restores_third_party_output(tmp_path):
    proc = cli("--verbose", "run", *TINY_RUN, "pipeline.phases=[phase1]", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "GPU available" in proc.stdout + proc.stderr


def test_every_option_of_every_command_has_help_and_the_command_list_appears_once():
    import argparse

    from streetvision.cli import build_parser

    parser = build_parser()
    missing = []

    def walk(p: argparse.ArgumentParser, path: str) -> None:
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    walk(child, f"{path} {name}")
            elif not action.help:
                missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")

    walk(parser, "streetvision")
    assert not missing, "options without help: " + ", ".join(missing)
    text = parser.format_help()
    assert text.count("rerun phase 6") == 1 and "verify" in text
