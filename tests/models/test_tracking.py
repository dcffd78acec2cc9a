"""Experiment tracking: Lightning loggers under <run>/logs, the learning curve's epochs line up with the logged
ones, the report plots the curves, and a logger whose package is missing stops before any work."""

import csv
import importlib.util
import json

import numpy as np
import pytest
from rich.console import Console

from streetvision.errors import ConfigError
from streetvision.pipeline.artifacts import ArtifactSchema
from streetvision.pipeline.runner import run_pipeline

MICRO = ("model=dinov2_micro", "data.synthetic.n=48", "training.batch_size=8", "training.progress_bar=false",
         "training.epochs=3", "training.early_stopping_patience=0")


def rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_csv_and_tensorboard_logs_line_up_with_the_curve_and_the_report_plots_it(make_cfg):
    cfg = make_cfg(*MICRO, "logging.loggers=[csv,tensorboard]", "pipeline.phases=[phase1,phase2,phase6,evaluation]",
                   "phase6.onnx=false", "evaluation.n_resamples=20")
    run_pipeline(cfg, Console(quiet=True))
    art = ArtifactSchema.from_config(cfg)
    logged = rows(art.logs_dir / "phase1" / "version_0" / "metrics.csv")
    curve = rows(art.training_curve_csv)
    assert [int(r["epoch"]) for r in curve] == [0, 1, 2]
    for row in curve:  # each curve row carries its own epoch's mean training loss, not the previous epoch's
        epoch = row["epoch"]
        steps = [float(r["train_loss"]) for r in logged if r["epoch"] == epoch and r.get("train_loss")]
        epoch_row = next(r for r in logged if r["epoch"] == epoch and r.get("train_loss_epoch"))
        assert float(row["train_loss"]) == pytest.approx(np.mean(steps), rel=1e-5)
        assert float(row["train_loss"]) == pytest.approx(float(epoch_row["train_loss_epoch"]), rel=1e-5)
        val_row = next(r for r in logged if r["epoch"] == epoch and r.get("val_mcc"))
        assert float(row["val_mcc"]) == pytest.approx(float(val_row["val_mcc"]))
    assert any(v for r in logged for k, v in r.items() if k.startswith("lr-AdamW"))
    assert list((art.logs_dir / "tensorboard" / "phase1" / "version_0").glob("events.out.tfevents.*"))
    page = (art.evaluation_dir / "report.html").read_text()
    assert '<figure id="learning_curves"><img alt="learning_curves" src="data:image/png;base64,' in page


@pytest.mark.parametrize("logger", ["mlflow", "wandb"])
def test_a_logger_without_its_package_stops_before_any_work(make_cfg, logger):
    if importlib.util.find_spec(logger):
        pytest.skip(f"{logger} is installed")
    cfg = make_cfg(*MICRO, f"logging.loggers=[csv,{logger}]", "pipeline.phases=[phase1]")
    with pytest.raises(ConfigError, match=f"needs the '{logger}' package") as exc:
        run_pipeline(cfg, Console(quiet=True))
    assert f"pip install {logger}" in exc.value.fix
    assert not ArtifactSchema.from_config(cfg).run_dir.exists()


def test_an_unknown_logger_is_a_config_error(make_cfg):
    with pytest.raises(ConfigError, match="Invalid value 'neptune' for 'logging.loggers'. Valid choices: csv"):
        make_cfg("logging.loggers=[csv,neptune]")


def test_resumed_phase_metrics_record_where_it_resumed(make_cfg):
    cfg = make_cfg(*MICRO, "pipeline.phases=[phase1]", "training.epochs=1")
    run_pipeline(cfg, Console(quiet=True))
    metrics = json.loads(ArtifactSchema.from_config(cfg).metrics_json("phase1").read_text())
    assert metrics["resumed_from"] is None and metrics["precision"] == "32"
