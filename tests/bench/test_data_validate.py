"""Validation before training: one test per kind of problem, several problems together, on_bad_sample=skip."""

import json
import pickle

import numpy as np
import pytest
from PIL import Image

from bench.data import DataConfigError, MultiGranularDataset, Sample, build_dataset
from bench.data.validate import DataValidationError, Problem, check_image, validate


def png(path, value=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((4, 4, 3), value, dtype=np.uint8)).save(path)


def write_jsonl(path, records, meta=None):
    objs = ([{"meta": meta}] if meta else []) + records
    path.write_text("".join(json.dumps(o) + "\n" for o in objs))
    return str(path)


def rec(i, image="a.png", **kw):
    return {"id": f"s{i}", "image": image, "texts": {"disease": f"text {i % 2}"}, "labels": {"disease": ["x"]},
            "split": "train", **kw}


@pytest.fixture
def folder(tmp_path):
    png(tmp_path / "a.png")
    return tmp_path


def only_problem(cfg):
    with pytest.raises(DataValidationError) as e:
        build_dataset(cfg)
    assert len(e.value.problems) == 1, str(e.value)
    return e.value.problems[0], str(e.value)


def test_missing_image_file(folder):
    path = write_jsonl(folder / "m.jsonl", [rec(0), rec(1, image="missing/b.png")])
    p, msg = only_problem({"format": "jsonl", "path": path})
    assert p.file == path and p.line == 2 and p.field == "image" and p.sample == "s1"
    assert "image file not found" in p.message and str(folder / "missing" / "b.png") in p.message
    assert f"{path}, line 2 [image]: image file not found: {folder / 'missing' / 'b.png'}" in msg


def test_corrupt_png(folder):
    (folder / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")
    path = write_jsonl(folder / "m.jsonl", [rec(0, image="bad.png")])
    p, _ = only_problem({"format": "jsonl", "path": path})
    assert p.field == "image" and p.line == 1 and "corrupt image" in p.message and "bad.png" in p.message


def test_corrupt_and_keyless_npz(folder):
    (folder / "bad.npz").write_bytes(b"PK\x03\x04garbage")
    np.savez(folder / "nokey.npz", img=np.zeros((4, 4), np.uint8))
    np.savez(folder / "shape.npz", image=np.zeros((4, 4, 2), np.uint8))
    path = write_jsonl(folder / "m.jsonl", [rec(0, image="bad.npz"), rec(1, image="nokey.npz"), rec(2, image="shape.npz")])
    with pytest.raises(DataValidationError) as e:
        build_dataset({"format": "jsonl", "path": path})
    a, b, c = e.value.problems
    assert "corrupt image" in a.message and a.line == 1
    assert "no array 'image'" in b.message and "['img']" in b.message and b.line == 2
    assert "shape (4, 4, 2)" in c.message and c.line == 3
    assert check_image(folder / "a.png") is None


def test_missing_field(folder):
    path = write_jsonl(folder / "m.jsonl", [rec(0), {"id": "s1", "texts": {}}])
    p, msg = only_problem({"format": "jsonl", "path": path})
    assert (p.file, p.line, p.field) == (path, 2, "image") and "missing field 'image'" in msg


def test_empty_label_set_where_required(folder):
    (folder / "t.csv").write_text("image,A,B\na.png,1,0\na.png,0,0\n")
    p, msg = only_problem({"format": "csv_multilabel", "path": str(folder / "t.csv"), "image_column": "image",
                           "id_column": None})
    assert p.file == str(folder / "t.csv") and p.row == 2 and p.line == 3 and "empty label set" in msg
    # the generic check in validate(): a level where labels are required
    ds = MultiGranularDataset([Sample("a", np.zeros((2, 2, 3), np.uint8), {"g": "t"}, {"g": ()})], ["g"], {"g": ["x"]})
    (q,) = validate(ds, require_labels=["g"])
    assert q.field == "labels.g" and "empty label set" in q.message


def test_unknown_label_against_vocabulary(folder):
    meta = {"levels": ["disease"], "vocab": {"disease": ["x", "y"]}}
    path = write_jsonl(folder / "m.jsonl", [rec(0), rec(1, labels={"disease": ["x", "zz"]})], meta=meta)
    p, msg = only_problem({"format": "jsonl", "path": path})
    assert (p.file, p.line, p.field) == (path, 3, "labels.disease")
    assert "unknown label(s) ['zz']" in msg and "['x', 'y']" in msg


def test_unknown_label_against_hierarchy(folder):
    (folder / "h.yaml").write_text("levels: [group, finding]\ngroup:\n  sick: [A]\n")
    (folder / "t.csv").write_text("image,labels\na.png,A\na.png,A|Q\n")
    p, msg = only_problem({"format": "csv_multilabel", "path": str(folder / "t.csv"), "label_column": "labels",
                           "hierarchy": str(folder / "h.yaml"), "id_column": None})
    assert p.field == "labels" and p.row == 2 and "unknown label 'Q'" in msg and "h.yaml" in msg


def test_duplicate_ids(folder):
    path = write_jsonl(folder / "m.jsonl", [rec(0), rec(1), rec(0)])
    p, msg = only_problem({"format": "jsonl", "path": path})
    assert (p.file, p.line, p.field, p.sample) == (path, 3, "id", "s0")
    assert "duplicate id 's0' (first at" in msg and "line 1" in msg


def test_level_in_config_absent_from_data(folder):
    path = write_jsonl(folder / "m.jsonl", [rec(0)])
    p, msg = only_problem({"format": "jsonl", "path": path, "levels": ["disease", "description"]})
    assert p.file == path and p.field == "data.levels" and "'description'" in msg and "['disease']" in msg
    assert not p.skippable


def test_several_problems_reported_together(folder):
    (folder / "bad.png").write_bytes(b"garbage")
    records = [rec(0), rec(1, image="nope.png"), {"id": "s2", "texts": {}}, rec(3, image="bad.png"), rec(0), rec(5, split="x")]
    path = write_jsonl(folder / "m.jsonl", records)
    with pytest.raises(DataValidationError) as e:
        build_dataset({"format": "jsonl", "path": path, "levels": ["disease", "organ"]})
    probs = e.value.problems
    kinds = sorted((p.line, p.field) for p in probs if p.line)
    assert kinds == [(2, "image"), (3, "image"), (4, "image"), (5, "id"), (6, "split")]
    assert any(p.field == "data.levels" for p in probs)
    msg = str(e.value)
    assert msg.startswith(f"{len(probs)} data problems:")
    assert all(str(p) in msg for p in probs)
    assert isinstance(e.value, DataConfigError) and isinstance(e.value, ValueError)
    again = pickle.loads(pickle.dumps(e.value))
    assert again.problems == probs and str(again) == msg


def test_on_bad_sample_skip_counts(folder):
    (folder / "bad.png").write_bytes(b"garbage")
    records = [rec(0), rec(1, image="nope.png"), {"id": "s2", "texts": {}}, rec(3, image="bad.png"), rec(0), rec(5), rec(6)]
    path = write_jsonl(folder / "m.jsonl", records)
    ds = build_dataset({"format": "jsonl", "path": path, "on_bad_sample": "skip"})
    assert [s.id for s in ds] == ["s0", "s5", "s6"]  # the second s0 (a duplicate) is skipped, the first kept
    assert ds.stats["bad_samples_skipped"] == 4
    clean = build_dataset({"format": "jsonl", "path": write_jsonl(folder / "c.jsonl", [rec(0)]), "on_bad_sample": "skip"})
    assert clean.stats["bad_samples_skipped"] == 0
    with pytest.raises(DataConfigError, match="on_bad_sample"):
        build_dataset({"format": "jsonl", "path": path, "on_bad_sample": "drop"})


def test_skip_still_raises_for_dataset_problems(folder):
    path = write_jsonl(folder / "m.jsonl", [rec(0), rec(1, image="nope.png")])
    with pytest.raises(DataValidationError) as e:
        build_dataset({"format": "jsonl", "path": path, "on_bad_sample": "skip", "levels": ["organ"]})
    assert [p.field for p in e.value.problems] == ["data.levels"]


def test_check_images_off(folder):
    path = write_jsonl(folder / "m.jsonl", [rec(0, image="nope.png")])
    assert len(build_dataset({"format": "jsonl", "path": path, "check_images": False})) == 1


def test_validate_clean_dataset_and_arrays():
    good = Sample("a", np.zeros((3, 3, 3), np.uint8), {"g": "t"}, {"g": ("x",)}, split="train")
    bad = Sample("b", np.zeros((3,), np.uint8), {"g": "t"}, {"g": ("x",)}, split="train")
    assert validate(MultiGranularDataset([good], ["g"])) == []
    (p,) = validate(MultiGranularDataset([good, bad], ["g"]))
    assert p.field == "image" and p.sample == "b" and "shape (3,)" in p.message
    assert isinstance(p, Problem)


def test_problem_str():
    p = Problem("f.csv", "Finding Labels", "unknown label 'Q'", line=4, row=3, sample="x")
    assert str(p) == "f.csv, line 4, row 3 [Finding Labels]: unknown label 'Q'"
    assert str(Problem("m.json", "Disease", "missing", record=2)) == "m.json, record 2 [Disease]: missing"
