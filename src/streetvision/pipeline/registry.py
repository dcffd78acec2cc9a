"""The phase registry: name -> spec (function, dependencies, config slice). Phases register themselves with
:func:`phase`; only phases that exist are registered (nothing is a stub)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from streetvision.errors import ConfigError
from streetvision.pipeline.artifacts import PHASE_DIRS, ArtifactSchema

# Canonical execution order: phase4 adapts the backbone that phase1 trains; phase2/phase5 read phase1's logits;
# phase6 bundles them; evaluation scores the bundle.
PHASE_ORDER = tuple(PHASE_DIRS)


@dataclass
class PhaseContext:
    """What a phase function gets: the config, the run's artifact paths, the console and the run's fingerprint."""

    cfg: DictConfig
    artifacts: ArtifactSchema
    console: Any
    fingerprint: dict[str, Any] = field(default_factory=dict)  # config slice + input checksums (checkpoints)


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
    needs: tuple[str, ...] = ()  # phases whose committed outputs are required
    uses: tuple[str, ...] = ()  # phases whose outputs are used when present
    config_keys: tuple[str, ...] = ()  # the config slice hashed for the up-to-date check
    auto: bool = False  # added to the plan automatically when a requested phase needs it
    fingerprint: Callable[[DictConfig], Any] | None = None  # extra state (e.g. a data folder listing)
    needs_if: Callable[[DictConfig], tuple[str, ...]] | None = None  # needs that depend on the config

    def needs_for(self, cfg: DictConfig) -> tuple[str, ...]:
        """The phases whose committed outputs this phase requires under ``cfg``."""
        return (*self.needs, *(self.needs_if(cfg) if self.needs_if else ()))


REGISTRY: dict[str, PhaseSpec] = {}


def phase(name: str, description: str, **kwargs: Any) -> Callable[[Callable[[PhaseContext], PhaseResult]], Any]:
    """Decorator registering a phase function under ``name``."""
    if name not in PHASE_DIRS:
        raise ValueError(f"phase {name!r} has no directory in PHASE_DIRS")

    def wrap(fn: Callable[[PhaseContext], PhaseResult]) -> Callable[[PhaseContext], PhaseResult]:
        REGISTRY[name] = PhaseSpec(name=name, run=fn, description=description, **kwargs)
        return fn

    return wrap


def load_phases() -> dict[str, PhaseSpec]:
    """Import the phase modules (which register themselves) and return the registry."""
    import streetvision.pipeline.phases  # noqa: F401  (import registers)

    return REGISTRY


def check_phase_names(names: list[str]) -> None:
    """Raise ConfigError naming any unknown phase and the valid choices.

    Checked against PHASE_ORDER without importing the phase modules (torch, transformers, ...), so a config error
    is reported instantly; a test keeps PHASE_ORDER and the registry identical."""
    unknown = [n for n in names if n not in PHASE_ORDER]
    if unknown:
        valid = list(PHASE_ORDER)
        raise ConfigError(
            f"Unknown phase(s) in pipeline.phases: {', '.join(unknown)}. Valid phases: {', '.join(valid)}.",
            f"use e.g. pipeline.phases=[{','.join(valid)}].",
        )
