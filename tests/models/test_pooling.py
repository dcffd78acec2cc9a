"""Embedding poolings: each equals its definition on the backbone's tokens, register tokens are skipped, the
classifier round-trips its pooling through model.json, and the embedding-cache key depends on it."""

import json

import pytest
import torch
from transformers import Dinov2WithRegistersConfig, Dinov2WithRegistersModel

from streetvision.config import CHOICES
from streetvision.data.preprocess import Preprocess
from streetvision.errors import ConfigError, IntegrityError
from streetvision.models.backbones import POOLINGS, build_builtin, embedding_dim, pooled_embedding
from streetvision.models.classifier import ClassifierSpec, RoadworkClassifier, load_classifier, save_classifier
from streetvision.models.embedding_cache import cache_key

PRE = Preprocess(56, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


@pytest.fixture(scope="module")
def micro():
    return build_builtin("dinov2-micro", seed=3).eval()


@torch.no_grad()
def test_each_pooling_matches_its_definition(micro):
    x = torch.randn(3, 3, 56, 56)
    tokens = micro(pixel_values=x).last_hidden_state  # [N, 1 + 16, 48]
    cls, patches = tokens[:, 0], tokens[:, 1:]
    expected = {"cls": cls, "mean": patches.mean(1), "max": patches.amax(1),
                "cls_mean": torch.cat([cls, patches.mean(1)], 1), "cls_max": torch.cat([cls, patches.amax(1)], 1)}
    assert set(expected) | {"family"} == set(POOLINGS) == set(CHOICES["model.pooling"])
    torch.testing.assert_close(pooled_embedding(micro, x, "family"), expected["cls_mean"])  # Dinov2ForImageClassif.
    for pooling, want in expected.items():
        got = pooled_embedding(micro, x, pooling)
        assert got.shape == (3, embedding_dim(micro, pooling))
        torch.testing.assert_close(got, want)
    assert not torch.allclose(expected["max"], expected["mean"])


@torch.no_grad()
def test_register_tokens_are_not_pooled_as_patches():
    config = Dinov2WithRegistersConfig(hidden_size=48, num_hidden_layers=1, num_attention_heads=2,
                                       intermediate_size=96, patch_size=14, image_size=56, num_register_tokens=4)
    model = Dinov2WithRegistersModel(config).eval()
    x = torch.randn(2, 3, 56, 56)
    tokens = model(pixel_values=x).last_hidden_state
    assert tokens.shape[1] == 1 + 4 + 16
    torch.testing.assert_close(pooled_embedding(model, x, "mean"), tokens[:, 5:].mean(1))


def test_unknown_pooling_is_a_config_error(micro, make_cfg):
    with pytest.raises(ConfigError, match="model.pooling"):
        pooled_embedding(micro, torch.zeros(1, 3, 56, 56), "attention")
    with pytest.raises(ConfigError, match="model.pooling"):
        make_cfg("model.pooling=attention")


@torch.no_grad()
def test_classifier_saves_and_reloads_its_pooling(tmp_path):
    spec = ClassifierSpec(class_names=["no_roadwork", "roadwork"], pooling="cls_max", preprocess=PRE.as_dict())
    model = RoadworkClassifier(build_builtin("dinov2-micro", seed=1), spec).eval()
    assert model.head[-1].in_features == 96
    save_classifier(model, tmp_path)
    x = torch.randn(2, 3, 56, 56)
    torch.testing.assert_close(load_classifier(tmp_path)(x), model(x))
    raw = json.loads((tmp_path / "model.json").read_text())
    assert raw["pooling"] == "cls_max"
    del raw["pooling"], raw["embedding_dim"]  # a model.json written before poolings existed
    (tmp_path / "model.json").write_text(json.dumps(raw))
    with pytest.raises(IntegrityError, match="pooling 'cls'"):  # the head wants the wider cls_max embedding
        load_classifier(tmp_path)


def test_embedding_cache_key_depends_on_pooling():
    assert cache_key("abc", PRE, "digest", "cls") != cache_key("abc", PRE, "digest", "max")


@pytest.mark.parametrize("pooling", ["max", "cls_mean"])
@torch.no_grad()
def test_patch_poolings_export_to_onnx(tmp_path, pooling):
    import onnxruntime as ort

    from streetvision.bundle.export import export_onnx

    spec = ClassifierSpec(class_names=["no_roadwork", "roadwork"], pooling=pooling, preprocess=PRE.as_dict())
    model = RoadworkClassifier(build_builtin("dinov2-micro", seed=2), spec).eval()
    export_onnx(model, 56, tmp_path / "m.onnx")
    x = torch.randn(5, 3, 56, 56)
    got = ort.InferenceSession(str(tmp_path / "m.onnx")).run(None, {"pixel_values": x.numpy()})[0]
    assert abs(got - model(x).numpy()).max() < 1e-4
