"""Parameter-efficient adapters through PEFT's own classes: LoRA, DoRA, LoKr, LoHa, AdaLoRA, and DoRAN (a PEFT LoRA
layer with DoRA's decomposition plus a learnable noise term in its denominator). Every one merges into plain backbone
weights (``merge_and_unload``), so the export and the stock miner never see an adapter.

DoRAN (Diep et al., arXiv 2510.04331, Oct 2025) has two parts: (i) a learnable positive term tau added to the
denominator of DoRA's weight decomposition, ``W' = m * (W0 + s*BA) / (||W0 + s*BA||_c + tau)``, a regulariser that
keeps the scale bounded when the column norm is small; (ii) auxiliary networks that generate the low-rank matrices and
couple them across the query and value projections of a block. Only (i) is built here, as a PEFT LoRA variant
(:class:`DoranLinear`, registered with ``LoraConfig._register_custom_module``): (ii) changes what a layer's adapter
is (generated, shared across layers), which PEFT's per-layer adapters cannot express without a second model; tau
is one softplus-parameterised scalar per layer, and the magnitude starts at ``||W0||_c + tau0`` so the adapted
layer equals the base layer at initialisation, as DoRA's does. The merge is exact: the merged weight is the
formula above with the trained m, B, A and tau.

AdaLoRA needs its rank allocator stepped after every optimizer step with the total step count known:
:class:`AdaLoraSchedule` (a Lightning callback) sets the schedule from the trainer's step budget when fitting
starts and calls ``update_and_allocate``; :func:`adapter_ranks` reads the ranks it kept. PEFT adds AdaLoRA's
orthogonality regulariser only to a model output that carries ``.loss``; our losses are computed outside the
backbone, so it is not applied (the SVD parameterisation and the budget schedule are).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from torch import nn

from streetvision.config import CHOICES
from streetvision.errors import ConfigError

ADAPTERS = CHOICES["model.adapter_search.candidates"]  # model.adapter also takes "auto" (phase1)
LINEAR_ONLY = ("adalora", "doran")  # PEFT's AdaLoRA and our DoRAN layer wrap nn.Linear only
DORAN_TAU0 = 0.01  # initial denominator term (softplus(raw) = tau0)
ADALORA_INIT_FACTOR = 1.5  # AdaLoRA starts at ceil(1.5 r) per layer and prunes to an average of r
ADALORA_TINIT, ADALORA_TFINAL = 0.1, 0.3  # fractions of the steps: warm-up without pruning, final fixed-rank phase


@functools.cache
def _doran_classes() -> tuple[type, type]:
    """DoranLinear (the PEFT layer) and its layer, built once on first use: peft takes seconds to import."""
    from peft.tuners.lora.dora import DoraLinearLayer
    from peft.tuners.lora.layer import Linear as LoraLinear
    from peft.tuners.lora.variants import DoraLinearVariant

    class DoranLinearLayer(DoraLinearLayer):
        """DoRA's magnitude vector plus tau = softplus(noise) in the denominator; tau keeps its gradient."""

        def __init__(self, fan_in_fan_out: bool) -> None:
            super().__init__(fan_in_fan_out)
            self.noise = nn.Parameter(torch.tensor(math.log(math.expm1(DORAN_TAU0))))

        def tau(self) -> torch.Tensor:
            return F.softplus(self.noise)

        def get_weight_norm(self, weight, lora_weight, scaling, adapter_name=None) -> torch.Tensor:
            # what update_layer (the initial magnitude) and PEFT's merge divide by
            return super().get_weight_norm(weight, lora_weight, scaling, adapter_name=adapter_name) + self.tau()

        def forward(self, x, *, lora_A, lora_B, scaling, base_layer, base_result=None, adapter_name="default"):
            lora_weight = self.get_lora_weight(lora_A=lora_A, lora_B=lora_B, adapter_name=adapter_name).to(x.dtype)
            weight = base_layer.weight.to(x.dtype)
            # the column norm is treated as a constant (DoRA, section 4.3); tau is not
            norm = DoraLinearLayer.get_weight_norm(self, weight, lora_weight.detach(), scaling).detach()
            scale = (self.weight / (norm + self.tau().to(x.dtype))).view(1, -1)
            if base_result is None:
                base_result = F.linear(x, weight)
            elif base_layer.bias is not None:
                base_result = base_result - base_layer.bias
            return (scale - 1) * base_result + scale * lora_B(lora_A(x)) * scaling

        def __repr__(self) -> str:
            return "streetvision.doran." + super().__repr__()

    class DoranLinearVariant(DoraLinearVariant):
        @staticmethod
        def init(module: Any, adapter_name: str, **kwargs: Any) -> None:
            if not module.lora_magnitude_vector:  # makes the magnitude and tau trainable adapter parameters
                module.adapter_layer_names = module.adapter_layer_names[:] + ("lora_magnitude_vector",)
            layer = DoranLinearLayer(fan_in_fan_out=getattr(module, "fan_in_fan_out", False))
            layer.update_layer(base_layer=module.get_base_layer(), lora_A=module.lora_A[adapter_name].weight,
                               lora_B=module.lora_B[adapter_name].weight, scaling=module.scaling[adapter_name])
            module.lora_magnitude_vector[adapter_name] = layer

    class DoranLinear(LoraLinear):
        """PEFT's LoRA Linear whose DoRA variant is DoRAN's."""

        @property
        def lora_variants(self):
            return {**super().lora_variants, ("use_dora",): DoranLinearVariant}

    return DoranLinear, DoranLinearLayer


def peft_config(adapter: str, r: int, alpha: float, dropout: float, target_modules: list[str] | str,
                modules_to_save: list[str] | None = None) -> Any:
    """The PEFT config of ``adapter`` at rank ``r`` (AdaLoRA: ``ceil(1.5 r)`` pruned to an average of ``r``; its
    step schedule is set by :class:`AdaLoraSchedule`)."""
    import peft  # imported when used: peft takes seconds to import

    common = {"target_modules": target_modules, "modules_to_save": modules_to_save}
    if adapter in ("lora", "dora", "doran"):
        config = peft.LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, bias="none",
                                 use_dora=adapter != "lora", **common)
        if adapter == "doran":
            config._register_custom_module({nn.Linear: _doran_classes()[0]})
        return config
    if adapter == "lokr":
        return peft.LoKrConfig(r=r, alpha=alpha, rank_dropout=dropout, **common)
    if adapter == "loha":
        return peft.LoHaConfig(r=r, alpha=alpha, rank_dropout=dropout, **common)
    if adapter == "adalora":
        # placeholder schedule (PEFT validates it at construction); AdaLoraSchedule sets the real one
        return peft.AdaLoraConfig(init_r=math.ceil(ADALORA_INIT_FACTOR * r), target_r=r, lora_alpha=alpha,
                                  lora_dropout=dropout, total_step=100, tinit=10, tfinal=30, deltaT=1, **common)
    raise ConfigError(f"Unknown model.adapter '{adapter}'. Valid choices: {', '.join(ADAPTERS)}, auto.",
                      "set model.adapter to one of those.")


def wrap(backbone: nn.Module, adapter: str, r: int, alpha: float, dropout: float, target_modules: list[str] | str,
         modules_to_save: list[str] | None = None) -> Any:
    """``backbone`` with ``adapter`` on ``target_modules`` (PEFT ``get_peft_model``: the base frozen, the adapters
    and ``modules_to_save`` trainable). An adapter that cannot wrap the targets stops with one paragraph."""
    from peft import get_peft_model

    family = getattr(getattr(backbone, "config", None), "model_type", type(backbone).__name__)
    if adapter in LINEAR_ONLY:
        convs = sorted({type(m).__name__ for n, m in backbone.named_modules()
                        if _targeted(n, target_modules) and not isinstance(m, nn.Linear)})
        if convs:
            raise linear_only_error(adapter, f"this {family} backbone", f"include {', '.join(convs)} layers")
    try:
        return get_peft_model(backbone, peft_config(adapter, r, alpha, dropout, target_modules, modules_to_save))
    except (ValueError, TypeError, RuntimeError) as exc:
        raise ConfigError(f"model.adapter={adapter} cannot apply to this {family} backbone: {exc}. Valid "
                          f"adapters: {', '.join(ADAPTERS)}.",
                          "choose another adapter, or set model.lora.target_modules.") from exc


def linear_only_error(adapter: str, backbone: str, found: str) -> ConfigError:
    """The one paragraph for a linear-only adapter (LINEAR_ONLY) whose targets on ``backbone`` are not linear."""
    others = ", ".join(a for a in ADAPTERS if a not in LINEAR_ONLY)
    return ConfigError(f"model.adapter={adapter} wraps linear layers only, but the adapter targets of {backbone} "
                       f"{found}. Adapters that also wrap convolutions: {others} (model.adapter=auto skips the ones "
                       f"that do not apply).", "choose one of those, set model.lora.target_modules to linear layers, "
                       "or set model.finetune=full.")


def _targeted(name: str, target_modules: list[str] | str) -> bool:
    import re

    if isinstance(target_modules, str):
        return re.fullmatch(target_modules, name) is not None
    return any(name == t or name.endswith("." + t) for t in target_modules)


def adalora_model(model: nn.Module) -> Any | None:
    """The PEFT AdaLoraModel inside ``model`` (a PeftModel or a module holding one), else None."""
    for module in model.modules():
        if type(module).__name__ == "AdaLoraModel":
            return module
    return None


def adapter_ranks(model: nn.Module) -> dict[str, int]:
    """AdaLoRA: the rank each wrapped layer kept (non-zero singular values); empty for the other adapters."""
    ranks = {}
    for name, module in model.named_modules():
        values = getattr(module, "lora_E", None)
        if isinstance(values, nn.ParameterDict):
            for adapter, e in values.items():
                ranks[name] = int((e.detach() != 0).sum())
    return ranks


class AdaLoraSchedule(Callback):
    """AdaLoRA's rank allocation inside a Lightning fit: the budget schedule from the trainer's optimizer-step budget
    (``tinit`` / ``tfinal`` as fractions of it), and ``update_and_allocate`` after every optimizer step (gradients
    are still present then: Lightning zeroes them at the start of the next step). The allocator's sensitivity
    averages and the rank pattern are callback state, so an epoch checkpoint resumes the allocation where it was."""

    STATE = ("ipt", "exp_avg_ipt", "exp_avg_unc")

    def __init__(self, adalora: Any) -> None:
        self.adalora = adalora
        self._last_step = -1
        self._restored: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        allocator = self.adalora.rankallocator
        config = self.adalora.peft_config[self.adalora.trainable_adapter_name]
        return {**{k: {n: t.detach().cpu() for n, t in getattr(allocator, k).items()} for k in self.STATE},
                "rank_pattern": config.rank_pattern, "last_step": self._last_step}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._restored = state_dict  # applied in on_fit_start, after the schedule is set (which resets it)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        total = int(trainer.max_steps) if trainer.max_steps and trainer.max_steps > 0 else int(
            trainer.estimated_stepping_batches)
        config = self.adalora.peft_config[self.adalora.trainable_adapter_name]
        config.total_step = max(3, total)
        config.tinit = int(ADALORA_TINIT * config.total_step)
        config.tfinal = int(ADALORA_TFINAL * config.total_step)
        if config.tinit >= config.total_step - config.tfinal:
            config.tinit, config.tfinal = 0, 0
        allocator = self.adalora.rankallocator
        allocator.set_total_step(config.total_step)
        allocator.reset_ipt()
        if self._restored is not None:
            device = next(pl_module.parameters()).device
            for key in self.STATE:
                setattr(allocator, key, {n: t.to(device) for n, t in self._restored[key].items()})
            config.rank_pattern = self._restored["rank_pattern"]
            self._last_step = int(self._restored["last_step"])

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        step = int(trainer.global_step)
        if step != self._last_step:  # an optimizer step happened (not a gradient-accumulation batch)
            self._last_step = step
            self.adalora.update_and_allocate(step)


def adapter_callbacks(model: nn.Module) -> list[Callback]:
    """The callbacks the adapters inside ``model`` need while training (AdaLoRA's schedule)."""
    adalora = adalora_model(model)
    return [AdaLoraSchedule(adalora)] if adalora is not None else []
