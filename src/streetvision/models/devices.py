"""Devices, precision, strategy and compilation: resolved once from ``cfg.hardware`` and checked against the machine
before the first phase runs, so a GPU setting on a machine without GPUs stops at once with one paragraph naming the
key and what was found, instead of a Lightning traceback twenty seconds into a phase.

``hardware.num_gpus > 0`` (the seed's key) means that many GPUs per node. With more than one process in total the
strategy is DDP: ``ddp`` when an external launcher (torchrun, SLURM) started every rank, otherwise ``ddp_spawn`` so
that this process alone writes artifacts. Plain DDP (no find_unused_parameters) is enough for every fine-tuning mode
because the only parameter without a gradient, DINOv2's ``mask_token``, is frozen.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn

from streetvision.errors import ConfigError

LAUNCHER_ENV = ("TORCHELASTIC_RUN_ID", "SLURM_NTASKS")


@dataclass(frozen=True)
class DevicePlan:
    """What phase1 and phase4 train on; ``requested_by`` is the config key that asked for the accelerator."""

    accelerator: str  # cpu | gpu
    devices: int  # per node
    num_nodes: int
    strategy: str  # auto | ddp | ddp_spawn
    precision: str  # 32 | bf16-mixed | 16-mixed
    compile: bool
    compile_backend: str
    requested_by: str

    @property
    def world_size(self) -> int:
        """Training processes in total."""
        return self.devices * self.num_nodes

    @property
    def torch_device(self) -> str:
        """Where this process scores images after training (``cuda`` uses the current device)."""
        return "cuda" if self.accelerator == "gpu" else "cpu"

    def describe(self) -> dict[str, object]:
        """The facts a phase records in its metrics: accelerator, precision and whether the backbone compiled."""
        return {"accelerator": self.accelerator, "precision": self.precision, "compiled": self.compile,
                "compile_backend": self.compile_backend if self.compile else None}


@dataclass(frozen=True)
class Machine:
    """What this machine offers: CUDA devices (names) and whether the first one computes in bfloat16."""

    cuda_devices: tuple[str, ...]
    bf16_supported: bool
    torch_cuda: str | None  # the CUDA version torch was built with; None for a CPU-only build

    @classmethod
    def detect(cls) -> Machine:
        """Query torch (initialises CUDA when present; no allocation)."""
        if not torch.cuda.is_available():
            return cls((), False, torch.version.cuda)
        names = tuple(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        return cls(names, bool(torch.cuda.is_bf16_supported()), torch.version.cuda)

    def gpu_text(self) -> str:
        """One phrase: the GPUs found, or why there are none."""
        if self.cuda_devices:
            return f"{len(self.cuda_devices)} CUDA GPU(s): {', '.join(self.cuda_devices)}"
        if self.torch_cuda is None:
            return f"no CUDA GPU: this torch ({torch.__version__}) was built without CUDA"
        return (f"no CUDA GPU: torch {torch.__version__} (CUDA {self.torch_cuda}) finds no device (driver missing, "
                f"or CUDA_VISIBLE_DEVICES hides them)")


def resolve_devices(hardware) -> DevicePlan:
    """The device plan from ``cfg.hardware`` (no check against the machine: see :func:`check_devices`)."""
    if int(hardware.num_gpus) > 0:
        accelerator, devices = "gpu", int(hardware.num_gpus)
        requested_by = f"hardware.num_gpus={devices}"
    else:
        accelerator, devices = str(hardware.accelerator), int(hardware.devices)
        requested_by = f"hardware.accelerator={accelerator} hardware.devices={devices}"
        if accelerator == "auto":
            accelerator = "gpu" if torch.cuda.is_available() else "cpu"
    nodes = int(hardware.num_nodes)
    launched = any(k in os.environ for k in LAUNCHER_ENV)
    strategy = "auto" if devices * nodes == 1 else ("ddp" if launched or nodes > 1 else "ddp_spawn")
    return DevicePlan(accelerator, devices, nodes, strategy, str(hardware.precision), bool(hardware.compile),
                      str(hardware.compile_backend), requested_by)


def check_devices(plan: DevicePlan, machine: Machine | None = None) -> None:
    """Raise ConfigError (one paragraph: the key, what this machine has, the fix) when ``plan`` cannot run here."""
    machine = machine or Machine.detect()
    if plan.devices < 1 or plan.num_nodes < 1:
        raise ConfigError(f"{plan.requested_by} hardware.num_nodes={plan.num_nodes}: devices and nodes must be >= 1.",
                          "set hardware.devices=1 (or hardware.num_gpus=N) and hardware.num_nodes=1.")
    if plan.accelerator == "gpu":
        found = len(machine.cuda_devices)
        if found == 0:
            raise ConfigError(
                f"{plan.requested_by} asks for {plan.devices} GPU(s) per node, but this machine has "
                f"{machine.gpu_text()}.",
                "train on the CPU (hardware=cpu, and drop hardware.num_gpus), or run on a machine with GPUs.")
        if found < plan.devices:
            raise ConfigError(
                f"{plan.requested_by} asks for {plan.devices} GPUs per node, but this machine has "
                f"{machine.gpu_text()}.", f"set hardware.num_gpus={found} (or fewer).")
        if plan.precision == "bf16-mixed" and not machine.bf16_supported:
            raise ConfigError(
                f"hardware.precision=bf16-mixed needs bfloat16 support, which {machine.cuda_devices[0]} lacks "
                f"(Ampere or newer has it).", "set hardware.precision=16-mixed (or 32).")
    elif plan.precision == "16-mixed":
        raise ConfigError(
            f"hardware.precision=16-mixed needs a CUDA GPU (float16 autocast with gradient scaling), but this run "
            f"trains on the CPU ({machine.gpu_text()}).",
            "set hardware.precision=32 on the CPU (bf16-mixed runs there too, but several times slower).")
    if plan.compile:
        from torch._dynamo import list_backends

        if plan.compile_backend not in list_backends(exclude_tags=()):
            usual = sorted({*list_backends(), "eager", "aot_eager"})
            raise ConfigError(f"Unknown hardware.compile_backend '{plan.compile_backend}'. Valid choices include: "
                              f"{', '.join(usual)}.", "set hardware.compile_backend=inductor (the default).")


def compile_in_place(module: nn.Module, backend: str) -> None:
    """``torch.compile`` a module's forward in place: parameter names and ``state_dict`` keys stay unchanged."""
    if getattr(module, "_compiled_call_impl", None) is None:
        module.compile(backend=backend)


def uncompile(module: nn.Module) -> None:
    """Undo :func:`compile_in_place` (inference after training then runs eagerly, without recompiling)."""
    module._compiled_call_impl = None
