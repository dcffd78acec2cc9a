import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from streetvision.errors import IntegrityError
from streetvision.io import (
    atomic_path,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_safetensors,
    read_json,
    read_verified,
    remove_stale_temps,
    replace_dir,
    sha256_file,
)


def visible(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if not p.name.startswith("."))


def test_writers_return_sha256_of_what_they_wrote(tmp_path):
    for path, write in [
        (tmp_path / "a.bin", lambda p: atomic_write_bytes(p, b"hello")),
        (tmp_path / "b.json", lambda p: atomic_write_json(p, {"x": 1, "nan": float("nan")})),
        (tmp_path / "c.safetensors", lambda p: atomic_write_safetensors(p, {"w": torch.arange(4.0)})),
    ]:
        assert write(path) == sha256_file(path)
    assert read_json(tmp_path / "b.json") == {"nan": None, "x": 1}
    assert torch.equal(load_file(tmp_path / "c.safetensors")["w"], torch.arange(4.0))


def test_exception_between_write_and_replace_keeps_previous_file(tmp_path, monkeypatch):
    target = tmp_path / "model.json"
    atomic_write_json(target, {"version": 1})

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_json(target, {"version": 2})
    monkeypatch.undo()
    assert read_json(target) == {"version": 1}
    assert os.listdir(tmp_path) == ["model.json"]  # temp file cleaned up


def test_killed_process_between_write_and_replace_keeps_previous_file(tmp_path):
    target = tmp_path / "weights.bin"
    atomic_write_bytes(target, b"old" * 1000)
    script = textwrap.dedent(f"""
        import os, signal
        from streetvision.io import atomic_write_bytes
        os.replace = lambda src, dst: os.kill(os.getpid(), signal.SIGKILL)
        atomic_write_bytes({str(target)!r}, b"new" * 100000)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert proc.returncode == -9
    assert target.read_bytes() == b"old" * 1000
    assert visible(tmp_path) == ["weights.bin"]  # the orphan temp is hidden, never at the target name


def test_atomic_path_for_library_writers_discards_on_error(tmp_path):
    target = tmp_path / "out.csv"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("partial")
            raise RuntimeError("library failed")
    assert not target.exists() and os.listdir(tmp_path) == []


def test_replace_dir_swaps_whole_directory(tmp_path):
    target = tmp_path / "backbone"
    with replace_dir(target) as d:
        (d / "a.txt").write_text("1")
    with pytest.raises(ValueError):
        with replace_dir(target) as d:
            (d / "a.txt").write_text("2")
            raise ValueError
    assert (target / "a.txt").read_text() == "1"
    with replace_dir(target) as d:
        (d / "b.txt").write_text("3")
    assert visible(target) == ["b.txt"] and visible(tmp_path) == ["backbone"]


def test_read_verified_rejects_changed_file(tmp_path):
    digest = atomic_write_bytes(tmp_path / "f", b"abc")
    assert read_verified(tmp_path / "f", digest) == b"abc"
    (tmp_path / "f").write_bytes(b"abd")
    with pytest.raises(IntegrityError, match="f"):
        read_verified(tmp_path / "f", digest)


def test_replace_dir_gives_the_umask_mode_not_mkdtemps_0700(tmp_path):
    previous = os.umask(0o022)
    try:
        with replace_dir(tmp_path / "bundle") as d:
            (d / "model").mkdir()
            (d / "model" / "w.json").write_text("{}")
            fd, name = tempfile.mkstemp(dir=d)  # what a library writing through a temp file leaves: 0600
            os.close(fd)
            os.replace(name, d / "model.safetensors")
    finally:
        os.umask(previous)
    assert (tmp_path / "bundle").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "bundle" / "model" / "w.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "bundle" / "model.safetensors").stat().st_mode & 0o777 == 0o644


def test_remove_stale_temps_takes_only_writer_leftovers(tmp_path):
    (tmp_path / "a" / ".backbone.tmp-x1_y2" / "sub").mkdir(parents=True)
    (tmp_path / "a" / ".model.json.tmp-0123456789ab").write_text("{")
    (tmp_path / "a" / ".backbone.old-0123456789ab").mkdir()
    for keep in ("a/.lock", "a/.hash_memo.json", "a/model.json", "a/notes.tmp-1", "a/.tmp-1"):
        (tmp_path / keep).write_text("")
    removed = remove_stale_temps(tmp_path)
    assert sorted(p.name for p in removed) == [".backbone.old-0123456789ab", ".backbone.tmp-x1_y2",
                                               ".model.json.tmp-0123456789ab"]
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [".hash_memo.json", ".lock", ".tmp-1",
                                                                  "model.json", "notes.tmp-1"]


# -- durability: the order of fsync and rename, checked by intercepting the calls --------------------------------

@pytest.fixture
def syscalls(monkeypatch):
    """Every os.fsync (what it synced: inode, directory or file, size) and os.replace (the inode it moved and
    where), in call order."""
    import stat

    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        st = os.fstat(fd)
        events.append(("fsync", st.st_ino, "dir" if stat.S_ISDIR(st.st_mode) else "file", st.st_size))
        return real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", os.stat(src).st_ino, Path(dst)))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    return events


def assert_durable_commit(events, target: Path, size: int | None = None):
    """The rename that commits ``target`` comes after an fsync of that very file (holding all its bytes) and
    before an fsync of the directory holding it: after a power loss the name points at complete data."""
    commits = [i for i, e in enumerate(events) if e[0] == "replace" and e[2] == target]
    assert len(commits) == 1, events
    i, inode = commits[0], events[commits[0]][1]
    synced = [e for e in events[:i] if e[0] == "fsync" and e[1] == inode]
    assert synced, f"{target.name} was renamed into place before its data was fsynced: {events}"
    if size is not None:
        assert synced[-1][3] == size  # synced after the last write, not half way
    parent = target.parent.stat().st_ino
    assert any(e[:3] == ("fsync", parent, "dir") for e in events[i + 1:]), "the rename itself was never fsynced"


def test_atomic_write_syncs_the_data_before_the_rename_and_the_directory_after(tmp_path, syscalls):
    data = b"weights" * 1000
    atomic_write_bytes(tmp_path / "w.bin", data)
    assert_durable_commit(syscalls, tmp_path / "w.bin", len(data))


def test_atomic_path_syncs_what_a_library_wrote_before_the_rename(tmp_path, syscalls):
    target = tmp_path / "sub" / "model.onnx"
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as handle:  # a library writing the temp file itself, without fsync
            handle.write(b"x" * 4096)
    assert_durable_commit(syscalls, target, 4096)
    assert target.read_bytes() == b"x" * 4096


def test_atomic_path_without_fsync_still_renames_atomically_but_syncs_nothing(tmp_path, syscalls):
    with atomic_path(tmp_path / "cache.bin", fsync=False) as tmp:
        tmp.write_bytes(b"regenerable")
    assert [e[0] for e in syscalls] == ["replace"] and (tmp_path / "cache.bin").read_bytes() == b"regenerable"


def test_replace_dir_syncs_every_file_before_the_swap_and_the_parent_after(tmp_path, syscalls):
    target = tmp_path / "backbone"
    with replace_dir(target) as d:
        (d / "config.json").write_text("{}")
        (d / "weights").mkdir()
        (d / "weights" / "model.safetensors").write_bytes(b"w" * 100)
    inodes = {p.stat().st_ino for p in target.rglob("*") if p.is_file()}
    swap = next(i for i, e in enumerate(syscalls) if e[0] == "replace" and e[2] == target)
    assert inodes <= {e[1] for e in syscalls[:swap] if e[0] == "fsync"}
    assert any(e[:3] == ("fsync", tmp_path.stat().st_ino, "dir") for e in syscalls[swap + 1:])
    syscalls.clear()
    with replace_dir(target) as d:  # replacing an existing directory: the old one is moved aside first
        (d / "b.txt").write_text("2")
    assert [e[2] for e in syscalls if e[0] == "replace"][-1] == target
    assert visible(target) == ["b.txt"] and visible(tmp_path) == ["backbone"]


# -- canonical JSON, CSV, safetensors metadata, checksums, leftovers ----------------------------------------------

def test_canonical_json_is_sorted_indented_strict_and_plain():
    import numpy as np

    from streetvision.io.atomic import dumps_json

    obj = {"b": (1.5, float("inf")), "a": {"z": np.float32(0.25), "y": np.float64("nan"), "x": torch.tensor(3)},
           "c": [Path("runs/x"), -0.0, [float("-inf")]], 7: np.int64(2)}
    assert dumps_json(obj) == (
        '{\n  "7": 2,\n  "a": {\n    "x": 3,\n    "y": null,\n    "z": 0.25\n  },\n  "b": [\n    1.5,\n    null\n'
        '  ],\n  "c": [\n    "runs/x",\n    -0.0,\n    [\n      null\n    ]\n  ]\n}\n')


def test_csv_writer_round_trips_and_returns_the_hash(tmp_path):
    import csv

    from streetvision.io.atomic import atomic_write_csv

    rows = [["a,b", 1, 0.5], ["ü", None, "x\ny"]]
    digest = atomic_write_csv(tmp_path / "t.csv", ["name", "n", "v"], iter(rows))
    assert digest == sha256_file(tmp_path / "t.csv")
    with open(tmp_path / "t.csv", newline="", encoding="utf-8") as handle:
        assert list(csv.reader(handle)) == [["name", "n", "v"], ["a,b", "1", "0.5"], ["ü", "", "x\ny"]]


def test_safetensors_writer_keeps_metadata(tmp_path):
    from safetensors import safe_open

    atomic_write_safetensors(tmp_path / "w.safetensors", {"w": torch.ones(2)}, {"format": "pt", "step": "7"})
    with safe_open(tmp_path / "w.safetensors", "pt") as handle:
        assert handle.metadata() == {"format": "pt", "step": "7"}


def test_a_checksum_mismatch_names_the_file_both_digests_and_the_fix(tmp_path):
    path = tmp_path / "weights.bin"
    path.write_bytes(b"new")
    expected = "ab" * 32
    with pytest.raises(IntegrityError) as exc:
        read_verified(path, expected)
    actual = sha256_file(path)
    assert exc.value.message == (f"Checksum mismatch for '{path}': expected {expected[:16]}..., found "
                                 f"{actual[:16]}...")
    assert exc.value.fix == "the file was modified or corrupted after it was written; regenerate it or restore it."


def test_a_filesystem_that_cannot_open_directories_still_gets_atomic_writes(tmp_path, monkeypatch):
    real_open = os.open

    def no_directories(path, flags, *args, **kwargs):
        if Path(path).is_dir():
            raise PermissionError("directories cannot be opened here")
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", no_directories)
    atomic_write_bytes(tmp_path / "a.bin", b"data")
    assert (tmp_path / "a.bin").read_bytes() == b"data"


def test_leftovers_that_cannot_be_removed_or_vanish_meanwhile_do_not_stop_the_cleanup(tmp_path, monkeypatch):
    (tmp_path / ".backbone.tmp-abc" / "sub").mkdir(parents=True)
    (tmp_path / ".backbone.tmp-abc" / "sub" / "locked.bin").write_text("x")
    (tmp_path / ".model.json.tmp-0123456789ab").write_text("{")
    (tmp_path / ".gone.json.tmp-0123456789ab").write_text("{")
    real_unlink = os.unlink

    def unlink(path, *args, **kwargs):
        if str(path).endswith("locked.bin"):
            raise PermissionError("in use")  # another user's file, say
        if str(path).endswith(".gone.json.tmp-0123456789ab"):
            real_unlink(path, *args, **kwargs)
            raise FileNotFoundError(path)  # removed by someone else between the listing and the unlink
        return real_unlink(path, *args, **kwargs)

    monkeypatch.setattr(os, "unlink", unlink)
    removed = remove_stale_temps(tmp_path)
    assert sorted(p.name for p in removed) == [".backbone.tmp-abc", ".gone.json.tmp-0123456789ab",
                                               ".model.json.tmp-0123456789ab"]
    assert not (tmp_path / ".model.json.tmp-0123456789ab").exists()
