from pathlib import Path

from streetvision.io import StepManifest, atomic_write_bytes
from streetvision.io.manifest import utc_now


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
