"""Runner behaviour on a small registry of toy phases (file-writing functions), isolated per test."""

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from rich.console import Console

from streetvision.errors import LockError, MissingArtifactError
from streetvision.io import atomic_write_text
from streetvision.pipeline import artifacts as artifacts_mod
from streetvision.pipeline import registry, runner
from streetvision.pipeline.artifacts import ArtifactSchema
from streetvision.pipeline.lock import run_lock
from streetvision.pipeline.registry import PhaseResult, PhaseSpec


@pytest.fixture
def toy(monkeypatch):
    """Phases up -> mid -> down (down also uses opt when present); calls are logged."""
    calls: list[str] = []

    def writer(name, reads=()):
        def run(ctx):
            calls.append(name)
            text = name + "".join((ctx.artifacts.phase_dir(r) / "out.txt").read_text() for r in reads)
            out = ctx.artifacts.phase_dir(name) / "out.txt"
            atomic_write_text(out, text + str(ctx.cfg.seed))
            return PhaseResult(outputs=[out], metrics={"n": 1})
        return run

    specs = {
        "opt": PhaseSpec("opt", writer("opt"), "optional upstream"),
        "up": PhaseSpec("up", writer("up"), "first", config_keys=("seed",)),
        "mid": PhaseSpec("mid", writer("mid", ["up"]), "second", needs=("up",)),
        "down": PhaseSpec("down", writer("down", ["mid"]), "third", needs=("mid",), uses=("opt",)),
    }
    for name in specs:
        monkeypatch.setitem(artifacts_mod.PHASE_DIRS, name, name)
    monkeypatch.setattr(registry, "REGISTRY", specs)
    monkeypatch.setattr(registry, "load_phases", lambda: specs)
    monkeypatch.setattr(runner, "load_phases", lambda: specs)
    monkeypatch.setattr(runner, "PHASE_ORDER", ("opt", "up", "mid", "down"))
    return calls


def cfg_for(make_cfg, monkeypatch, phases, **extra):
    monkeypatch.setattr(registry, "check_phase_names", lambda names: None)
    monkeypatch.setattr("streetvision.pipeline.registry.check_phase_names", lambda names: None)
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
    assert "pipeline.phases=[mid" in exc.value.fix
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

    monkeypatch.setitem(registry.REGISTRY, "mid", PhaseSpec("mid", crash, "second", needs=("up",)))
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


def test_phase_order_names_exactly_the_registered_phases():
    from streetvision.pipeline.artifacts import PHASE_DIRS
    from streetvision.pipeline.registry import PHASE_ORDER as ORDER
    from streetvision.pipeline.registry import load_phases as real_load_phases

    assert set(real_load_phases()) == set(ORDER) == set(PHASE_DIRS)


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
