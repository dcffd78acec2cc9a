import os
import time
from pathlib import Path

import pytest

from streetvision.io import StepManifest, atomic_write_bytes, sha256_bytes
from streetvision.io.manifest import load_hash_memo, save_hash_memo, sha256_stat_cached, utc_now


def make(tmp_path: Path) -> StepManifest:
    atomic_write_bytes(tmp_path / "in" / "data.bin", b"input")
    atomic_write_bytes(tmp_path / "out" / "w.bin", bytes(range(256)))
    atomic_write_bytes(tmp_path / "out" / "sub" / "m.json", b"{}")
    manifest = StepManifest.build("phaseX", tmp_path, inputs=[tmp_path / "in" / "data.bin"],
                                  outputs=[tmp_path / "out"], config_slice={"lr": 0.1}, metrics={"mcc": 0.5},
                                  started_at=utc_now())
    manifest.save(tmp_path / "manifest.json")
    return StepManifest.load(tmp_path / "manifest.json")


def test_roundtrip_records_relative_paths_and_verifies(tmp_path):
    manifest = make(tmp_path)
    assert [r.path for r in manifest.outputs] == ["out/sub/m.json", "out/w.bin"]
    assert manifest.inputs[0].path == "in/data.bin"
    assert manifest.versions["torch"] and manifest.metrics == {"mcc": 0.5}
    assert manifest.verify(tmp_path) == []


def test_verify_catches_flipped_byte(tmp_path):
    manifest = make(tmp_path)
    data = bytearray((tmp_path / "out" / "w.bin").read_bytes())
    data[100] ^= 0x01
    (tmp_path / "out" / "w.bin").write_bytes(bytes(data))
    assert manifest.verify(tmp_path) == ["output changed: out/w.bin (sha256 differs)"]


def test_verify_catches_missing_output_and_changed_input(tmp_path):
    manifest = make(tmp_path)
    (tmp_path / "out" / "sub" / "m.json").unlink()
    (tmp_path / "in" / "data.bin").write_bytes(b"other input")
    assert manifest.verify(tmp_path) == [
        "output missing: out/sub/m.json",
        "input changed: in/data.bin (size 5 -> 11)",
    ]


def test_hash_memo_round_trip_skips_recent_and_changed_files(tmp_path, monkeypatch):
    from streetvision.io import manifest as manifest_mod

    old, recent = tmp_path / "old.bin", tmp_path / "recent.bin"
    atomic_write_bytes(old, b"old")
    atomic_write_bytes(recent, b"recent")
    os.utime(old, ns=(time.time_ns() - 10**10,) * 2)  # ten seconds ago
    monkeypatch.setattr(manifest_mod, "_HASH_CACHE", {})
    for path in (old, recent):
        sha256_stat_cached(path)
    memo = tmp_path / ".hash_memo.json"
    assert save_hash_memo(memo, tmp_path) == 1  # the file modified within RACY_NS is not persisted
    monkeypatch.setattr(manifest_mod, "_HASH_CACHE", {})
    assert load_hash_memo(memo, tmp_path) == 1
    monkeypatch.setattr(manifest_mod, "sha256_file", lambda p: pytest.fail(f"re-hashed {p}"))
    assert sha256_stat_cached(old) == sha256_bytes(b"old")
    memo.write_text("{not json")
    assert load_hash_memo(memo, tmp_path) == 0  # only a cache: a broken memo is ignored
