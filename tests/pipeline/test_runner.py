"""Runner behaviour on a small registry of toy phases (file-writing functions), isolated per test."""

import subprocess
import sys
import textwrap

import pytest
from rich.console import Console

from streetvision.errors import LockError, MissingArtifactError
from streetvision.io import atomic_write_text
from streetvision.pipeline import registry, runner
from streetvision.pipeline.artifacts import ArtifactSchema
from streetvision.pipeline.lock import run_lock
from streetvision.pipeline.registry import PhaseResult, PhaseSpec


class CallLog(list):
    """The phases run, in order (a list), plus what the toy fixture exposes to tests."""


@pytest.fixture
def toy(monkeypatch):
    """Phases up -> mid -> down (down also uses opt when present); calls are logged."""
    calls = CallLog()
    contexts = []  # the PhaseContext each run got

    def writer(name, reads=()):
        def run(ctx):
            calls.append(name)
            contexts.append(ctx)
            text = name + "".join((ctx.artifacts.phase_dir(r) / "out.txt").read_text() for r in reads)
            out = ctx.artifacts.phase_dir(name) / "out.txt"
            atomic_write_text(out, text + str(ctx.cfg.seed))
            return PhaseResult(outputs=[out], metrics={"n": 1}, summary={"wrote": name})
        return run

    specs = {  # only "up" hashes the seed; the others read it without depending on it (``reads``)
        "opt": PhaseSpec("opt", writer("opt"), "optional upstream", "opt", reads=("seed",)),
        "up": PhaseSpec("up", writer("up"), "first", "up", config_keys=("seed",)),
        "mid": PhaseSpec("mid", writer("mid", ["up"]), "second", "mid", needs=("up",), reads=("seed",)),
        "down": PhaseSpec("down", writer("down", ["mid"]), "third", "down", needs=("mid",), uses=("opt",),
                          reads=("seed",)),
    }
    monkeypatch.setattr(registry, "REGISTRY", specs)
    monkeypatch.setattr(registry, "load_phases", lambda: specs)
    monkeypatch.setattr(runner, "load_phases", lambda: specs)
    calls.contexts = contexts  # type: ignore[attr-defined]
    calls.specs = specs  # type: ignore[attr-defined]
    calls.writer = writer  # type: ignore[attr-defined]
    return calls


def cfg_for(make_cfg, monkeypatch, phases, **extra):
    overrides = [f"{k}={v}" for k, v in extra.items()]
    cfg = make_cfg(*overrides)
    cfg.pipeline.phases = phases
    return cfg


def run(cfg):
    return [(o.name, o.status) for o in runner.run_pipeline(cfg, Console(quiet=True))]


def test_orders_phases_whatever_the_request_order(toy, make_cfg, monkeypatch):
    cfg = cfg_for(make_cfg, monkeypatch, ["down", "up", "mid"])
    assert run(cfg) == [("up", "ran"), ("mid", "ran"), ("down", "ran")]
    assert toy == ["up", "mid", "down"]


def test_up_to_date_phases_are_skipped_and_force_reruns(toy, make_cfg, monkeypatch):
    cfg = cfg_for(make_cfg, monkeypatch, ["up", "mid"])
    run(cfg)
    assert run(cfg) == [("up", "up to date"), ("mid", "up to date")]
    cfg.pipeline.force = True
    assert run(cfg) == [("up", "ran"), ("mid", "ran")]


def test_config_change_reruns_only_phases_whose_slice_or_inputs_changed(toy, make_cfg, monkeypatch):
    cfg = cfg_for(make_cfg, monkeypatch, ["opt", "up", "mid"])
    run(cfg)
    cfg.seed = 7  # in up's config slice; mid's input (up's output) then changes too; opt reads neither
    assert run(cfg) == [("opt", "up to date"), ("up", "ran"), ("mid", "ran")]
    assert toy == ["opt", "up", "mid", "up", "mid"]
    cfg.training.lr = 0.5  # in no phase's slice
    assert run(cfg) == [("opt", "up to date"), ("up", "up to date"), ("mid", "up to date")]
    assert (ArtifactSchema.from_config(cfg).phase_dir("mid") / "out.txt").read_text() == "midup77"


def test_a_changed_input_reruns_the_reader_even_when_its_config_is_unchanged(toy, make_cfg, monkeypatch):
    cfg = cfg_for(make_cfg, monkeypatch, ["up", "mid"])
    run(cfg)
    cfg.pipeline.phases = ["up"]
    cfg.seed = 3
    assert run(cfg) == [("up", "ran")]  # mid not requested: its manifest still records up's old output
    cfg.pipeline.phases = ["mid"]
    assert run(cfg) == [("mid", "ran")]
    assert (ArtifactSchema.from_config(cfg).phase_dir("mid") / "out.txt").read_text() == "midup33"
    assert run(cfg) == [("mid", "up to date")]


def test_tampered_output_makes_phase_rerun(toy, make_cfg, monkeypatch):
    cfg = cfg_for(make_cfg, monkeypatch, ["up"])
    run(cfg)
    out = ArtifactSchema.from_config(cfg).phase_dir("up") / "out.txt"
    out.write_text("tampered")
    assert run(cfg) == [("up", "ran")]
    assert out.read_text() == "up0"


def test_new_optional_upstream_makes_downstream_stale(toy, make_cfg, monkeypatch):
    cfg = cfg_for(make_cfg, monkeypatch, ["up", "mid", "down"])
    run(cfg)
    cfg.pipeline.phases = ["opt", "down"]
    assert run(cfg) == [("opt", "ran"), ("down", "ran")]


def test_missing_dependency_fails_before_any_work(toy, make_cfg, monkeypatch):
    cfg = cfg_for(make_cfg, monkeypatch, ["down", "up"])
    with pytest.raises(MissingArtifactError, match="'down' needs the outputs of 'mid'") as exc:
        run(cfg)
    assert exc.value.fix == ("add it: pipeline.phases=[mid,up,down], or point run_id= at a run that has it.")
    assert toy == []


def test_dependency_from_an_earlier_run_is_used(toy, make_cfg, monkeypatch):
    cfg = cfg_for(make_cfg, monkeypatch, ["up", "mid"])
    run(cfg)
    cfg.pipeline.phases = ["down"]
    assert run(cfg) == [("down", "ran")]
    art = ArtifactSchema.from_config(cfg)
    assert (art.phase_dir("down") / "out.txt").read_text() == "downmidup000"


def test_crash_in_a_phase_leaves_it_uncommitted(toy, make_cfg, monkeypatch):
    cfg = cfg_for(make_cfg, monkeypatch, ["up", "mid"])
    run(cfg)
    art = ArtifactSchema.from_config(cfg)

    def crash(ctx):
        raise RuntimeError("crash mid-phase")

    monkeypatch.setitem(registry.REGISTRY, "mid", PhaseSpec("mid", crash, "second", "mid", needs=("up",)))
    cfg.pipeline.force = True
    with pytest.raises(RuntimeError):
        run(cfg)
    assert not art.manifest("mid").exists()
    assert art.manifest("up").exists()


def test_lock_names_the_holder_pid(tmp_path):
    lock = tmp_path / "run" / ".lock"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from pathlib import Path
        from streetvision.pipeline.lock import run_lock
        with run_lock(Path({str(lock)!r})):
            print("held", flush=True)
            time.sleep(30)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LockError, match=f"pid {holder.pid}"):
            with run_lock(lock):
                pass
    finally:
        holder.kill()
        holder.wait()
    with run_lock(lock):  # released by the OS when the holder dies
        pass


def test_the_dag_orders_the_real_phases():
    from streetvision.pipeline.registry import load_phases as real_load_phases
    from streetvision.pipeline.registry import phase_order

    assert phase_order(real_load_phases(), None) == ["splits", "pretrain", "phase4", "phase1", "crossfit", "phase2",
                                                     "phase5", "phase6", "evaluation"]


def test_temp_leftovers_of_killed_writers_are_removed_on_the_next_run(toy, make_cfg, monkeypatch):
    cfg = cfg_for(make_cfg, monkeypatch, ["up"])
    run(cfg)
    art = ArtifactSchema.from_config(cfg)
    export = art.run_dir / "export"
    (export / ".bundle.tmp-k3x_9q" / "model").mkdir(parents=True)  # replace_dir's temp, 11 MB in the demo
    (export / ".bundle.tmp-k3x_9q" / "model" / "head.safetensors").write_bytes(b"partial")
    (export / ".bundle.old-0123456789ab").mkdir()
    (art.run_dir / ".splits.json.tmp-0123456789ab").write_text("{")  # atomic_path's temp
    (art.run_dir / ".keep").write_text("not a temp")
    assert run(cfg) == [("up", "up to date")]
    hidden = sorted(p.relative_to(art.run_dir).as_posix() for p in art.run_dir.rglob(".*"))
    assert hidden == [".hash_memo.json", ".keep", ".lock"]
    assert (art.phase_dir("up") / "out.txt").read_text() == "up0"


def test_a_noop_rerun_verifies_by_stat_from_the_persisted_hash_memo(toy, make_cfg, monkeypatch):
    from streetvision.io import manifest as manifest_mod

    monkeypatch.setattr(manifest_mod, "RACY_NS", 0)  # the files here are seconds old; see the racy test below
    cfg = cfg_for(make_cfg, monkeypatch, ["up", "mid", "down"])
    run(cfg)
    monkeypatch.setattr(manifest_mod, "_HASH_CACHE", {})  # a new process: only the memo on disk remains
    hashed: list[str] = []
    real = manifest_mod.sha256_file
    monkeypatch.setattr(manifest_mod, "sha256_file", lambda p: hashed.append(str(p)) or real(p))
    assert run(cfg) == [("up", "up to date"), ("mid", "up to date"), ("down", "up to date")]
    assert hashed == []
    out = ArtifactSchema.from_config(cfg).phase_dir("up") / "out.txt"
    out.write_text("edit")  # a changed file changes its key: re-hashed, and the phase reruns
    assert run(cfg)[0] == ("up", "ran") and str(out.resolve()) in hashed


# -- what a run records and prints; auto phases, conditional needs, distributed ranks --------------------------------

def test_the_manifest_records_step_metrics_summary_and_start_and_the_phase_gets_console_and_fingerprint(
        toy, make_cfg, monkeypatch):
    from streetvision.io import StepManifest, config_hash

    cfg = cfg_for(make_cfg, monkeypatch, ["up", "mid"])
    console = Console(quiet=True)
    runner.run_pipeline(cfg, console)
    art = ArtifactSchema.from_config(cfg)
    manifest = StepManifest.load(art.manifest("mid"))
    assert manifest.step == "mid" and manifest.metrics == {"n": 1, "_summary": {"wrote": "mid"}}
    assert manifest.started_at and manifest.config_hash == config_hash({})
    assert [r.path for r in manifest.inputs] == ["up/out.txt"]
    up_ctx, mid_ctx = toy.contexts
    assert up_ctx.console is console and up_ctx.fingerprint == {"config": {"seed": 0}, "inputs": {}}
    assert mid_ctx.fingerprint == {"config": {}, "inputs": {"up/out.txt": manifest.inputs[0].sha256}}
    outcomes = runner.run_pipeline(cfg, console)
    assert [(o.status, o.seconds, o.summary) for o in outcomes] == [("up to date", 0.0, {"wrote": "up"}),
                                                                    ("up to date", 0.0, {"wrote": "mid"})]


def test_the_console_says_what_ran_what_was_skipped_and_what_was_cleaned_up(toy, make_cfg, monkeypatch):
    cfg = cfg_for(make_cfg, monkeypatch, ["up", "mid"])
    art = ArtifactSchema.from_config(cfg)
    first = Console(record=True, width=300)
    runner.run_pipeline(cfg, first)
    text = first.export_text()
    assert f"Run {art.run_dir}  phases: up, mid" in text and "up: first" in text and "mid: second" in text
    assert "✓ up done in " in text and "✓ mid done in " in text
    for i in range(4):
        (art.run_dir / f".x{i}.json.tmp-0123456789a{i}").write_text("{")
    second = Console(record=True, width=300)
    runner.run_pipeline(cfg, second)
    text = second.export_text()
    assert "removed 4 temp file(s) left by an interrupted run: " in text
    listed = text.split("interrupted run: ")[1].splitlines()[0]
    assert listed.endswith(" ...") and len(listed[:-4].split(", ")) == 3
    assert "= up: up to date (pipeline.force=true reruns it)" in text
    rows = [[c.strip() for c in line.replace("┃", "│").strip("│ ").split("│")] for line in text.splitlines()
            if line.replace("┃", "│").count("│") >= 3]
    assert rows[0] == ["phase", "status", "time", "results"]
    assert rows[1:] == [["up", "up to date", "0.0s", "wrote: up"], ["mid", "up to date", "0.0s", "wrote: mid"]]
    assert "StreetVision run" in text  # the title (wrapped to the width of the table)


def test_an_auto_phase_is_added_only_while_it_is_not_up_to_date(toy, make_cfg, monkeypatch):
    specs = toy.specs
    specs["opt"] = PhaseSpec("opt", toy.writer("opt"), "data preparation", "opt", auto=True, config_keys=("seed",))
    specs["up"] = PhaseSpec("up", toy.writer("up", ["opt"]), "first", "up", needs=("opt",), reads=("seed",))
    cfg = cfg_for(make_cfg, monkeypatch, ["up"])
    assert run(cfg) == [("opt", "ran"), ("up", "ran")]
    assert run(cfg) == [("up", "up to date")]  # opt is current: not even planned
    cfg.seed = 5
    assert run(cfg) == [("opt", "ran"), ("up", "ran")]


def test_needs_that_depend_on_the_config_and_a_second_missing_need_are_checked(toy, make_cfg, monkeypatch):
    specs = toy.specs
    specs["down"] = PhaseSpec("down", toy.writer("down"), "third", "down", needs=("up",), reads=("seed",),
                              needs_if=lambda cfg: ("mid",) if cfg.seed == 1 else ())
    cfg = cfg_for(make_cfg, monkeypatch, ["up", "down"])
    assert run(cfg) == [("up", "ran"), ("down", "ran")]  # seed 0: mid not needed
    cfg.seed = 1
    with pytest.raises(MissingArtifactError, match="'down' needs the outputs of 'mid'"):
        run(cfg)  # up is requested (fine), mid is neither requested nor committed


def test_an_unwritable_output_root_is_a_config_error_naming_it(make_cfg, tmp_path):
    from streetvision.errors import ConfigError

    blocker = tmp_path / "not_a_dir"
    blocker.write_text("")
    cfg = make_cfg("pipeline.phases=[splits]")
    cfg.output_root = str(blocker / "out")
    with pytest.raises(ConfigError) as exc:
        runner.run_pipeline(cfg, Console(quiet=True))
    run_dir = ArtifactSchema.from_config(cfg).run_dir
    assert exc.value.message == (f"Cannot create or write the run directory '{run_dir}' (output_root="
                                 f"'{blocker / 'out'}', run_id='t'): Not a directory.")
    assert exc.value.fix == "set output_root= to a folder you can write (with a short path), or choose a shorter run_id=."


def test_the_machine_is_checked_only_when_a_training_phase_is_requested(make_cfg, monkeypatch):
    from streetvision.models import devices, tracking

    checked = []
    monkeypatch.setattr(devices, "check_devices", lambda plan: checked.append(("devices", plan.world_size)))
    monkeypatch.setattr(tracking, "check_loggers", lambda loggers: checked.append(("loggers", loggers)))
    runner.check_machine(make_cfg("pipeline.phases=[phase2,phase5]"))
    assert checked == []
    runner.check_machine(make_cfg("pipeline.phases=[phase1]", "hardware.devices=2", "hardware.accelerator=cpu"))
    assert checked == [("devices", 2), ("loggers", ["csv"])]


def test_ranks_above_zero_join_only_the_training_phases_rank_zero_planned(toy, make_cfg, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(runner, "DISTRIBUTED_PHASES", ("mid",))
    cfg = cfg_for(make_cfg, monkeypatch, ["up", "mid"])
    assert run(cfg) == [("up", "ran"), ("mid", "ran")]  # rank 0 publishes its plan
    monkeypatch.setattr(runner, "global_rank", lambda: 1)
    outcomes = runner.run_pipeline(cfg, Console(quiet=True))
    assert [(o.name, o.status) for o in outcomes] == [("mid", "rank 1")]
    assert toy == ["up", "mid", "mid"] and toy.contexts[-1].fingerprint["inputs"]


@pytest.mark.parametrize("launcher", ["WORLD_SIZE", "SLURM_NTASKS"])
def test_the_saved_config_never_forces_and_a_launched_rank_zero_publishes_its_plan(toy, make_cfg, monkeypatch,
                                                                                  launcher):
    from omegaconf import OmegaConf

    from streetvision.pipeline.distributed import PLAN_FILE

    monkeypatch.setenv(launcher, "2")
    cfg = cfg_for(make_cfg, monkeypatch, ["up"])
    cfg.pipeline.force = True
    run(cfg)
    art = ArtifactSchema.from_config(cfg)
    saved = OmegaConf.load(art.config_yaml)
    assert saved.pipeline.force is False and saved.pipeline.phases == ["up"]
    assert (art.run_dir / PLAN_FILE).is_file()
