import os
import subprocess
import sys
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
    finally:
        os.umask(previous)
    assert (tmp_path / "bundle").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "bundle" / "model" / "w.json").stat().st_mode & 0o777 == 0o644


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
