"""Backbone families: each trains, calibrates, bundles, exports (its own *ForImageClassification, parity checked
through the miner's pipeline call and ONNX) and evaluates in a micro run; LoRA finds its targets and merges; hub-style
checkpoints of each family's classifier (and SigLIP's two-tower model) load as the backbone; unsupported sources
and phases stop before any work."""

import json

import pytest
import torch
from transformers import (AutoConfig, AutoModelForImageClassification, BertConfig, SiglipConfig, SiglipModel)

from streetvision.config import load_config
from streetvision.errors import ConfigError
from streetvision.models.backbones import build_builtin, load_backbone, preprocess_for
from streetvision.models.classifier import (ClassifierSpec, RoadworkClassifier, apply_finetune_mode, merged,
                                            trainable_parameters)
from streetvision.models.families import BUILTIN, FAMILIES, MICRO, family

MICROS = sorted(MICRO)
# ~15 s each on 2 cores: two in the default run (a convolutional family, and SigLIP, whose export differs most);
# `make natix-compat` (CI) runs phase1 -> phase6 of every family and the miner's line in each environment
FAST = {"convnextv2-micro", "siglip-micro"}
PIPELINE_CASES = [b if b in FAST else pytest.param(b, marks=pytest.mark.slow) for b in MICROS]


def _run(tmp_path, backbone: str, phases: str, *extra: str):
    from rich.console import Console

    from streetvision.pipeline.artifacts import ArtifactSchema
    from streetvision.pipeline.runner import run_pipeline

    cfg = load_config([f"output_root={tmp_path}", "run_id=f", "model=dinov2_micro", f"model.backbone={backbone}",
                       "model.pooling=family", "data.synthetic.n=96", "training.epochs=1",
                       "training.progress_bar=false", f"pipeline.phases=[{phases}]", *extra])
    outcomes = run_pipeline(cfg, Console(quiet=True))
    return ArtifactSchema.from_config(cfg).run_dir, outcomes


def test_every_family_has_a_micro_and_a_cpu_preset():
    presets = {model_type for model_type, _ in BUILTIN.values()}
    assert {t for t, f in FAMILIES.items() if f.natix} <= presets
    assert {model_type for model_type, _ in MICRO.values()} == {t for t, f in FAMILIES.items() if f.natix}


@pytest.mark.parametrize("backbone", PIPELINE_CASES)
def test_micro_run_of_each_family_exports_its_own_classifier_and_evaluates(tmp_path, backbone):
    run, outcomes = _run(tmp_path, backbone, "phase1,phase2,phase5,phase6,evaluation",
                         "evaluation.n_resamples=50", "evaluation.stream_steps=20")
    fam = family(MICRO[backbone][0])
    config = json.loads((run / "export" / "hf" / "config.json").read_text())
    assert config["architectures"] == [fam.classifier]  # phase6 checked parity via the miner's pipeline and ONNX
    assert config["model_type"] == fam.export_model_type
    phase6 = next(o.summary for o in outcomes if o.name == "phase6")
    assert phase6["hugging face"] == "export/hf (parity checked)" and float(phase6["onnx parity"]) < 1e-4
    spec = json.loads((run / "export" / "bundle" / "model" / "model.json").read_text())
    assert spec["pooling"] == fam.pooling  # "family" is recorded as what it means
    metrics = json.loads((run / "evaluation" / "metrics_summary.json").read_text())
    assert {"clean", "validator_mix"} <= set(metrics["conditions"])
    hf = AutoModelForImageClassification.from_pretrained(run / "export" / "hf")
    assert type(hf).__name__ == fam.classifier and hf.config.id2label == {0: "None", 1: "Roadwork"}


@pytest.mark.parametrize("backbone", MICROS)
def test_lora_finds_each_familys_targets_trains_them_and_merges_exactly(backbone):
    torch.manual_seed(0)
    b = build_builtin(backbone)
    model = RoadworkClassifier(b, ClassifierSpec(["no", "yes"], pooling="family",
                                                 preprocess=preprocess_for(b, backbone).as_dict()))
    model = apply_finetune_mode(model, "lora")
    trainable, total = trainable_parameters(model)
    assert 0 < trainable < total
    size = model.spec.preprocess["size"]
    x = torch.randn(4, 3, size, size)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    model.train()
    torch.nn.functional.cross_entropy(model(x), torch.tensor([0, 1, 0, 1])).backward()
    opt.step()
    model.eval()
    with torch.no_grad():
        before = model(x)
        after = merged(model)(x)
    assert not any("lora" in n for n, _ in model.named_parameters())
    torch.testing.assert_close(after, before, atol=1e-4, rtol=1e-4)


def test_a_classifier_checkpoint_of_a_family_loads_as_its_backbone(tmp_path):
    model_type, kwargs = MICRO["convnextv2-micro"]
    config = AutoConfig.for_model(model_type, **kwargs, num_labels=1000)
    hub_like = AutoModelForImageClassification.from_config(config)  # e.g. facebook/convnextv2-atto-1k-224
    hub_like.save_pretrained(tmp_path / "ckpt")
    backbone = load_backbone(str(tmp_path / "ckpt"))
    assert type(backbone).__name__ == "ConvNextV2Model"
    for name, tensor in backbone.state_dict().items():
        torch.testing.assert_close(tensor, hub_like.convnextv2.state_dict()[name])


def test_a_two_tower_siglip_checkpoint_loads_its_vision_tower(tmp_path):
    _, kwargs = MICRO["siglip-micro"]
    two_tower = SiglipModel(SiglipConfig(vision_config=kwargs, text_config=dict(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, vocab_size=99,
        bos_token_id=1, eos_token_id=2, pad_token_id=0)))
    two_tower.save_pretrained(tmp_path / "siglip")
    backbone = load_backbone(str(tmp_path / "siglip"))
    assert backbone.config.model_type == "siglip_vision_model" and not backbone.config.vision_use_head
    x = torch.randn(1, 3, 56, 56)
    with torch.no_grad():
        torch.testing.assert_close(backbone(pixel_values=x).last_hidden_state,
                                   two_tower.vision_model(pixel_values=x).last_hidden_state)


def test_a_model_that_is_not_an_image_backbone_stops_before_any_work(tmp_path):
    BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64).save_pretrained(
        tmp_path / "bert")
    with pytest.raises(ConfigError, match=r"'bert' model.*Supported families.*convnextv2.*model.backbone") as err:
        _run(tmp_path / "out", str(tmp_path / "bert"), "phase1")
    assert "built-in preset" in err.value.fix
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("phase", ["phase4", "pretrain"])
def test_self_supervised_phases_refuse_a_convolutional_family_before_any_work(tmp_path, phase):
    with pytest.raises(ConfigError, match=rf"{phase} cannot train a convnextv2 backbone.*FCMAE.*phase1"):
        _run(tmp_path / "out", "convnextv2-micro", f"{phase},phase1")
    assert not (tmp_path / "out").exists()


def test_the_export_of_a_family_the_pinned_miner_lacks_is_refused_by_name():
    from streetvision.bundle.hf_format import check_exportable, is_exportable

    with pytest.raises(ConfigError, match="Dinov2WithRegistersForImageClassification.*4.45"):
        check_exportable({"pooling": "cls_mean", "head": "linear"}, "dinov2_with_registers")
    assert is_exportable({"pooling": "family", "head": "linear"}, "swin")
    assert not is_exportable({"pooling": "max", "head": "linear"}, "convnextv2")
    assert not is_exportable({"pooling": "family", "head": "mlp"}, "resnet")


@pytest.mark.parametrize("backbone", ["vit-micro", pytest.param("deit-micro", marks=pytest.mark.slow)])
def test_explora_on_a_vit_family_merges_and_phase1_exports_from_it(tmp_path, backbone):
    run, outcomes = _run(tmp_path, backbone, "phase4,phase1,phase2,phase6", "model.explora.objective=masked",
                         "phase4.epochs=1", "model.explora.train_norms=true")
    merge = json.loads((run / "phase4_explora" / "metrics.json").read_text())
    assert merge["peft_validation_status"] == "PASS" and merge["max_output_diff"] < 1e-4
    phase6 = next(o.summary for o in outcomes if o.name == "phase6")
    assert phase6["hugging face"] == "export/hf (parity checked)"  # the mask token stays out of the export


@pytest.mark.parametrize("backbone,overrides", [
    ("resnet-micro", ["model.finetune=frozen", "phase1.frozen_epochs=3"]),  # embedding cache, BatchNorm in eval
    ("efficientnet-micro", ["model.finetune=lora"]),  # LoRA on 1 x 1 convolutions
    ("swin-micro", ["model.finetune=lora", "hardware.precision=bf16-mixed"]),
    pytest.param("resnet-micro", ["model.finetune=full", "hardware.devices=2", "hardware.accelerator=cpu"],
                 marks=pytest.mark.slow),  # DDP with BatchNorm buffers
    pytest.param("convnextv2-micro", ["hardware.compile=true"], marks=pytest.mark.slow),
])
def test_training_modes_and_hardware_options_run_for_other_families(tmp_path, backbone, overrides):
    run, _ = _run(tmp_path, backbone, "phase1", *overrides)
    metrics = json.loads((run / "phase1" / "metrics.json").read_text())
    assert metrics["splits"]["test"]["n"] > 0 and (run / "phase1" / "backbone" / "model.safetensors").is_file()
    if "hardware.devices=2" in overrides:
        assert metrics["world_size"] == 2
    if "hardware.compile=true" in overrides:
        assert metrics["compiled"] is True
