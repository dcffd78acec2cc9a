"""benchmarks/addons.py: the real-photo CV summary pairs each add-on with its baseline per fold-run, and (slow) the
domain-shift part runs every arm end to end at tiny sizes and writes its results where asked."""

import json

import pytest

from tests.benchmarks.conftest import benchmark_script


@pytest.fixture(scope="module")
def addons():
    with benchmark_script("addons") as module:
        yield module


def test_real_cv_rows_pair_each_addon_with_its_baseline(addons):
    def row(recipe, fold, clean, mix):
        return {"recipe": recipe, "repeat": 0, "fold": fold, "clean_mcc": clean, "mix_mcc": mix}

    doc = {"design": {"folds": 3}, "fold_runs": [
        row("addon_lora", 0, 0.5, 0.4), row("addon_lora", 1, 0.6, 0.5), row("addon_dora", 0, 0.7, 0.4),
        row("addon_dora", 1, 0.8, 0.6), row("addon_full_adamw", 0, 0.5, 0.5), row("addon_full_profit", 0, 0.4, 0.3)]}
    out = addons.real_cv_rows(doc)
    assert abs(out["dora"]["clean_mcc_vs_lora"]["mean_diff"] - 0.2) < 1e-9
    assert out["dora"]["mix_mcc_vs_lora"]["n"] == 2 and "mix_mcc_vs_lora" not in out["lora"]
    assert abs(out["full_profit"]["mix_mcc_vs_full_adamw"]["mean_diff"] + 0.2) < 1e-9


@pytest.mark.slow
def test_quick_domain_shift_runs_every_arm_and_compares_policies(addons, tmp_path, monkeypatch):
    monkeypatch.setattr(addons, "RESULTS", tmp_path)
    monkeypatch.setattr("sys.argv", ["addons.py", "--part", "domain_shift", "--quick", "--seeds", "1",
                                     "--resamples", "20", "--workdir", str(tmp_path / "work")])
    assert addons.main() == 0
    doc = json.loads((tmp_path / "addons_quick.json").read_text())
    assert set(doc["domain_shift"]["domain_shift"]) == set(addons.ARMS)
    assert "mix_mcc_vs_lora" in doc["domain_shift"]["domain_shift"]["dora"]
    assert "clean_mcc_vs_full_adamw" in doc["domain_shift"]["domain_shift"]["full_profit"]
    crc = doc["domain_shift"]["crc_vs_ltt_on_test"]["seed0"]
    assert {"ltt", "crc_classwise"} <= set(crc) and "set_miss_rate" in crc["crc_classwise"]["roadwork"]
    assert [r["add-on"] for r in doc["table"]] == list(addons.ARMS)
