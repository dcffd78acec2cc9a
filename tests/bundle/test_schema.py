"""bundle.json checks on a tiny hand-made bundle (no model): listed files, unlisted files at any depth, formats,
paths, schema fields. Fast, so the mutation run of bundle/schema.py can use it."""

import json
import pickle

import pytest

from streetvision.bundle.schema import (
    BUNDLE_INDEX,
    REQUIRED,
    check_files,
    check_format,
    check_safetensors_header,
    load_index,
    safe_member,
)
from streetvision.errors import IntegrityError
from streetvision.io import atomic_write_safetensors, sha256_file


def make_bundle(root):
    """A bundle directory with files at three depths, all listed; returns (dir, index)."""
    import torch

    files = {"policy.json": b'{"t": 0.5}', "model/model.json": b'{"class_names": ["no_roadwork", "roadwork"]}', "model/backbone/config.json": b"{}"}
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    atomic_write_safetensors(root / "model" / "head.safetensors", {"w": torch.ones(2)})
    listed = [*files, "model/head.safetensors"]
    index = {"schema_version": 1, "policy": {"policy_type": "threshold", "policy_path": "policy.json"},
             "class_names": ["no_roadwork", "roadwork"], "model": {"dir": "model"}, "preprocess": "p.json",
             "probes": "probes.json", "lineage": {},
             "files": [{"path": rel, "sha256": sha256_file(root / rel), "size": (root / rel).stat().st_size}
                       for rel in listed]}
    (root / BUNDLE_INDEX).write_text(json.dumps(index))
    return root, index


def test_a_complete_bundle_passes_and_counts_its_files(tmp_path):
    root, index = make_bundle(tmp_path)
    assert check_files(root, index) == 4
    assert load_index(root) == index


@pytest.mark.parametrize("unlisted", ["extra.json", "model/unlisted.json", "model/backbone/deep/x.txt",
                                      "model/.hidden.json"])
def test_an_unlisted_file_anywhere_in_the_bundle_is_refused_by_name(tmp_path, unlisted):
    root, index = make_bundle(tmp_path)
    (root / unlisted).parent.mkdir(parents=True, exist_ok=True)
    (root / unlisted).write_text("{}")
    with pytest.raises(IntegrityError, match=f"'{unlisted}' is in the bundle but not listed"):
        check_files(root, index)


def test_empty_directories_and_the_index_itself_are_not_unlisted_files(tmp_path):
    root, index = make_bundle(tmp_path)
    (root / "model" / "empty").mkdir()
    assert check_files(root, index) == 4


@pytest.mark.parametrize("edit", ["content", "size"])
def test_a_listed_file_that_changed_is_named(tmp_path, edit):
    root, index = make_bundle(tmp_path)
    target = root / "model" / "model.json"
    target.write_bytes(b"{ }" if edit == "size" else b"[]")  # "[]" keeps the size, changes the hash
    with pytest.raises(IntegrityError, match="'model/model.json' does not match its SHA-256"):
        check_files(root, index)


def test_a_listed_file_that_is_missing_is_named(tmp_path):
    root, index = make_bundle(tmp_path)
    (root / "model" / "backbone" / "config.json").unlink()
    with pytest.raises(IntegrityError, match="'model/backbone/config.json' is listed in bundle.json but missing"):
        check_files(root, index)


@pytest.mark.parametrize(("name", "data", "message"), [
    ("w.bin", b"{}", "disallowed format"),
    ("noext", b"{}", "no extension"),
    ("w.json", pickle.dumps({"a": 1}, protocol=2), "pickle"),
    ("w.json", pickle.dumps({"a": 1}, protocol=5), "pickle"),
    ("w.csv", b"PK\x03\x04zip", "pickle"),
    ("w.safetensors", pickle.dumps([1]), "pickle"),
    ("w.safetensors", b"\x10\x00\x00\x00\x00\x00\x00\x00[1, 2, 3, 4, 5, 6]", "not a safetensors file"),
    ("w.safetensors", b"\x02\x00", "not a safetensors file"),
    ("w.safetensors", (2**40).to_bytes(8, "little") + b"{}", "not a safetensors file"),
])
def test_formats_that_could_unpickle_or_are_not_what_they_claim_are_refused(tmp_path, name, data, message):
    (tmp_path / name).write_bytes(data)
    with pytest.raises(IntegrityError, match=message):
        check_format(tmp_path / name, name)


def test_allowed_formats_pass_including_onnx_whose_bytes_may_look_like_a_pickle(tmp_path):
    for name, data in [("a.json", b"{}"), ("a.PNG", b"\x89PNG"), ("a.onnx", b"\x80\x03anything"),
                       ("a.md", b"# card"), ("a.txt", b""), ("a.csv", b"x,y\n")]:
        (tmp_path / name).write_bytes(data)
        check_format(tmp_path / name, name)
    header = b'{"__metadata__": {}}'
    (tmp_path / "ok.safetensors").write_bytes(len(header).to_bytes(8, "little") + header)
    check_safetensors_header(tmp_path / "ok.safetensors", "ok.safetensors")


@pytest.mark.parametrize(("rel", "message"), [("", "absolute path"), ("/etc/passwd", "absolute path"),
                                              ("\\\\server\\x", "absolute path"), ("C:/x.json", "absolute path"),
                                              ("a/../../x.json", "escapes the bundle"),
                                              ("../x.json", "escapes the bundle")])
def test_paths_that_leave_the_bundle_are_refused(tmp_path, rel, message):
    with pytest.raises(IntegrityError, match=message):
        safe_member(tmp_path, rel)


def test_a_link_out_of_the_bundle_is_refused_and_a_plain_member_resolves(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "outside.json").write_text("{}")
    (tmp_path / "b" / "link.json").symlink_to(tmp_path / "outside.json")
    with pytest.raises(IntegrityError, match="resolves outside the bundle"):
        safe_member(tmp_path / "b", "link.json")
    assert safe_member(tmp_path, "b/x.json") == (tmp_path / "b" / "x.json").resolve()


@pytest.mark.parametrize("field", sorted(REQUIRED))
def test_each_missing_or_mistyped_field_is_named(tmp_path, field):
    root, index = make_bundle(tmp_path)
    for broken, message in ((None, f"missing field '{field}'"), (3.5, f"field '{field}' must be a")):
        raw = dict(index)
        if broken is None:
            raw.pop(field)
        else:
            raw[field] = broken
        (root / BUNDLE_INDEX).write_text(json.dumps(raw))
        with pytest.raises(IntegrityError, match=message):
            load_index(root)


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda ix: ix.update(schema_version=2), "schema_version' is 2"),
    (lambda ix: ix["files"].append({"path": "x", "sha256": "0" * 64}), r"files\[4\].size"),
    (lambda ix: ix["files"].append("x"), r"files\[4\].path"),
    (lambda ix: ix["files"][0].update(sha256=1), r"files\[0\].sha256"),
    (lambda ix: ix["policy"].pop("policy_path"), "policy.policy_path"),
    (lambda ix: ix["policy"].update(policy_type=None), "policy.policy_type"),
])
def test_schema_errors_name_the_field(tmp_path, mutate, message):
    root, index = make_bundle(tmp_path)
    mutate(index)
    (root / BUNDLE_INDEX).write_text(json.dumps(index))
    with pytest.raises(IntegrityError, match=message):
        load_index(root)


def test_a_missing_or_unparsable_index_is_not_a_bundle(tmp_path):
    with pytest.raises(IntegrityError, match="not a StreetVision bundle"):
        load_index(tmp_path)
    (tmp_path / BUNDLE_INDEX).write_text("{")
    with pytest.raises(IntegrityError, match="not valid JSON"):
        load_index(tmp_path)


def _failure(fn):
    with pytest.raises(IntegrityError) as exc:
        fn()
    return exc.value.message, exc.value.fix


def test_every_refusal_says_what_is_wrong_and_the_fix(tmp_path):
    root, index = make_bundle(tmp_path / "b")

    def with_index(**changes):
        def load():
            (root / BUNDLE_INDEX).write_text(json.dumps({**index, **changes}))
            return load_index(root)
        return load

    ix = root / BUNDLE_INDEX
    cases = {
        "no index": (lambda: load_index(tmp_path), (f"'{tmp_path / BUNDLE_INDEX}' not found: not a StreetVision bundle.",
                                                   "point at the export/bundle directory of a run.")),
        "mistyped": (with_index(files=1.5), ("bundle.json: field 'files' must be a list, got float.",
                                             "re-export the bundle.")),
        "version": (with_index(schema_version=3), ("bundle.json: field 'schema_version' is 3, this version of "
                                                   "streetvision reads 1.", "upgrade streetvision or re-export.")),
        "policy": (with_index(policy={"policy_type": "scrc"}), ("bundle.json: field 'policy.policy_path' is missing.",
                                                                 "re-export the bundle.")),
        "entry": (with_index(files=[{"path": "x"}]), ("bundle.json: field 'files[0].sha256' is missing or not a str.",
                                                      "re-export the bundle.")),
        "absolute": (lambda: safe_member(root, "c:/x.json"), ("bundle.json lists an absolute path 'c:/x.json'.",
                                                              "bundle paths must be relative.")),
        "escape": (lambda: safe_member(root, "../x"), ("bundle.json lists a path that escapes the bundle: '../x'.",
                                                       "bundle paths must stay inside the bundle directory.")),
    }
    for name, (fn, expected) in cases.items():
        assert _failure(fn) == expected, name
    ix.write_text("{")
    message, fix = _failure(lambda: load_index(root))
    assert message.startswith(f"'{ix}' is not valid JSON (") and fix == "re-export the bundle."
    ix.write_text(json.dumps({k: v for k, v in index.items() if k != "lineage"}))
    assert _failure(lambda: load_index(root)) == ("bundle.json: missing field 'lineage'.", "re-export the bundle.")
    (root / "out.json").symlink_to(tmp_path / "elsewhere.json")
    assert _failure(lambda: safe_member(root, "out.json")) == ("'out.json' resolves outside the bundle (a link?).",
                                                              "remove the link.")


def test_file_refusals_name_the_listed_path_and_the_fix(tmp_path):
    root, index = make_bundle(tmp_path / "b")
    (root / "model" / "model.json").unlink()
    assert _failure(lambda: check_files(root, index)) == ("'model/model.json' is listed in bundle.json but missing.",
                                                          "restore it or re-export.")
    root, index = make_bundle(tmp_path / "c")
    (root / "policy.json").write_text('{"t": 0.9}')
    assert _failure(lambda: check_files(root, index)) == (
        "'policy.json' does not match its SHA-256 in bundle.json (modified or corrupted).",
        "restore the original file or re-export the bundle.")
    root, index = make_bundle(tmp_path / "d")
    (root / "notes.txt").write_text("hi")
    assert _failure(lambda: check_files(root, index)) == ("'notes.txt' is in the bundle but not listed in bundle.json.",
                                                          "remove it, or re-export the bundle.")
    for rel, data, expected in [
        ("model/w.bin", b"{}", ("'model/w.bin' has a disallowed format (.bin); bundles hold only .csv, .jpg, .json, "
                                ".md, .onnx, .png, .safetensors, .txt.", "remove it: weights must be safetensors.")),
        ("model/w", b"{}", ("'model/w' has a disallowed format (no extension); bundles hold only .csv, .jpg, .json, "
                            ".md, .onnx, .png, .safetensors, .txt.", "remove it: weights must be safetensors.")),
        ("model/p.json", pickle.dumps([1], protocol=4), ("'model/p.json' looks like a pickle / torch.save payload.",
                                                         "remove it; never unpickle.")),
        ("model/t.safetensors", (7).to_bytes(8, "little") + b"{}", (
            "'model/t.safetensors' is not a safetensors file (its header is not a length-prefixed JSON object).",
            "restore the original file or re-export the bundle; weights must be safetensors.")),
    ]:
        root, index = make_bundle(tmp_path / rel.replace("/", "_"))
        (root / rel).write_bytes(data)
        index["files"].append({"path": rel, "sha256": sha256_file(root / rel), "size": len(data)})
        assert _failure(lambda: check_files(root, index)) == expected, rel  # named by its path in the bundle
