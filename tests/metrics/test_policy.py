"""The policy files: what phase2 and phase5 write is exactly what the Predictor, phase5 and the evaluation read
back (metrics/policy.py is the one writer and reader of thresholds.json and scrcparams.json)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from streetvision.errors import IntegrityError
from streetvision.metrics.policy import (
    Policy,
    decided_confidence,
    scrc_document,
    threshold_document,
)

NAMES = ["no_roadwork", "roadwork"]


def test_threshold_document_is_the_file_phase2_writes_and_reads_back():
    doc = threshold_document(np.float64(0.37), NAMES, {"n_thresholds": 5, "metric": "mcc", "max_fnr": None},
                             {"split": "val_select"})
    assert doc == {"policy_type": "threshold", "class_names": NAMES, "probability_of": "roadwork",
                   "thresholds": {"best": 0.37, "n_thresholds": 5, "metric": "mcc", "max_fnr": None},
                   "split": "val_select"}
    assert type(doc["thresholds"]["best"]) is float
    assert Policy.from_json(doc) == Policy("threshold", 1.0, 0.37, None, False, None)


def test_scrc_document_is_the_file_phase5_writes_and_reads_back(tmp_path):
    selective = {"confidence_threshold": 0.9, "target_risk": 0.02, "delta": 0.1}
    doc = scrc_document(np.float64(1.7), 0.62, NAMES, {"threshold_source": "phase2"}, selective,
                        {"calibration_metrics": "phase5_scrc/calibration_metrics.json"})
    assert doc == {"policy_type": "scrc", "class_names": NAMES, "probability_of": "roadwork",
                   "scrc_params": {"method": "temperature_scaling", "temperature": 1.7, "decision_threshold": 0.62,
                                   "threshold_source": "phase2", "selective": selective},
                   "calibration_metrics": "phase5_scrc/calibration_metrics.json"}
    expected = Policy("scrc", 1.7, 0.62, 0.9, True, 0.02)
    assert Policy.from_json(doc) == expected
    path = tmp_path / "scrcparams.json"
    path.write_text(json.dumps(doc))
    assert Policy.from_file(path) == expected  # the type comes from the file itself
    assert Policy.from_file(path, "scrc") == expected


def test_a_policy_without_a_selective_part_accepts_nothing_and_has_no_target():
    doc = scrc_document(2.0, 0.5, NAMES, {}, {}, {})
    assert Policy.from_json(doc) == Policy("scrc", 2.0, 0.5, None, False, None)


def test_an_unknown_policy_type_is_refused_naming_the_choices(tmp_path):
    with pytest.raises(ValueError, match=r"^policy_type is 'magic'; expected scrc or threshold$"):
        Policy.from_json({"policy_type": "magic"})
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"thresholds": {"best": 0.5}}))  # no policy_type and none given
    with pytest.raises(IntegrityError, match="policy_type is 'None'; expected scrc or threshold"):
        Policy.from_file(path)
    assert Policy.from_file(path, "threshold").decision_threshold == 0.5


def test_the_decision_rule_is_p_at_or_above_the_threshold():
    probs = np.array([0.1, 0.4, 0.4000001, 0.9])
    decisions, confidence = Policy("threshold", decision_threshold=0.4).decide(probs)
    assert decisions.tolist() == [0, 1, 1, 1]
    np.testing.assert_allclose(confidence, [0.9, 0.4, 0.4000001, 0.9])
    d2, c2 = decided_confidence(probs, 0.4)
    assert np.array_equal(d2, decisions) and np.array_equal(c2, confidence)


def test_a_policy_file_that_is_not_an_object_is_refused(tmp_path):
    path = tmp_path / "p.json"
    path.write_text("[0.5]")
    with pytest.raises(IntegrityError, match="policy_type is 'None'"):
        Policy.from_file(path)
