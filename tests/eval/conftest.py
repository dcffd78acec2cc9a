"""Evaluation fixtures: one evaluation of the micro bundle on 40 synthetic scenes (with its stream), shared by the
evaluation, report and comparison tests."""

from __future__ import annotations

from pathlib import Path

import pytest

EVAL_IMAGES = 40
EVAL_RESAMPLES = 200


@pytest.fixture(scope="session")
def eval_images(tmp_path_factory) -> list[tuple[Path, int]]:
    """40 labelled synthetic scenes (both classes), written once."""
    from streetvision.data.synthetic import write_dataset

    return write_dataset(tmp_path_factory.mktemp("eval_images") / "images", n=EVAL_IMAGES, seed=3)


@pytest.fixture(scope="session")
def evaluated(micro_bundle, eval_images, tmp_path_factory):
    """(samples, summary, intervals, paths) of evaluate_to_dir on the micro bundle; paths[-1] is report.html."""
    from streetvision.eval.run_evaluation import evaluate_to_dir

    out = tmp_path_factory.mktemp("eval") / "report"
    summary, intervals, paths = evaluate_to_dir(micro_bundle, eval_images, out, seed=0,
                                                n_resamples=EVAL_RESAMPLES, data_description="test")
    return eval_images, summary, intervals, paths
