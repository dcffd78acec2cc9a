"""Adapters through PEFT (models/adapters.py): each merges into plain weights, phase4's merge proof holds for each,
phase1 trains with each, AdaLoRA allocates ranks inside Lightning, DoRAN's noise term trains and merges exactly,
model.adapter=auto picks on val_select, and adapters that cannot wrap a backbone stop before any work."""

from __future__ import annotations

import json

import pytest
import torch
from rich.console import Console

from streetvision.errors import ConfigError
from streetvision.models import adapters
from streetvision.models.backbones import build_builtin
from streetvision.models.classifier import attention_targets
from streetvision.pipeline.artifacts import ArtifactSchema
from streetvision.pipeline.runner import run_pipeline
from tests.pipeline.phases.test_phase4 import MICRO, QUIET, run


def metrics(art, phase):
    return json.loads(art.metrics_json(phase).read_text())


@pytest.mark.parametrize("adapter", adapters.ADAPTERS)
def test_trained_adapter_merges_into_plain_weights(adapter):
    torch.manual_seed(0)
    backbone = build_builtin("dinov2-micro", seed=0)
    x = torch.randn(2, 3, 56, 56)
    base = backbone(pixel_values=x).last_hidden_state.detach()
    model = adapters.wrap(backbone, adapter, 4, 8, 0.0, attention_targets(backbone))
    assert torch.allclose(model(pixel_values=x).last_hidden_state, base, atol=1e-6)  # starts as the base model
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(3):
        model(pixel_values=x).last_hidden_state.pow(2).mean().backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    adapted = model(pixel_values=x).last_hidden_state.detach()
    assert (adapted - base).abs().max() > 1e-5  # it trained
    merged = model.merge_and_unload()
    assert type(merged).__name__ == "Dinov2Model" and not any("lora" in n for n, _ in merged.named_parameters())
    assert (merged(pixel_values=x).last_hidden_state - adapted).abs().max() < 1e-5


def test_doran_noise_term_trains_and_sits_in_the_denominator():
    backbone = build_builtin("dinov2-micro", seed=0)
    model = adapters.wrap(backbone, "doran", 4, 8, 0.0, attention_targets(backbone))
    layers = [m for m in model.modules() if type(m).__name__ == "DoranLinearLayer"]
    assert layers and all(abs(float(layer.tau().detach()) - adapters.DORAN_TAU0) < 1e-6 for layer in layers)
    model(pixel_values=torch.randn(2, 3, 56, 56)).last_hidden_state.pow(2).mean().backward()
    assert all(layer.noise.grad is not None and layer.noise.grad.abs() > 0 for layer in layers)
    # the merged weight is m * W / (||W||_c + tau): with B = 0 the layer's scale is exactly m / (||W||_c + tau)
    layer = layers[0]
    with torch.no_grad():
        layer.noise.fill_(2.0)
    module = next(m for m in model.modules() if hasattr(m, "lora_magnitude_vector") and m.lora_magnitude_vector)
    w = module.get_base_layer().weight.detach().clone()
    x = torch.randn(3, w.shape[1])
    expected = torch.nn.functional.linear(x, (layer.weight / (w.norm(dim=1) + layer.tau())).view(-1, 1) * w,
                                          module.get_base_layer().bias)
    module.eval()
    assert torch.allclose(module(x), expected, atol=1e-5)


def test_adapters_that_wrap_linear_layers_only_refuse_a_convolutional_backbone_before_any_work(make_cfg, tmp_path):
    from streetvision.config import load_config

    for adapter in adapters.LINEAR_ONLY:
        cfg = load_config([f"output_root={tmp_path}", "model=dinov2_micro", "model.backbone=resnet-micro",
                           "model.finetune=lora", f"model.adapter={adapter}", "pipeline.phases=[phase1]"])
        with pytest.raises(ConfigError, match=rf"model.adapter={adapter} wraps linear layers only.*lora, dora, lokr"):
            run_pipeline(cfg, QUIET)
        assert not any(tmp_path.iterdir())  # no run directory: refused before any work
    backbone = build_builtin("resnet-micro", seed=0)
    with pytest.raises(ConfigError, match="wraps linear layers only"):
        adapters.wrap(backbone, "adalora", 4, 8, 0.0, attention_targets(backbone))


def test_unknown_adapter_is_a_config_error_naming_the_choices(make_cfg):
    with pytest.raises(ConfigError, match="model.adapter.*lora, dora, lokr, loha, adalora, doran, auto"):
        make_cfg("model.adapter=qlora")


@pytest.mark.parametrize("adapter", ["dora", "lokr", "loha", "doran"])
def test_phase4_merge_proof_holds_for_each_adapter(make_cfg, adapter):
    art = run(make_cfg, "pipeline.phases=[phase4]", "phase4.max_steps=3", f"model.adapter={adapter}")
    m = metrics(art, "phase4")
    assert m["adapter"] == adapter and m["peft_validation_status"] == "PASS" and m["max_output_diff"] <= 1e-4


def test_adalora_allocates_ranks_in_phase4_and_phase1(make_cfg):
    art = run(make_cfg, "pipeline.phases=[phase4,phase1]", "phase4.max_steps=10", "training.optimizer_steps=10",
              "model.finetune=lora", "model.adapter=adalora", "model.lora.r=2", "model.explora.r=2")
    for phase in ("phase4", "phase1"):
        m = metrics(art, phase)
        assert m["adapter"] == "adalora", phase
        ranks = m["adapter_ranks"]
        assert ranks and all(0 <= r <= 3 for r in ranks.values()), ranks  # init_r = ceil(1.5 * 2) = 3
        # the final allocation prunes to a total budget of target_r = 2 per layer on average
        assert sum(ranks.values()) <= 2 * len(ranks), ranks
    assert metrics(art, "phase4")["peft_validation_status"] == "PASS"


@pytest.mark.parametrize("adapter", ["dora", "lokr", "loha", "adalora", "doran"])
def test_phase1_trains_and_exports_with_each_adapter(make_cfg, adapter):
    art = run(make_cfg, "pipeline.phases=[phase1,phase2,phase5,phase6]", "training.epochs=1", "model.finetune=lora",
              f"model.adapter={adapter}")
    assert metrics(art, "phase1")["adapter"] == adapter
    assert (art.bundle_dir / "model" / "backbone" / "model.safetensors").is_file()


def test_auto_selects_on_val_select_and_records_every_candidate(make_cfg):
    art = run(make_cfg, "pipeline.phases=[phase1]", "training.epochs=1", "model.finetune=lora",
              "model.adapter=auto", "model.adapter_search.candidates=[lora,loha]", "model.adapter_search.max_steps=2")
    m = metrics(art, "phase1")
    search = m["adapter_search"]
    assert set(search) == {"lora", "loha"} and all(r["status"] == "ok" for r in search.values())
    best = max(search, key=lambda a: (search[a]["val_select_mcc"], -search[a]["val_select_loss"]))
    assert m["adapter"] == best


def test_auto_with_one_candidate_says_so_and_trains_it(make_cfg, capsys):
    cfg = make_cfg(*MICRO, "pipeline.phases=[phase1]", "training.epochs=1", "model.finetune=lora",
                   "model.adapter=auto", "model.adapter_search.candidates=[dora]")
    run_pipeline(cfg, Console(force_terminal=False, width=200))
    assert "one candidate (dora)" in capsys.readouterr().out
    assert metrics(ArtifactSchema.from_config(cfg), "phase1")["adapter"] == "dora"


def test_auto_skips_candidates_that_cannot_wrap_the_backbone(make_cfg):
    art = run(make_cfg, "model.backbone=resnet-micro", "pipeline.phases=[phase1]", "training.epochs=1",
              "model.finetune=lora", "model.adapter=auto", "model.adapter_search.candidates=[adalora,lora]",
              "model.adapter_search.max_steps=1")
    m = metrics(art, "phase1")
    assert m["adapter_search"]["adalora"]["status"] == "skipped" and m["adapter"] == "lora"


def test_interrupted_adalora_phase1_resumes_its_rank_allocation(make_cfg, monkeypatch):
    from safetensors.torch import load_file

    from streetvision.models import checkpoints

    args = ("pipeline.phases=[phase1]", "training.epochs=3", "model.finetune=lora", "model.adapter=adalora",
            "model.lora.r=2")
    whole = run(make_cfg, *args, run_id="whole")
    real = checkpoints.EpochCheckpoint.on_train_epoch_end

    def save_then_die(self, trainer, pl_module):
        real(self, trainer, pl_module)
        if trainer.current_epoch == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(checkpoints.EpochCheckpoint, "on_train_epoch_end", save_then_die)
    with pytest.raises((KeyboardInterrupt, SystemExit)):
        run(make_cfg, *args, run_id="cut")
    monkeypatch.undo()
    cut = run(make_cfg, *args, run_id="cut")
    assert metrics(cut, "phase1")["resumed_from"] == "epoch-0001"
    assert metrics(cut, "phase1")["adapter_ranks"] == metrics(whole, "phase1")["adapter_ranks"]
    weights = [load_file(art.phase1_model_dir / "backbone" / "model.safetensors") for art in (whole, cut)]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
