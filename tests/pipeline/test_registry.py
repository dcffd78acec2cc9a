"""The phase registry on its own: the decorator, the DAG checks and order, phase-name errors and the config view
(no phase runs here; tests/pipeline/test_runner.py runs toy phases through the runner)."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, ReadonlyConfigError

from streetvision.errors import ConfigError
from streetvision.pipeline import registry
from streetvision.pipeline.registry import PhaseSpec, check_dag, check_phase_names, config_view, phase, phase_order

REAL_ORDER = ["splits", "pretrain", "phase4", "phase1", "crossfit", "phase2", "phase5", "phase6", "evaluation"]


def spec(name, dir_=None, **kw):
    return PhaseSpec(name, lambda ctx: None, f"the {name} phase", dir_ or name, **kw)


def test_the_decorator_registers_every_field_and_returns_the_function(monkeypatch):
    monkeypatch.setattr(registry, "REGISTRY", {})

    def run(ctx):
        return None

    returned = phase("p", "does p", dir="p_dir", needs=("q",), config_keys=("seed",), reads=("hardware",))(run)
    assert returned is run
    assert registry.REGISTRY == {"p": PhaseSpec("p", run, "does p", "p_dir", needs=("q",), config_keys=("seed",),
                                                reads=("hardware",))}


def test_unknown_dependencies_shared_directories_and_cycles_are_refused():
    with pytest.raises(ValueError, match=r"^phase 'b' depends on unregistered phase\(s\) \['x'\]$"):
        check_dag({"a": spec("a"), "b": spec("b", uses=("a", "x"))})
    with pytest.raises(ValueError, match=r"^phases 'a' and 'b' both write to directory 'same'$"):
        check_dag({"a": spec("a", "same"), "b": spec("b", "same")})
    with pytest.raises(ValueError, match=r"^the phases \['b', 'c'\] depend on each other in a cycle$"):
        check_dag({"a": spec("a"), "b": spec("b", needs=("a", "c")), "c": spec("c", uses=("b",))})
    check_dag({"a": spec("a"), "b": spec("b", needs=("a",))})  # a DAG passes


def test_the_order_follows_needs_uses_and_config_dependent_needs():
    specs = {"z": spec("z"), "data": spec("data", auto=True), "m": spec("m", needs=("data",)),
             "late": spec("late", needs_if=lambda cfg: ("m",) if cfg.seed else ())}
    assert phase_order(specs, None) == ["data", "late", "m", "z"]  # auto first, then by name
    assert phase_order(specs, OmegaConf.create({"seed": 0})) == ["data", "late", "m", "z"]
    assert phase_order(specs, OmegaConf.create({"seed": 1})) == ["data", "m", "late", "z"]
    assert phase_order(registry.load_phases(), None) == REAL_ORDER


def test_an_unknown_phase_name_is_a_config_error_listing_the_phases_in_run_order():
    check_phase_names(["phase1", "evaluation"])
    with pytest.raises(ConfigError) as exc:
        check_phase_names(["phase1", "bogus", "nope"])
    assert exc.value.message == ("Unknown phase(s) in pipeline.phases: bogus, nope. Valid phases: "
                                 + ", ".join(REAL_ORDER) + ".")
    assert exc.value.fix == f"use e.g. pipeline.phases=[{','.join(REAL_ORDER)}]."


def test_the_view_holds_exactly_the_declared_keys_resolved_and_read_only():
    cfg = OmegaConf.create({"seed": 3, "a": {"b": 1, "c": "${a.b}", "d": {"e": 2, "f": "${other.x}"}}, "other": {"x": 1},
                            "hardware": {"devices": 1, "precision": "32"}})
    view = config_view(cfg, spec("p", config_keys=("seed", "a.c", "a.d"), reads=("hardware",)))
    assert OmegaConf.to_container(view) == {"seed": 3, "a": {"c": 1, "d": {"e": 2, "f": 1}},
                                            "hardware": {"devices": 1, "precision": "32"}}
    # resolved when the view is made: neither a.b nor other.x is in it
    assert view.a.c == 1 and view.a.d.f == 1 and not OmegaConf.is_interpolation(view.a.d, "f")
    with pytest.raises(ConfigAttributeError):
        view.other  # noqa: B018
    with pytest.raises(ConfigKeyError):
        view.a["b"]  # noqa: B018
    with pytest.raises(ReadonlyConfigError):
        view.a.d.e = 5
    with pytest.raises(ReadonlyConfigError):
        view.seed = 4
