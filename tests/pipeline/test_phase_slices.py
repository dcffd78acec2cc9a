"""The real phases' up-to-date rules: a phase reruns when any config key or input it reads changes, and is skipped
when none does. A phase runs on a read-only view of its declared keys (``config_view``), so a read outside
them fails in every test that runs the phase; here: the view itself, the reasons for the keys read but not hashed,
and, on a committed micro run, that changing any key of a slice reruns exactly that phase and what is downstream
while changing any other key reruns nothing; a folder source reruns the splits when a file is added or edited."""

from __future__ import annotations

import shutil

import pytest
from omegaconf import OmegaConf
from omegaconf.errors import ConfigAttributeError, ReadonlyConfigError
from rich.console import Console

from streetvision.pipeline.artifacts import ArtifactSchema, load_run_config
from streetvision.pipeline.registry import config_view, load_phases
from streetvision.pipeline.runner import phases_to_run, plan, run_pipeline

QUIET = Console(quiet=True)

# Keys a phase may read without hashing them (PhaseSpec.reads), and why none changes what the phase computes.
UNHASHED_READS = {
    "hardware": "devices, loader workers, decode cache and compile change the speed, not what is computed (up to "
                "float noise); hardware.precision, which does, is in the hashed slice of the training phases",
    "hardware.num_workers": "the splits phase decodes in that many processes: faster, the same files and hashes",
    "logging": "experiment trackers observe the training, they do not change it",
    "pipeline.force": "the runner's own switch (start over instead of resuming), not an input",
    "training.progress_bar": "display only",
}


def covered(key: str, declared) -> bool:
    return any(key == d or key.startswith(d + ".") for d in declared)


@pytest.mark.parametrize("name", sorted(load_phases()))
def test_what_a_phase_reads_unhashed_is_explained(name):
    spec = load_phases()[name]
    assert all(key in UNHASHED_READS for key in spec.reads), spec.reads
    if "hardware" in spec.reads:
        assert "hardware.precision" in spec.config_keys


def test_a_phase_sees_only_its_slice_read_only(make_cfg):
    spec = load_phases()["phase2"]
    view = config_view(make_cfg(), spec)
    assert set(view) == {"phase2", "deploy"}
    assert view.phase2.metric == "mcc" and view.deploy.prior_roadwork == 0.5
    with pytest.raises(ConfigAttributeError, match="training"):
        view.training  # noqa: B018  (a read outside the slice)
    with pytest.raises(ReadonlyConfigError):
        view.phase2.metric = "validator_reward"
    nested = config_view(make_cfg(), load_phases()["phase4"])
    assert set(nested.training) == {"augment", "augment_level_probs", "camera", "camera_prob", "gradient_clip",
                                    "progress_bar"}


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


def test_keys_added_or_retired_later_leave_older_runs_slices_unchanged(make_cfg):
    """A key added later (model.adapter, ...) is left out of the slice at its neutral value, and a retired key
    (model.lora.use_dora) is put back at the value every older run had: their hashes match the older runs'."""
    from streetvision.pipeline.runner import config_slice

    spec = load_phases()["phase1"]
    old = config_slice(make_cfg(), spec)
    assert old["model"]["lora"]["use_dora"] is False and "adapter" not in old["model"]
    assert "adapter_search" not in old["model"] and "optimizer" not in old["training"]
    new = config_slice(make_cfg("model.adapter=dora"), spec)
    assert new["model"]["adapter"] == "dora" and new != old
