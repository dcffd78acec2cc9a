"""Progress bars (issue 16): :func:`streetvision.console.progress` shows a transient bar only on an interactive
console, and the splits, evaluation and predict loops report through it without changing what they compute."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from streetvision.console import progress


@pytest.fixture
def terminal(monkeypatch):
    """A console that believes it is an interactive terminal; returns (console, what it printed so far)."""
    monkeypatch.setenv("TERM", "xterm-256color")  # TERM=dumb would make it non-interactive
    monkeypatch.delenv("TTY_INTERACTIVE", raising=False)
    buf = io.StringIO()
    return Console(file=buf, force_terminal=True, width=120), buf.getvalue


def test_the_bar_shows_its_description_and_total_and_completes(terminal):
    console, printed = terminal
    with progress("counting things", 5, console) as advance:
        for _ in range(4):
            advance()
        advance(1)
    out = printed()
    assert "counting things" in out and "0/5" in out and "5/5" in out
    assert out.endswith("\x1b[2K")  # transient: the last thing written erases the bar line
    assert "\x1b[?25h" in out  # the cursor is shown again


def test_the_bar_stops_when_the_loop_raises(terminal):
    console, printed = terminal
    with pytest.raises(KeyError), progress("failing", 3, console) as advance:
        advance()
        raise KeyError("boom")
    assert "1/3" in printed() and "\x1b[?25h" in printed()
    with progress("the next bar", 1, console) as advance:  # would be a hidden nested display if one were left
        advance()
    assert "the next bar" in printed()


@pytest.mark.parametrize("make", [lambda f: Console(file=f, quiet=True, force_terminal=True),
                                  lambda f: Console(file=f)],  # a file: not a terminal
                         ids=["quiet", "not a terminal"])
def test_no_bar_on_a_quiet_console_a_file_or_no_console(make, monkeypatch):
    monkeypatch.setenv("TERM", "xterm-256color")
    buf = io.StringIO()
    for console in (make(buf), None):
        with progress("hidden", 3, console) as advance:
            advance()
            advance(2)
    assert buf.getvalue() == ""


def test_scan_and_the_splits_phase_show_the_bar_and_write_the_same_splits(terminal, make_cfg, tmp_path):
    from streetvision.data.sources import list_folder
    from streetvision.data.splits import scan
    from streetvision.data.synthetic import CLASS_DIRS, write_dataset
    from streetvision.io import read_json
    from streetvision.pipeline.artifacts import ArtifactSchema
    from streetvision.pipeline.runner import run_pipeline

    console, printed = terminal
    root = tmp_path / "images"
    write_dataset(root, n=6, seed=1, size=64)
    (root / "roadwork" / "empty.png").write_bytes(b"")
    samples = list_folder(root, list(CLASS_DIRS)).samples
    assert scan(samples, root, 10**8, console) == scan(samples, root, 10**8)
    assert "decoding and hashing images" in printed() and f"{len(samples)}/{len(samples)}" in printed()

    before = len(printed())
    splits = []
    for run_id, shown in (("quiet", Console(quiet=True)), ("bar", console)):
        cfg = make_cfg("pipeline.phases=[splits]", "data.synthetic.n=60", run_id=run_id)
        run_pipeline(cfg, shown)
        splits.append(read_json(ArtifactSchema.from_config(cfg).splits_json))
    assert "decoding and hashing images" in printed()[before:] and "60/60" in printed()[before:]
    assert splits[0] == splits[1]


def test_evaluation_loops_show_their_bars_and_score_the_same(terminal, micro_bundle, tmp_path):
    from streetvision.bundle.predictor import Predictor
    from streetvision.data.synthetic import write_dataset
    from streetvision.eval.evaluate import load_samples, predict_conditions
    from streetvision.validator.stream import simulate

    console, printed = terminal
    samples = write_dataset(tmp_path / "images", n=4, seed=2, size=64)
    predictor = Predictor.from_bundle(micro_bundle)
    images, labels, paths, _ = load_samples(samples, console)
    assert "decoding images" in printed() and "4/4" in printed()
    shown, _ = predict_conditions(predictor, images, labels, 0, paths, console)
    assert "hashing images" in printed() and "scoring clean + levels 0-3" in printed() and "20/20" in printed()
    silent, _ = predict_conditions(predictor, images, labels, 0, paths)
    assert shown.keys() == silent.keys()
    for name in shown:
        np.testing.assert_equal(vars(shown[name]), vars(silent[name]))

    def constant(batch):
        return np.full(len(batch), 0.75)

    streamed = simulate(constant, images, np.array([0, 1, 0, 1]), 12, console=console, batch_size=5)
    assert "simulating the validator stream" in printed() and "12/12" in printed()
    np.testing.assert_equal(streamed, simulate(constant, images, np.array([0, 1, 0, 1]), 12, batch_size=5))


def test_predict_command_shows_the_bar_on_stderr_and_keeps_stdout_clean(terminal, micro_bundle, tmp_path,
                                                                        monkeypatch, capsys):
    from streetvision import cli
    from streetvision.data.synthetic import render_scene

    console, printed = terminal
    monkeypatch.setattr(cli, "err_console", console)
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"scene_{i}.png")
        render_scene(i, seed=5).image.save(paths[-1])
    assert cli.main(["predict", str(micro_bundle), *map(str, paths), "--batch-size", "2"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[0] == "path,probability,decision,score,accepted,error" and len(rows) == 4 and "\x1b" not in "".join(
        rows)
    assert "scoring images" in printed() and "3/3" in printed() and "unreadable" in printed()
    assert Path(rows[1].split(",")[0]) == paths[0]
