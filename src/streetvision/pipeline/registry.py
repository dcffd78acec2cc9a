"""The phase registry: name -> spec (function, directory, dependencies, config slice). A phase is one module in
``streetvision/pipeline/phases/`` that registers itself with :func:`phase`; the run order is the phase DAG
(``needs`` / ``uses``), not a list kept by hand."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from streetvision.errors import ConfigError

if TYPE_CHECKING:
    from streetvision.pipeline.artifacts import ArtifactSchema

PHASES_PACKAGE = "streetvision.pipeline.phases"


@dataclass
class PhaseContext:
    """What a phase function gets from the runner: its config view (:func:`config_view`), the run's artifact paths,
    the console, its fingerprint (config slice + input checksums, for checkpoints) and which of the phases it
    needs or uses are committed in this run."""

    cfg: DictConfig
    artifacts: ArtifactSchema
    console: Any
    fingerprint: dict[str, Any] = field(default_factory=dict)
    committed: frozenset[str] = frozenset()


@dataclass
class PhaseResult:
    """What a phase function returns; the runner hashes these into the manifest it writes last."""

    outputs: list[Path]
    metrics: dict[str, Any] = field(default_factory=dict)
    inputs: list[Path] = field(default_factory=list)  # external inputs beyond upstream phase outputs
    summary: dict[str, str] = field(default_factory=dict)  # a few lines for the end-of-run table


@dataclass(frozen=True)
class PhaseSpec:
    """A registered phase."""

    name: str
    run: Callable[[PhaseContext], PhaseResult]
    description: str
    dir: str  # its directory in the run directory
    needs: tuple[str, ...] = ()  # phases whose committed outputs are required
    uses: tuple[str, ...] = ()  # phases whose outputs are used when present
    config_keys: tuple[str, ...] = ()  # what it computes depends on these keys: hashed for the up-to-date check
    reads: tuple[str, ...] = ()  # keys it also reads that change how, not what (devices, trackers): not hashed
    auto: bool = False  # added to the plan automatically when a requested phase needs it
    fingerprint: Callable[[DictConfig], Any] | None = None  # extra state (e.g. a data folder listing)
    needs_if: Callable[[DictConfig], tuple[str, ...]] | None = None  # needs that depend on the config

    def needs_for(self, cfg: DictConfig) -> tuple[str, ...]:
        """The phases whose committed outputs this phase requires under ``cfg`` (the whole config or its view)."""
        return (*self.needs, *(self.needs_if(cfg) if self.needs_if else ()))


REGISTRY: dict[str, PhaseSpec] = {}


def phase(name: str, description: str, *, dir: str, **kwargs: Any) -> Callable[[Callable], Callable]:  # noqa: A002
    """Decorator registering a phase function under ``name``, writing into ``<run>/<dir>/``."""

    def wrap(fn: Callable[[PhaseContext], PhaseResult]) -> Callable[[PhaseContext], PhaseResult]:
        REGISTRY[name] = PhaseSpec(name=name, run=fn, description=description, dir=dir, **kwargs)
        return fn

    return wrap


def load_phases() -> dict[str, PhaseSpec]:
    """Import the phase modules (which register themselves), check the DAG, and return the registry."""
    importlib.import_module(PHASES_PACKAGE)
    check_dag(REGISTRY)
    return REGISTRY


def check_dag(registry: dict[str, PhaseSpec]) -> None:
    """Every dependency is a registered phase, no two phases share a directory, and the DAG has no cycle."""
    dirs: dict[str, str] = {}
    for spec in registry.values():
        unknown = [d for d in (*spec.needs, *spec.uses) if d not in registry]
        if unknown:
            raise ValueError(f"phase {spec.name!r} depends on unregistered phase(s) {unknown}")
        if spec.dir in dirs:
            raise ValueError(f"phases {dirs[spec.dir]!r} and {spec.name!r} both write to directory {spec.dir!r}")
        dirs[spec.dir] = spec.name
    phase_order(registry, None)


def phase_order(registry: dict[str, PhaseSpec], cfg: DictConfig | None) -> list[str]:
    """Every registered phase, each after the phases it needs or uses (``needs_if`` too when ``cfg`` is given);
    among phases free to go, data preparation (``auto``) first, then by name. ValueError on a cycle."""
    deps = {n: {*(s.needs_for(cfg) if cfg is not None else s.needs), *s.uses} & set(registry)
            for n, s in registry.items()}
    order: list[str] = []
    while len(order) < len(deps):
        ready = sorted((n for n in deps if n not in order and deps[n] <= set(order)),
                       key=lambda n: (not registry[n].auto, n))
        if not ready:
            raise ValueError(f"the phases {sorted(set(deps) - set(order))} depend on each other in a cycle")
        order.append(ready[0])
    return order


def phase_dirs() -> dict[str, str]:
    """Phase name -> its directory in a run (the ``dir`` each phase declares)."""
    return {name: spec.dir for name, spec in load_phases().items()}


def config_view(cfg: DictConfig, spec: PhaseSpec) -> DictConfig:
    """The read-only view a phase gets: only its ``config_keys`` and ``reads``, resolved, so reading any other key
    raises (attribute or item access) instead of silently escaping the up-to-date check."""
    tree: dict[str, Any] = {}
    for key in (*spec.config_keys, *spec.reads):
        *parents, leaf = key.split(".")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
        value = OmegaConf.select(cfg, key)
        node[leaf] = OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
    view = OmegaConf.create(tree)
    OmegaConf.set_readonly(view, True)
    return view


def check_phase_names(names: list[str]) -> None:
    """Raise ConfigError naming any unknown phase and the valid choices (in run order), or on an empty list."""
    registry = load_phases()
    if not names:
        raise ConfigError("pipeline.phases is empty: there is nothing to run.",
                          f"name the phases to run, e.g. pipeline.phases=[{','.join(phase_order(registry, None))}], "
                          f"or leave pipeline.phases out for the default.")
    unknown = [n for n in names if n not in registry]
    if unknown:
        valid = phase_order(registry, None)
        raise ConfigError(
            f"Unknown phase(s) in pipeline.phases: {', '.join(unknown)}. Valid phases: {', '.join(valid)}.",
            f"use e.g. pipeline.phases=[{','.join(valid)}].",
        )
