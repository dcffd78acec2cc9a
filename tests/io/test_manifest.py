import json
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


def git(repo, *args):
    import subprocess

    return subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", *args], cwd=repo, check=True,
                          capture_output=True, text=True).stdout.strip()


def test_git_commit_is_the_head_sha_marked_dirty_only_by_changes_to_tracked_files(tmp_path):
    from streetvision.io.manifest import git_commit

    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "a.py").write_text("x = 1\n")
    git(repo, "add", "a.py")
    git(repo, "commit", "-q", "-m", "one")
    head = git(repo, "rev-parse", "HEAD")
    assert git_commit(repo) == head and len(head) == 40
    (repo / "untracked.txt").write_text("scratch")
    assert git_commit(repo) == head  # untracked files do not make the code dirty
    (repo / "a.py").write_text("x = 2\n")
    assert git_commit(repo) == f"{head}-dirty"
    assert git_commit(tmp_path) is None  # not a checkout
    assert git_commit() == git_commit(Path(__file__).resolve().parent)  # default: where streetvision lives


def test_a_built_manifest_records_status_times_versions_and_commit(tmp_path):
    from datetime import datetime, timezone

    from streetvision.io.manifest import git_commit, library_versions

    before = datetime.now(timezone.utc).replace(microsecond=0)
    manifest = make(tmp_path)
    assert (manifest.step, manifest.status) == ("phaseX", "completed")
    finished = datetime.fromisoformat(manifest.finished_at)
    assert finished.tzinfo is not None and finished.utcoffset().total_seconds() == 0 and finished >= before
    assert datetime.fromisoformat(manifest.started_at) <= finished
    assert manifest.git_commit == git_commit() and manifest.versions == library_versions()
    assert utc_now().endswith("+00:00")


def test_library_versions_skip_what_is_not_installed(monkeypatch):
    import importlib.metadata

    from streetvision.io import manifest as manifest_mod

    monkeypatch.setattr(manifest_mod, "TRACKED_LIBRARIES", ("not-a-real-package-xyz", "numpy"))
    assert list(manifest_mod.library_versions()) == ["numpy"]
    assert manifest_mod.library_versions()["numpy"] == importlib.metadata.version("numpy")


def test_records_skip_hidden_files_in_directories_and_a_missing_path_is_named(tmp_path):
    from streetvision.errors import IntegrityError
    from streetvision.io.manifest import records_for

    atomic_write_bytes(tmp_path / "d" / "a.bin", b"a")
    (tmp_path / "d" / ".a.bin.tmp-0123").write_bytes(b"partial")
    (tmp_path / "d" / "x.json").write_bytes(b"{}")
    assert [r.path for r in records_for([tmp_path / "d"], tmp_path)] == ["d/a.bin", "d/x.json"]
    with pytest.raises(IntegrityError) as exc:
        records_for([tmp_path / "nope.bin"], tmp_path)
    assert (exc.value.message, exc.value.fix) == (f"Cannot record '{tmp_path / 'nope.bin'}': it does not exist.",
                                                  "the step must write it first.")


def test_a_manifest_without_inputs_or_outputs_loads_and_a_malformed_one_names_the_fix(tmp_path):
    from streetvision.errors import IntegrityError

    minimal = {"step": "s", "status": "completed", "started_at": "t0", "finished_at": "t1", "config_hash": "h"}
    (tmp_path / "m.json").write_text(json.dumps(minimal))
    loaded = StepManifest.load(tmp_path / "m.json")
    assert loaded.inputs == [] and loaded.outputs == [] and loaded.verify(tmp_path) == []
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(IntegrityError) as exc:
        StepManifest.load(tmp_path / "bad.json")
    assert exc.value.message.startswith(f"Manifest '{tmp_path / 'bad.json'}' is unreadable or malformed (")
    assert exc.value.fix == "delete it and rerun the step (pipeline.force=true)."


def test_the_memo_is_saved_only_when_something_was_hashed_and_only_for_current_files(tmp_path, monkeypatch):
    from streetvision.io import manifest as manifest_mod

    monkeypatch.setattr(manifest_mod, "_HASH_CACHE", {})
    monkeypatch.setattr(manifest_mod, "RACY_NS", 0)
    outside, stale, gone, kept = tmp_path / "elsewhere.bin", tmp_path / "run" / "a.bin", tmp_path / "run" / "b.bin", \
        tmp_path / "run" / "c.bin"
    for f in (outside, stale, gone, kept):
        atomic_write_bytes(f, f.name.encode())
        sha256_stat_cached(f)  # in this order: the entries that are skipped come first
    atomic_write_bytes(stale, b"rewritten")  # its entry no longer matches the file
    gone.unlink()
    memo = tmp_path / "run" / ".hash_memo.json"
    assert save_hash_memo(memo, tmp_path / "run") == 1  # only c.bin
    assert save_hash_memo(memo, tmp_path / "run") is None  # nothing hashed since: nothing written
    assert load_hash_memo(memo, tmp_path / "run") == 1
    assert save_hash_memo(memo, tmp_path / "run") is None  # nothing hashed since loading either
    raw = json.loads(memo.read_text())
    raw["version"] = 99
    memo.write_text(json.dumps(raw))
    assert load_hash_memo(memo, tmp_path / "run") == 0  # another memo format is ignored


def test_a_file_modified_exactly_at_the_racy_limit_is_still_persisted(tmp_path, monkeypatch):
    from streetvision.io import manifest as manifest_mod

    monkeypatch.setattr(manifest_mod, "_HASH_CACHE", {})
    atomic_write_bytes(tmp_path / "f.bin", b"x")
    sha256_stat_cached(tmp_path / "f.bin")
    mtime = os.stat(tmp_path / "f.bin").st_mtime_ns
    monkeypatch.setattr(manifest_mod.time, "time_ns", lambda: mtime + manifest_mod.RACY_NS)
    assert save_hash_memo(tmp_path / "memo.json", tmp_path) == 1


def test_verify_reports_every_missing_or_changed_file(tmp_path):
    manifest = make(tmp_path)
    (tmp_path / "out" / "w.bin").unlink()
    (tmp_path / "out" / "sub" / "m.json").unlink()
    (tmp_path / "in" / "data.bin").write_bytes(b"changed")
    assert manifest.verify(tmp_path) == ["output missing: out/sub/m.json", "output missing: out/w.bin",
                                         "input changed: in/data.bin (size 5 -> 7)"]
