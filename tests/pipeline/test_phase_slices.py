"""The real phases' up-to-date rules: a phase reruns when any config key or input it reads changes, and is skipped
when none does. Three angles: the config keys each phase's code reads are all in its declared slice (read from the
source, no run); on a committed micro run, changing any key of a slice reruns exactly that phase and what is
downstream, and changing any other key reruns nothing; a folder source reruns the splits when a file is added or
edited."""

from __future__ import annotations

import ast
import inspect
import shutil
import textwrap

import pytest
from omegaconf import OmegaConf
from rich.console import Console

from streetvision.pipeline.artifacts import load_run_config
from streetvision.pipeline.artifacts import ArtifactSchema
from streetvision.pipeline.registry import load_phases
from streetvision.pipeline.runner import phases_to_run, plan, run_pipeline

QUIET = Console(quiet=True)

WHOLE_CONFIG = "<the whole config, handed to something the scan cannot follow>"
# Keys a phase reads that deliberately stay out of its slice, and why.
RUN_IDENTITY = {k: "names the run directory itself: another value is another run"
                for k in ("output_root", "experiment_name", "run_id")}
RUNNER = {"pipeline": "the runner's own settings (force, phases), not an input of the phase"}
HOW_NOT_WHAT = {"hardware": "devices, loader workers, decode cache and compile change the speed, not what is "
                            "computed (up to float noise); hardware.precision, which does, is in the slice",
                "logging": "experiment trackers observe the training, they do not change it",
                "training.progress_bar": "display only"}
NOT_IN_SLICE = {"splits": {}, "phase2": {}, "phase5": {}, "evaluation": {},
                "phase1": {**RUN_IDENTITY, **RUNNER, **HOW_NOT_WHAT},
                "phase4": {**RUN_IDENTITY, **RUNNER, **HOW_NOT_WHAT},
                "phase6": {**RUN_IDENTITY, WHOLE_CONFIG: "to_plain(cfg): the bundle's lineage records the hash of "
                                                         "the whole config as provenance, nothing it computes"}}
CONFIG_METHODS = {"copy", "get", "items", "keys", "values"}


def _chain(node: ast.AST) -> list[str] | None:
    """``a.b.c`` -> ["a", "b", "c"]; None when the expression is not a plain attribute chain on a name."""
    names = []
    while isinstance(node, ast.Attribute):
        names.append(node.attr)
        node = node.value
    return [node.id, *reversed(names)] if isinstance(node, ast.Name) else None


def _config_key(chain: list[str] | None, aliases: dict[str, str]) -> str | None:
    """The dotted config key an attribute chain reads ("" for the whole config), or None if it is not one."""
    if not chain:
        return None
    if chain[:2] == ["ctx", "cfg"]:
        rest, prefix = chain[2:], ""
    elif chain[0] in aliases:
        rest, prefix = chain[1:], aliases[chain[0]]
    else:
        return None
    return ".".join(p for p in (prefix, *rest) if p)


def _targets(func: ast.AST, namespace: dict, local: dict[str, list[ast.AST]]) -> list | None:
    """The streetvision functions a call may refer to (``f(...)``, ``Class.method(...)``, or a local name bound
    to one of several, ``train = a if x else b``) as (callable, function) pairs; None if any is something else."""
    if isinstance(func, ast.Name) and func.id in local:
        found = [_targets(expr, namespace, {}) for expr in local[func.id]]
        return None if any(f is None for f in found) else [pair for f in found for pair in f]
    chain = _chain(func)
    if not chain or chain[0] not in namespace:
        return None
    obj = namespace[chain[0]]
    for attr in chain[1:]:
        obj = getattr(obj, attr, None)
    target = inspect.unwrap(getattr(obj, "__func__", obj)) if callable(obj) else None
    if not inspect.isfunction(target) or not target.__module__.startswith("streetvision"):
        return None
    return [(obj, target)]


def config_reads(fn, bindings: dict[str, str], seen: set | None = None) -> set[str]:
    """Config keys ``fn`` reads when its parameters ``bindings`` hold those config keys ("" = the whole config;
    inside a phase function ``ctx.cfg`` is the config). Names assigned from a key (``p2 = cfg.phase2``) are
    aliases; a key handed to a streetvision function is followed into it, and one handed to anything else
    (a library, a class) counts as read in full."""
    seen = set() if seen is None else seen
    if (fn, tuple(sorted(bindings.items()))) in seen:
        return set()
    seen.add((fn, tuple(sorted(bindings.items()))))
    tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    parents = {child: parent for parent in ast.walk(tree) for child in ast.iter_child_nodes(parent)}
    aliases, alias_sources, local = dict(bindings), set(), {}
    for _ in range(3):  # aliases of aliases
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign):
                target, value = node.targets[0], node.value
                pairs = (list(zip(target.elts, value.elts)) if isinstance(target, ast.Tuple)
                         and isinstance(value, ast.Tuple) else [(target, value)])
                for name, expr in pairs:
                    copied = isinstance(expr, ast.Call) and isinstance(expr.func, ast.Attribute) and \
                        expr.func.attr == "copy" and not expr.args  # training = cfg.training.copy()
                    source = expr.func if copied else expr
                    key = _config_key(_chain(expr.func.value if copied else expr), aliases)
                    if isinstance(name, ast.Name) and key is not None:
                        aliases[name.id], _ = key, alias_sources.add(source)
                    elif isinstance(name, ast.Name) and isinstance(expr, ast.IfExp):
                        local[name.id] = [expr.body, expr.orelse]
    reads: set[str] = set()
    for node in ast.walk(tree):
        if (not isinstance(node, (ast.Attribute, ast.Name)) or node in alias_sources
                or isinstance(parents.get(node), ast.Attribute) or isinstance(node.ctx, ast.Store)):
            continue
        chain = _chain(node)
        key = _config_key(chain, aliases)
        if key is None:
            continue
        parent = parents.get(node)
        if isinstance(parent, ast.Call) and parent.func is node and chain[-1] in CONFIG_METHODS:
            reads.add(key.rpartition(".")[0])  # cfg.training.copy(): reads training
            continue
        arg = isinstance(parent, ast.Call) and node is not parent.func
        targets = _targets(parent.func, fn.__globals__, local) if arg else None
        if targets is None:
            reads.add(key or WHOLE_CONFIG)
            continue
        for obj, target in targets:
            bound = inspect.signature(obj).bind_partial(
                *[None if a is not node else "HERE" for a in parent.args],
                **{k.arg: (None if k.value is not node else "HERE") for k in parent.keywords if k.arg})
            param = next(name for name, v in bound.arguments.items() if v == "HERE")
            reads |= config_reads(target, {param: key}, seen)
    return reads


def reads_of_phase(spec) -> set[str]:
    """Every config key a phase's function reads, following the config into the functions it hands it to."""
    return config_reads(spec.run, {})


def covered(key: str, declared) -> bool:
    return any(key == d or key.startswith(d + ".") for d in declared)


@pytest.mark.parametrize("name", sorted(load_phases()))
def test_every_config_key_a_phase_reads_is_in_its_slice_or_explained(name):
    spec = load_phases()[name]
    reads = reads_of_phase(spec)
    assert reads, f"found no config reads in {spec.run.__module__}: the scan is broken"
    uncovered = sorted(k for k in reads if not covered(k, spec.config_keys) and not covered(k, NOT_IN_SLICE[name]))
    assert uncovered == [], f"{name} reads {uncovered} but its config_keys are {spec.config_keys}"


def test_the_scan_sees_aliases_tuple_assignment_and_hand_offs():
    phase2_reads = reads_of_phase(load_phases()["phase2"])
    assert {"phase2.metric", "phase2.n_thresholds", "phase2.max_fnr", "deploy.prior_roadwork"} <= phase2_reads
    assert {"phase6.model_card.version", "phase6.onnx"} <= reads_of_phase(load_phases()["phase6"])  # bundle/export.py
    phase1 = reads_of_phase(load_phases()["phase1"])
    assert {"hardware.devices", "model", "training.batch_size", "phase1.score_splits"} <= phase1


# -- on a committed micro run (phase1, phase2, phase5, phase6): what would rerun --------------------------------

def leaves(node, prefix=""):
    """(dotted key, value) of every leaf under a plain container."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield from leaves(v, f"{prefix}.{k}" if prefix else str(k))
    else:
        yield prefix, node


def changed(value):
    """Another value of the same kind (the up-to-date check hashes values; it does not validate them)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, str):
        return value + "_changed"
    if isinstance(value, list):
        return [*value, "changed"]
    return "changed"


@pytest.fixture(scope="module")
def committed_run(micro_run):
    # name the phases: another test's `export` leaves pipeline.phases=[phase6] in the run's saved config.yaml
    cfg = load_run_config(micro_run, ["pipeline.phases=[phase1,phase2,phase5,phase6]"])
    base = OmegaConf.to_container(cfg, resolve=True)
    art = ArtifactSchema(micro_run)
    assert [s.name for s in phases_to_run(cfg, art, plan(cfg, art))] == []  # everything committed and current
    return base, art


def rerun_after(base, art, key, value):
    cfg = OmegaConf.create(base)
    OmegaConf.update(cfg, key, value, force_add=True)
    ordered = plan(cfg, art)
    return [s.name for s in ordered], {s.name for s in phases_to_run(cfg, art, ordered)}


def downstream(planned, first, registry):
    out = set(first)
    for name in planned:  # planned is in dependency order
        spec = registry[name]
        if out & {*spec.needs, *spec.uses}:
            out.add(name)
    return out


def test_changing_any_key_of_a_phase_slice_reruns_that_phase_and_what_is_downstream(committed_run):
    base, art = committed_run
    registry = load_phases()
    planned = ["splits", "phase1", "phase2", "phase5", "phase6"]
    checked = 0
    for name in planned:
        for declared in registry[name].config_keys:
            for key, value in leaves(OmegaConf.to_container(OmegaConf.create(base)).get(declared.split(".")[0]),
                                     declared.split(".")[0]):
                if not covered(key, [declared]) or key.startswith("pipeline"):
                    continue
                order, rerun = rerun_after(base, art, key, changed(value))
                readers = {p for p in order if covered(key, registry[p].config_keys)}
                assert rerun == downstream(order, readers, registry), key
                assert name in rerun, key
                checked += 1
    assert checked > 50


def test_changing_a_key_no_planned_phase_reads_reruns_nothing(committed_run):
    base, art = committed_run
    registry = load_phases()
    slices = [k for p in ("splits", "phase1", "phase2", "phase5", "phase6") for k in registry[p].config_keys]
    others = [(k, v) for k, v in leaves(base) if not covered(k, slices)
              and not covered(k, ["pipeline", "output_root", "experiment_name", "run_id"])]
    assert {"phase4.epochs", "evaluation.n_resamples", "hardware.num_workers", "logging.loggers"} <= {
        k for k, _ in others}
    for key, value in others:
        assert rerun_after(base, art, key, changed(value))[1] == set(), key


# -- a folder source: the splits phase sees added and edited files -----------------------------------------------

def test_the_splits_phase_reruns_when_a_file_is_added_or_edited_under_data_root(make_cfg, tmp_path):
    from streetvision.data.synthetic import write_dataset

    root = tmp_path / "data"
    write_dataset(root, n=24, seed=0, size=64)
    cfg = make_cfg("pipeline.phases=[splits]", "data=folder", f"data.root={root}")

    def statuses():
        return [(o.name, o.status) for o in run_pipeline(cfg, QUIET)]

    assert statuses() == [("splits", "ran")]
    assert statuses() == [("splits", "up to date")]
    src = sorted((root / "roadwork").glob("*.png"))[0]
    shutil.copy(src, root / "roadwork" / "added.png")  # a new file: splits.json must list it
    assert statuses() == [("splits", "ran")]
    assert "roadwork/added.png" in (ArtifactSchema.from_config(cfg).splits_json).read_text()
    assert statuses() == [("splits", "up to date")]
    write_dataset(tmp_path / "other", n=2, seed=9, size=64)
    shutil.copy(sorted((tmp_path / "other" / "roadwork").glob("*.png"))[0], root / "roadwork" / "added.png")
    assert statuses() == [("splits", "ran")]  # same name, new content
