"""The Predictor's decision policy on a stand-in model (no training): policy files, probability at T, the
threshold tie, the validator score, accept/defer, batching and both backends. Fast, for the mutation run."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from streetvision.bundle.predictor import Prediction, Predictor
from streetvision.metrics.policy import Policy
from streetvision.errors import IntegrityError
from streetvision.metrics.score import validator_score


class MeanLogit(torch.nn.Module):
    """Logits (0, 10 * mean pixel - 5): any image gets a reproducible, image-dependent probability."""

    def forward(self, x):
        if x.dim() == 2:  # already logits (predict_tensor on a hand-made batch)
            return x
        return torch.stack([torch.zeros(len(x)), 10 * x.mean(dim=(1, 2, 3)) - 5], 1)


class OnnxLike:
    """What onnxruntime's InferenceSession.run returns, for the same stand-in model."""

    def run(self, outputs, feeds):
        assert outputs == ["logits"] and list(feeds) == ["pixel_values"]
        return [MeanLogit()(torch.from_numpy(feeds["pixel_values"])).numpy()]


def write_policy(path, policy_type, **values):
    if policy_type == "scrc":
        raw = {"scrc_params": {"temperature": values.get("temperature", 2.0),
                               "decision_threshold": values.get("threshold", 0.5)}}
        if "selective" in values:
            raw["scrc_params"]["selective"] = values["selective"]
    else:
        raw = {"thresholds": {"best": values.get("threshold", 0.5)}}
    path.write_text(json.dumps(raw))
    return path


def predictor(tmp_path, policy, backend="torch"):
    (tmp_path / "preprocess.json").write_text(json.dumps({"size": 8, "mean": [0.5] * 3, "std": [0.25] * 3,
                                                          "resize_rule": "centre_crop_resize_bilinear"}))
    model = OnnxLike() if backend == "onnx" else MeanLogit()
    return Predictor(tmp_path, {"preprocess": "preprocess.json"}, policy, model, backend, "cpu")


def test_an_scrc_policy_reads_temperature_thresholds_and_the_selective_rule(tmp_path):
    path = write_policy(tmp_path / "p.json", "scrc", temperature=1.7, threshold=0.62,
                        selective={"confidence_threshold": 0.9})
    assert Policy.from_file(path, "scrc") == Policy("scrc", 1.7, 0.62, 0.9, True)
    write_policy(path, "scrc", selective={"confidence_threshold": None})
    assert Policy.from_file(path, "scrc") == Policy("scrc", 2.0, 0.5, None, True)  # certified nothing: defer all
    write_policy(path, "scrc")
    assert Policy.from_file(path, "scrc") == Policy("scrc", 2.0, 0.5, None, False)


def test_a_threshold_policy_has_temperature_one_and_no_selective_rule(tmp_path):
    path = write_policy(tmp_path / "t.json", "threshold", threshold=0.31)
    assert Policy.from_file(path, "threshold") == Policy("threshold", 1.0, 0.31, None, False)


@pytest.mark.parametrize(("text", "kind", "message"), [
    ("{", "scrc", "not valid JSON"),
    ('{"scrc_params": {"temperature": 1.0}}', "scrc", "decision_threshold"),
    ('{"scrc_params": {"temperature": "hot", "decision_threshold": 0.5}}', "scrc", "missing or invalid"),
    ('{"thresholds": {}}', "threshold", "best"),
    ('{"thresholds": {"best": 0.5}}', "magic", "expected scrc or threshold"),
])
def test_a_broken_policy_file_is_named(tmp_path, text, kind, message):
    (tmp_path / "policy.json").write_text(text)
    with pytest.raises(IntegrityError, match=message) as exc:
        Policy.from_file(tmp_path / "policy.json", kind)
    assert "policy" in str(exc.value) and exc.value.fix == "re-export the bundle."
    with pytest.raises(IntegrityError, match="missing") as exc:
        Policy.from_file(tmp_path / "absent.json", "scrc")
    assert exc.value.fix == "re-export the bundle."


def test_probability_is_softmax_at_the_temperature_and_a_tie_at_the_threshold_is_roadwork(tmp_path):
    logits = torch.tensor([[0.0, 0.0], [1.0, 3.0], [2.0, -1.0], [0.0, 0.8]])
    p = predictor(tmp_path, Policy("scrc", 2.0, 0.5, 0.6, True))
    got = p.predict_tensor(logits)
    expected = 1 / (1 + np.exp(-(logits[:, 1] - logits[:, 0]).double().numpy() / 2.0))
    assert np.allclose([g.probability for g in got], expected, atol=1e-7)
    assert [g.decision for g in got] == [1, 1, 0, 1]  # 0.5 exactly at a threshold of 0.5 is roadwork
    assert np.allclose([g.score for g in got], validator_score(np.array([g.probability for g in got]), 0.5))
    confidence = [0.5, expected[1], 1 - expected[2], expected[3]]
    assert [g.accepted for g in got] == [c >= 0.6 for c in confidence]
    assert all(isinstance(g, Prediction) and isinstance(g.decision, int) for g in got)


def test_accept_is_none_without_a_selective_rule_and_false_when_nothing_was_certified(tmp_path):
    logits = torch.tensor([[0.0, 5.0], [5.0, 0.0]])
    assert [g.accepted for g in predictor(tmp_path, Policy("threshold", 1.0, 0.5, None, False))
            .predict_tensor(logits)] == [None, None]
    assert [g.accepted for g in predictor(tmp_path, Policy("scrc", 1.0, 0.5, None, True))
            .predict_tensor(logits)] == [False, False]
    exact = predictor(tmp_path, Policy("scrc", 1.0, 0.5, 0.5, True)).predict_tensor(torch.tensor([[0.0, 0.0]]))
    assert exact[0].accepted is True  # a confidence equal to the selective threshold is accepted


def test_scores_call_and_batches_agree_for_both_backends(tmp_path):
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)) for _ in range(5)]
    policy = Policy("scrc", 1.5, 0.4, None, False)
    torch_p, onnx_p = predictor(tmp_path, policy), predictor(tmp_path, policy, "onnx")
    scores = torch_p.scores(images, batch_size=2)
    assert scores.shape == (5,) and scores.dtype == np.float64
    assert np.allclose(scores, [torch_p(img) for img in images]) and np.allclose(scores, onnx_p.scores(images))
    batch = torch_p.predict_batch(images)
    assert [b.score for b in batch] == pytest.approx(list(scores))
    probs = np.array([b.probability for b in batch])
    assert np.allclose(scores, validator_score(probs, 0.4)) and len(set(probs.round(6))) == 5
    assert torch_p.predict_batch([]) == [] and torch_p.scores([]).shape == (0,)
    assert isinstance(torch_p(images[0]), float)
