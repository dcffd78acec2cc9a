"""The runner: orders the requested phases, checks dependencies before any work, skips phases whose committed
outputs, inputs and config are unchanged (like make/DVC), runs the rest under a run-directory lock, and commits
each phase by writing its manifest last."""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table

from streetvision.config import ADDED_KEYS, RETIRED_KEYS, to_plain
from streetvision.data.source_paths import check_data_paths
from streetvision.errors import ConfigError, IntegrityError, MissingArtifactError
from streetvision.io import StepManifest, atomic_write_text, config_hash, remove_stale_temps
from streetvision.io.manifest import FileRecord, load_hash_memo, save_hash_memo, utc_now
from streetvision.pipeline.artifacts import ArtifactSchema
from streetvision.pipeline.distributed import DISTRIBUTED_PHASES, global_rank, publish_plan, read_plan, wait_for
from streetvision.pipeline.lock import run_lock
from streetvision.pipeline.registry import (PhaseContext, PhaseSpec, check_phase_names, config_view, load_phases,
                                            phase_order)


if TYPE_CHECKING:
    from streetvision.models.families import Family

@dataclass
class PhaseOutcome:
    """What happened to one phase in a run."""

    name: str
    status: str  # ran | up to date
    seconds: float
    summary: dict[str, str]


def config_slice(cfg: DictConfig, spec: PhaseSpec) -> dict:
    """The part of the config a phase depends on, plus its fingerprint (hashed for up-to-date checks)."""
    out = {key: to_plain(OmegaConf.select(cfg, key)) for key in spec.config_keys}
    for added in ADDED_KEYS:
        if all(to_plain(OmegaConf.select(cfg, k)) == v for k, v in added.items()):
            for key in added:
                _drop(out, key)
    for key, value in RETIRED_KEYS.items():
        _put(out, key, value)
    if spec.fingerprint is not None:
        out["_fingerprint"] = spec.fingerprint(config_view(cfg, spec))
    return out


def _drop(slice_: dict, dotted: str) -> None:
    """Remove the leaf ``dotted`` from a config slice keyed by config keys (a key may hold a whole group)."""
    for key, value in slice_.items():
        if dotted == key:
            del slice_[key]
            return
        if dotted.startswith(key + ".") and isinstance(value, dict):
            *parents, leaf = dotted[len(key) + 1:].split(".")
            for part in parents:
                value = value.get(part, {})
            value.pop(leaf, None)
            return


def _put(slice_: dict, dotted: str, value: object) -> None:
    """Set the leaf ``dotted`` in a config slice when the slice holds its parent group (else leave it alone)."""
    for key, group in slice_.items():
        if dotted.startswith(key + ".") and isinstance(group, dict):
            *parents, leaf = dotted[len(key) + 1:].split(".")
            for part in parents:
                if not isinstance(group.get(part), dict):
                    return
                group = group[part]
            group[leaf] = value
            return


def committed(artifacts: ArtifactSchema, name: str) -> StepManifest | None:
    """The phase's manifest if it exists and verifies (outputs and inputs unchanged), else None."""
    path = artifacts.manifest(name)
    if not path.is_file():
        return None
    try:
        manifest = StepManifest.load(path)
    except IntegrityError:
        return None
    return None if manifest.verify(artifacts.run_dir) else manifest


def plan(cfg: DictConfig, artifacts: ArtifactSchema) -> list[PhaseSpec]:
    """Requested phases plus needed auto phases, in dependency order; fail before work on a missing dependency."""
    registry = load_phases()
    wanted = set(cfg.pipeline.phases)
    for name in list(wanted):  # add auto phases (data preparation) that a requested phase needs
        for dep in registry[name].needs_for(cfg):
            if registry[dep].auto and not _up_to_date(cfg, artifacts, registry[dep]):
                wanted.add(dep)
    ordered = [registry[n] for n in phase_order(registry, cfg) if n in wanted]
    for spec in ordered:
        for dep in spec.needs_for(cfg):
            if dep in wanted or registry[dep].auto:
                continue
            if committed(artifacts, dep) is None:
                raise MissingArtifactError(
                    f"Phase '{spec.name}' needs the outputs of '{dep}', which are missing or out of date in "
                    f"'{artifacts.run_dir}' and '{dep}' is not in pipeline.phases.",
                    f"add it: pipeline.phases=[{','.join([dep] + [s.name for s in ordered])}], or point run_id= "
                    f"at a run that has it.",
                )
    return ordered


def committed_upstream(cfg: DictConfig, artifacts: ArtifactSchema, spec: PhaseSpec) -> dict[str, StepManifest]:
    """The manifests of the phases this phase needs or uses that are committed in the run."""
    manifests = {dep: committed(artifacts, dep) for dep in (*spec.needs_for(cfg), *spec.uses)}
    return {dep: m for dep, m in manifests.items() if m is not None}


def upstream_records(cfg: DictConfig, artifacts: ArtifactSchema, spec: PhaseSpec) -> list[FileRecord]:
    """Outputs of the committed upstream phases this phase reads (its recorded inputs)."""
    return [r for m in committed_upstream(cfg, artifacts, spec).values() for r in m.outputs]


def phase_context(cfg: DictConfig, artifacts: ArtifactSchema, spec: PhaseSpec, console: Console) -> PhaseContext:
    """What the phase gets: its config view, the paths, the console, its committed upstream and its fingerprint
    (config slice + checksums of the upstream outputs it reads: a training checkpoint resumes only under the same
    fingerprint)."""
    upstream = committed_upstream(cfg, artifacts, spec)
    fingerprint = {"config": config_slice(cfg, spec),
                   "inputs": {r.path: r.sha256 for m in upstream.values() for r in m.outputs}}
    return PhaseContext(cfg=config_view(cfg, spec), artifacts=artifacts, console=console, fingerprint=fingerprint,
                        committed=frozenset(upstream))


def _up_to_date(cfg: DictConfig, artifacts: ArtifactSchema, spec: PhaseSpec) -> bool:
    manifest = committed(artifacts, spec.name)
    if manifest is None or manifest.config_hash != config_hash(config_slice(cfg, spec)):
        return False
    recorded = {(r.path, r.sha256) for r in manifest.inputs}
    return {(r.path, r.sha256) for r in upstream_records(cfg, artifacts, spec)} <= recorded


def phases_to_run(cfg: DictConfig, artifacts: ArtifactSchema, ordered: list[PhaseSpec]) -> list[PhaseSpec]:
    """The planned phases that will run: forced, not up to date, or downstream of one that runs."""
    names: set[str] = set()
    for spec in ordered:
        upstream = {*spec.needs_for(cfg), *spec.uses}
        if cfg.pipeline.force or names & upstream or not _up_to_date(cfg, artifacts, spec):
            names.add(spec.name)
    return [s for s in ordered if s.name in names]


def upstream_phases(cfg: DictConfig, name: str) -> list[PhaseSpec]:
    """Every phase whose outputs ``name`` reads, directly or through another phase, in run order."""
    registry = load_phases()
    seen: set[str] = set()
    todo = [name]
    while todo:
        spec = registry[todo.pop()]
        for dep in (*spec.needs_for(cfg), *spec.uses):
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return [registry[n] for n in phase_order(registry, cfg) if n in seen]


def _leaves(value: object, prefix: str) -> dict[str, object]:
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in _leaves(item, f"{prefix}.{key}").items()}
    return {prefix: value}


def check_upstream_unchanged(cfg: DictConfig, artifacts: ArtifactSchema, name: str) -> None:
    """Before rebuilding ``name`` alone (``streetvision export``): every committed phase it reads must be up to date
    under ``cfg``, i.e. ``cfg`` is the config that produced it; ConfigError naming the changed keys otherwise."""
    saved = OmegaConf.load(artifacts.config_yaml) if artifacts.config_yaml.is_file() else None
    for spec in upstream_phases(cfg, name):
        if committed(artifacts, spec.name) is None or _up_to_date(cfg, artifacts, spec):
            continue
        changed = []
        if saved is not None:
            for key in spec.config_keys:
                now = _leaves(to_plain(OmegaConf.select(cfg, key)), key)
                before = _leaves(to_plain(OmegaConf.select(saved, key)), key)
                changed += [k for k in sorted(set(now) | set(before)) if now.get(k) != before.get(k)]
        what = f"the keys {', '.join(changed)} differ from" if changed else "its inputs changed since"
        raise ConfigError(f"Rebuilding {name} would package a model under a config that did not produce it: "
                          f"phase '{spec.name}' is out of date ({what} the run's config.yaml).",
                          f"drop those overrides ({name} reuses the run's config), or retrain: streetvision run "
                          f"with them and pipeline.phases=[{spec.name},...].")


SELFSUP_PHASES = ("pretrain", "phase4")


def check_machine(cfg: DictConfig) -> None:
    """Before any work: when a training phase is requested, its devices, precision and compile backend must exist
    on this machine, and its loggers' packages must be installed (ConfigError naming the key and what was found)."""
    if set(cfg.pipeline.phases) & set(DISTRIBUTED_PHASES):
        from streetvision.models.devices import check_devices, resolve_devices  # imports torch
        from streetvision.models.tracking import check_loggers

        check_devices(resolve_devices(cfg.hardware))
        check_loggers(list(cfg.logging.loggers))
        check_backbone(cfg)


def check_backbone(cfg: DictConfig) -> None:
    """Before any work: model.backbone is a supported family (its config alone is read), and the self-supervised
    phases, when requested, are implemented for it (ConfigError naming the family and what applies)."""
    from streetvision.models.backbones import backbone_family
    from streetvision.models.families import check_selfsup

    fam = backbone_family(str(cfg.model.backbone))
    for phase in SELFSUP_PHASES:
        if phase in cfg.pipeline.phases:
            check_selfsup(fam, phase)
    check_adapter(cfg, fam)


def check_adapter(cfg: DictConfig, fam: Family) -> None:
    """Before any work: the adapter a training phase would put on the backbone can wrap its layers (AdaLoRA and
    DoRAN wrap linear layers only; ResNet's and EfficientNet's adapter targets are convolutions)."""
    from streetvision.models.adapters import LINEAR_ONLY, linear_only_error

    adapter = str(cfg.model.adapter)
    adapts = ("phase4" in cfg.pipeline.phases or (cfg.model.finetune == "lora" and any(
        p in cfg.pipeline.phases for p in ("phase1", "crossfit"))))
    if adapts and adapter in LINEAR_ONLY and fam.conv_targets and not list(cfg.model.lora.target_modules):
        raise linear_only_error(adapter, f"the {fam.model_type} backbone '{cfg.model.backbone}'", "are convolutions")


def prepare_run_dir(cfg: DictConfig, artifacts: ArtifactSchema) -> None:
    """Create the run directory and its lock file; raise ConfigError naming output_root when that fails."""
    try:
        artifacts.run_dir.mkdir(parents=True, exist_ok=True)
        with open(artifacts.lock_file, "a"):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(
            f"Cannot create or write the run directory '{artifacts.run_dir}' (output_root='{cfg.output_root}', "
            f"run_id='{cfg.run_id}'): {reason}.",
            "set output_root= to a folder you can write (with a short path), or choose a shorter run_id=.",
        ) from exc


def run_pipeline(cfg: DictConfig, console: Console | None = None) -> list[PhaseOutcome]:
    """Run the configured phases in order; return what each did (see pipeline.distributed for ranks > 0)."""
    console = console or Console()
    check_phase_names(list(cfg.pipeline.phases))
    check_machine(cfg)
    artifacts = ArtifactSchema.from_config(cfg)
    if not os.path.lexists(artifacts.splits_json):  # a new run: its data must exist before its run directory
        check_data_paths(cfg)
    prepare_run_dir(cfg, artifacts)
    if global_rank() > 0:
        return _run_as_worker_rank(cfg, artifacts)
    outcomes: list[PhaseOutcome] = []
    with run_lock(artifacts.lock_file):
        stale = remove_stale_temps(artifacts.run_dir)  # the lock proves their writers are dead
        if stale:
            console.print(f"removed {len(stale)} temp file(s) left by an interrupted run: "
                          f"{', '.join(artifacts.rel(p) for p in stale[:3])}{' ...' if len(stale) > 3 else ''}",
                          highlight=False)
        load_hash_memo(artifacts.hash_memo_json, artifacts.run_dir)
        try:
            ordered = plan(cfg, artifacts)
            to_run = phases_to_run(cfg, artifacts, ordered)
            stale = {s.name for s in ordered if cfg.pipeline.force or not _up_to_date(cfg, artifacts, s)}
            distributed = "WORLD_SIZE" in os.environ or "SLURM_NTASKS" in os.environ
            if distributed:  # the other ranks follow the plan made here, so it is kept as it is
                publish_plan(artifacts.run_dir, [s.name for s in to_run])
            if to_run:  # the config of the last command that produced something; a no-op leaves it as it was
                saved = OmegaConf.to_container(cfg, resolve=True)
                saved["pipeline"]["force"] = False  # "rerun everything" belongs to this command, not to the run
                atomic_write_text(artifacts.config_yaml, OmegaConf.to_yaml(saved))
            console.print(f"[bold]Run[/bold] {artifacts.run_dir}  phases: {', '.join(s.name for s in ordered)}")
            for spec in ordered:
                run = spec in to_run
                if run and spec.name not in stale and not distributed:
                    # here only because an upstream phase reran: that rerun may have written the same outputs
                    # (a touched file re-split identically), which leaves this phase's recorded inputs intact
                    run = not _up_to_date(cfg, artifacts, spec)
                outcomes.append(_run_phase(cfg, artifacts, spec, console, skip=not run))
                if run:
                    save_hash_memo(artifacts.hash_memo_json, artifacts.run_dir)
        finally:
            with contextlib.suppress(OSError):  # only a cache: never hide the error that ended the run
                save_hash_memo(artifacts.hash_memo_json, artifacts.run_dir)
    print_summary(outcomes, artifacts, console)
    return outcomes


def _run_as_worker_rank(cfg: DictConfig, artifacts: ArtifactSchema) -> list[PhaseOutcome]:
    """Ranks > 0: join the training phases rank 0 runs; write nothing."""
    registry = load_phases()
    outcomes = []
    planned = read_plan(artifacts.run_dir)
    for name in planned:
        if name not in DISTRIBUTED_PHASES:
            continue
        spec = registry[name]
        for dep in (*spec.needs_for(cfg), *(u for u in spec.uses if u in planned)):
            wait_for(lambda d=dep: committed(artifacts, d) is not None, f"phase '{dep}' to be committed", 3600)
        start = time.perf_counter()
        spec.run(phase_context(cfg, artifacts, spec, Console(quiet=True)))
        outcomes.append(PhaseOutcome(name, f"rank {global_rank()}", time.perf_counter() - start, {}))
    return outcomes


def _run_phase(cfg: DictConfig, artifacts: ArtifactSchema, spec: PhaseSpec, console: Console,
               skip: bool = False) -> PhaseOutcome:
    if skip:
        console.print(f"[green]=[/green] {spec.name}: up to date (pipeline.force=true reruns it)")
        manifest = StepManifest.load(artifacts.manifest(spec.name))
        return PhaseOutcome(spec.name, "up to date", 0.0, manifest.metrics.get("_summary", {}))
    console.rule(f"[bold]{spec.name}[/bold]: {spec.description}")
    manifest_path = artifacts.manifest(spec.name)
    manifest_path.unlink(missing_ok=True)  # uncommit first: a crash below leaves no manifest claiming old outputs
    started, start = utc_now(), time.perf_counter()
    result = spec.run(phase_context(cfg, artifacts, spec, console))
    upstream = [artifacts.run_dir / r.path for r in upstream_records(cfg, artifacts, spec)]
    metrics = dict(result.metrics, _summary=result.summary)
    manifest = StepManifest.build(
        step=spec.name, root=artifacts.run_dir, inputs=upstream + list(result.inputs), outputs=result.outputs,
        config_slice=config_slice(cfg, spec), metrics=metrics, started_at=started,
    )
    manifest.save(manifest_path)  # LAST: commits the phase
    seconds = time.perf_counter() - start
    console.print(f"[green]✓[/green] {spec.name} done in {seconds:.1f}s")
    return PhaseOutcome(spec.name, "ran", seconds, result.summary)


def print_summary(outcomes: list[PhaseOutcome], artifacts: ArtifactSchema, console: Console) -> None:
    """One row per phase: status, time, headline results."""
    table = Table(title=f"StreetVision run {artifacts.run_dir}")
    table.add_column("phase")
    table.add_column("status")
    table.add_column("time", justify="right")
    table.add_column("results")
    for o in outcomes:
        table.add_row(o.name, o.status, f"{o.seconds:.1f}s", "; ".join(f"{k}: {v}" for k, v in o.summary.items()))
    console.print(table)

