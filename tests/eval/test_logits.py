"""The logits CSV format: an exact round trip of ids, labels and float logits; malformed files are named."""

import numpy as np
import pytest

from streetvision.errors import IntegrityError
from streetvision.eval.logits import read_logits, write_logits
from streetvision.io import sha256_file


def test_ids_labels_and_logits_round_trip_exactly(tmp_path):
    rng = np.random.default_rng(0)
    ids = ["roadwork/a b,c.png", "no_roadwork/ü.jpg", "roadwork/x.png"]  # a comma and non-ASCII survive
    labels = np.array([1, 0, 1])
    logits = rng.normal(size=(3, 2)) * 1e3
    logits[0, 0] = np.nextafter(0.1, 1)  # repr floats: no digit is lost
    digest = write_logits(tmp_path / "t.csv", ids, labels, logits, ["no_roadwork", "roadwork"])
    assert digest == sha256_file(tmp_path / "t.csv")
    table = read_logits(tmp_path / "t.csv")
    assert table.sample_ids == ids and table.labels.tolist() == [1, 0, 1]
    assert np.array_equal(table.logits, logits) and table.class_names == ["no_roadwork", "roadwork"]
    assert (tmp_path / "t.csv").read_text().splitlines()[0] == "sample_id,label,logit_no_roadwork,logit_roadwork"


def test_an_empty_split_round_trips_with_two_logit_columns(tmp_path):
    write_logits(tmp_path / "e.csv", [], np.array([]), np.zeros((0, 2)), ["a", "b"])
    table = read_logits(tmp_path / "e.csv")
    assert table.logits.shape == (0, 2) and table.sample_ids == [] and table.class_names == ["a", "b"]


@pytest.mark.parametrize("text", ["", "path,label,logit_a,logit_b\n", "sample_id,label,logit_a\nx,1,0.5\n",
                                  "sample_id,label,logit_a,logit_b\nx,one,0.1,0.2\n",
                                  "sample_id,label,logit_a,logit_b\nx,1,0.1\n"])
def test_a_malformed_file_is_named(tmp_path, text):
    (tmp_path / "bad.csv").write_text(text)
    with pytest.raises(IntegrityError, match="bad.csv' is missing or malformed"):
        read_logits(tmp_path / "bad.csv")


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(IntegrityError, match="gone.csv"):
        read_logits(tmp_path / "gone.csv")
