"""Every option of every config group composes into a valid config (lightning-hydra-template's habit): a new
option file that names an unknown key, a value of the wrong type or a choice out of range fails here."""

from __future__ import annotations

import pytest

from streetvision.config import CONFIG_DIR, load_config

# Options that need a value only the user can give (a path): composed with a placeholder.
REQUIRED = {"data/folder": ["data.root=/data/photos"], "data/csv": ["data.csv_path=/data/labels.csv"],
            "data/hf": ["data.hf.path=/data/dataset"]}
OPTIONS = sorted(f"{p.parent.name}/{p.stem}" for p in CONFIG_DIR.glob("*/*.yaml"))


def test_the_option_list_is_read_from_the_config_folder():
    assert {"data/synthetic", "data/folder", "model/dinov2_small", "hardware/gpu", "pipeline/full"} <= set(OPTIONS)


@pytest.mark.parametrize("option", OPTIONS)
def test_every_group_option_composes(option, tmp_path):
    group, name = option.split("/")
    cfg = load_config([f"{group}={name}", f"output_root={tmp_path}", *REQUIRED.get(option, [])])
    assert cfg.output_root == str(tmp_path)
    if group == "data":
        assert cfg.data.source == {"synthetic": "synthetic"}.get(name, name)
    if group == "model":
        assert cfg.model.backbone  # every model option names a backbone


def test_the_real_cpu_recipe_is_the_measured_family_recipe(tmp_path):
    base = [f"output_root={tmp_path}", "data=folder", "data.root=/data/photos"]
    # benchmarks/real_recipe.py's family_efficientnet_b0, the best exportable recipe of its cross-validation
    assert load_config([*base, "recipe=real_cpu"]) == load_config([*base, "training=small_data",
                                                                   "training.augment=validator",
                                                                   "model=efficientnet_b0"])
    assert load_config([*base, "recipe=real_cpu", "training.augment=none"]).training.augment == "none"  # CLI wins
