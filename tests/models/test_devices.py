"""Devices, precision and strategy are resolved from the config and checked against the machine before any phase
runs: a GPU setting without GPUs, too few GPUs, bf16 on a GPU without it, or fp16 on the CPU stops at once."""

import pytest
import torch
from rich.console import Console

from streetvision.errors import ConfigError
from streetvision.models.devices import Machine, check_devices, resolve_devices
from streetvision.pipeline.artifacts import ArtifactSchema
from streetvision.pipeline.runner import run_pipeline

NO_GPU = Machine((), False, None)
TWO_H100 = Machine(("NVIDIA H100 80GB HBM3",) * 2, True, "12.8")
ONE_T4 = Machine(("Tesla T4",), False, "12.8")


def plan(make_cfg, *overrides):
    return resolve_devices(make_cfg(*overrides).hardware)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_gpus_requested_on_a_cpu_machine_fail_before_any_work(make_cfg):
    cfg = make_cfg("hardware.num_gpus=2", "model=dinov2_micro")
    with pytest.raises(ConfigError, match=r"hardware.num_gpus=2 asks for 2 GPU\(s\) per node, but this machine has "
                                          r"no CUDA GPU") as exc:
        run_pipeline(cfg, Console(quiet=True))
    assert "hardware=cpu" in exc.value.fix
    assert not ArtifactSchema.from_config(cfg).run_dir.exists()


def test_too_few_gpus_names_the_key_and_what_was_found(make_cfg):
    with pytest.raises(ConfigError, match="asks for 4 GPUs per node, but this machine has 2 CUDA GPU") as exc:
        check_devices(plan(make_cfg, "hardware.num_gpus=4"), TWO_H100)
    assert exc.value.fix == "set hardware.num_gpus=2 (or fewer)."
    with pytest.raises(ConfigError, match="hardware.accelerator=gpu hardware.devices=3 asks for 3 GPUs"):
        check_devices(plan(make_cfg, "hardware=gpu", "hardware.devices=3"), TWO_H100)


def test_bf16_needs_a_gpu_that_supports_it(make_cfg):
    gpu_bf16 = plan(make_cfg, "hardware=gpu")
    assert gpu_bf16.precision == "bf16-mixed"
    check_devices(gpu_bf16, TWO_H100)
    with pytest.raises(ConfigError, match="bf16-mixed needs bfloat16 support, which Tesla T4 lacks") as exc:
        check_devices(gpu_bf16, ONE_T4)
    assert "16-mixed" in exc.value.fix
    check_devices(plan(make_cfg, "hardware=gpu", "hardware.precision=16-mixed"), ONE_T4)


def test_fp16_on_the_cpu_and_an_unknown_compile_backend_are_config_errors(make_cfg):
    with pytest.raises(ConfigError, match="16-mixed needs a CUDA GPU"):
        check_devices(plan(make_cfg, "hardware.accelerator=cpu", "hardware.precision=16-mixed"), NO_GPU)
    check_devices(plan(make_cfg, "hardware.accelerator=cpu", "hardware.precision=bf16-mixed"), NO_GPU)
    with pytest.raises(ConfigError, match="Unknown hardware.compile_backend 'turbo'. Valid choices include: .*inductor"):
        check_devices(plan(make_cfg, "hardware.compile=true", "hardware.compile_backend=turbo"), NO_GPU)


def test_strategy_follows_the_process_count(make_cfg, monkeypatch):
    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    monkeypatch.delenv("SLURM_NTASKS", raising=False)
    assert plan(make_cfg, "hardware.accelerator=cpu").strategy == "auto"
    assert plan(make_cfg, "hardware.accelerator=cpu", "hardware.devices=2").strategy == "ddp_spawn"
    assert plan(make_cfg, "hardware.num_gpus=8", "hardware.num_nodes=2").world_size == 16
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "x")
    assert plan(make_cfg, "hardware.num_gpus=2").strategy == "ddp"


def test_a_ddp_trainer_destroys_its_gloo_process_group_at_worker_exit(make_cfg, tmp_path, monkeypatch):
    """Without this, a spawned gloo worker aborted at exit in about 1 of 3 launches (SIGABRT, "terminate called
    without an active exception"), failing a finished fit."""
    import atexit

    import torch.distributed as dist

    from streetvision.models.training import ProcessGroupTeardown, TrainerSettings, make_trainer

    settings = TrainerSettings(grad_accum=1, gradient_clip=0.0, progress_bar=False)
    ddp = plan(make_cfg, "hardware.accelerator=cpu", "hardware.devices=2")
    single = plan(make_cfg, "hardware.accelerator=cpu")
    has = [any(isinstance(c, ProcessGroupTeardown) for c in make_trainer(p, settings, [], 1, tmp_path).callbacks)
           for p in (ddp, single)]
    assert has == [True, False]
    registered = []
    monkeypatch.setattr(atexit, "register", registered.append)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        ProcessGroupTeardown().setup(None, None, "fit")
        assert len(registered) == 1
        registered[0]()
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
