"""jsonl: the native manifest (one JSON object per line), with a header line or a sidecar .meta.json."""

import json

import numpy as np
import pytest
from PIL import Image

from bench.data import DataConfigError, build_dataset
from bench.data.problems import DataValidationError

META = {
    "levels": ["category", "disease", "description"],
    "vocab": {"category": ["Normal", "Abnormal"], "disease": ["glaucoma", "dr", "amd"]},
    "tasks": {
        "glaucoma": {"kind": "multiclass", "classes": ["no", "yes"]},
        "disease_multilabel": {"kind": "multilabel", "classes": ["glaucoma", "dr", "amd"]},
    },
}


def png(path, value=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((5, 5, 3), value, dtype=np.uint8)).save(path)


def lines(*objs):
    return "\n".join(json.dumps(o) for o in objs) + "\n"


@pytest.fixture
def records(tmp_path):
    png(tmp_path / "images" / "a.png", 1)
    png(tmp_path / "images" / "b.png", 2)
    np.savez(tmp_path / "c.npz", image=np.full((5, 5), 3, dtype=np.uint8))
    return [
        {"id": "a", "image": "images/a.png",
         "texts": {"category": "Abnormal", "disease": "Abnormal, glaucoma, dr", "description": "Enlarged cup; microaneurysms."},
         "labels": {"category": ["Abnormal"], "disease": ["dr", "glaucoma"]},
         "targets": {"glaucoma": 1, "disease_multilabel": [1, 1, 0]}, "patient_id": "p1", "split": "train"},
        {"id": 7, "image": "images/b.png", "texts": {"category": "Normal", "disease": "Normal, healthy", "description": None},
         "labels": {"category": ["Normal"], "disease": []},
         "targets": {"glaucoma": 0, "disease_multilabel": [0, 0, 0]}, "patient_id": "p2", "split": "val"},
        {"id": "c", "image": str(tmp_path / "c.npz"), "texts": {"category": "Abnormal"},
         "labels": {"category": ["Abnormal"], "disease": ["amd"]},
         "targets": {"glaucoma": 0, "disease_multilabel": [0, 0, 1]}, "split": "test"},
    ]


def check(ds, tmp_path):
    assert ds.levels == ("category", "disease", "description")
    assert [s.id for s in ds] == ["a", "7", "c"]
    assert ds.texts("description") == ["Enlarged cup; microaneurysms.", None, None]
    assert ds.texts("disease") == ["Abnormal, glaucoma, dr", "Normal, healthy", None]
    assert ds.vocab["category"] == ("Normal", "Abnormal")
    np.testing.assert_array_equal(ds.multi_hot("category"), [[0, 1], [1, 0], [0, 1]])
    np.testing.assert_array_equal(ds.multi_hot("disease"), [[1, 1, 0], [0, 0, 0], [0, 0, 1]])
    assert list(ds.text_ids("category")) == [0, 1, 0]
    assert list(ds.text_ids("description")) == [0, -1, -1]
    assert ds.task_targets("glaucoma").tolist() == [1, 0, 0]
    assert ds.task_targets("disease_multilabel").tolist() == [[1, 1, 0], [0, 0, 0], [0, 0, 1]]
    assert ds.task_specs["glaucoma"].kind == "multiclass"
    assert [s.split for s in ds] == ["train", "val", "test"]
    assert [s.patient_id for s in ds] == ["p1", "p2", None]
    assert ds[0].image == str(tmp_path / "images" / "a.png")
    assert int(ds.image(1)[0, 0, 0]) == 2 and ds.image(2).shape == (5, 5, 3)


def test_header_line(tmp_path, records):
    (tmp_path / "m.jsonl").write_text(lines({"meta": META}, *records))
    ds = build_dataset({"format": "jsonl", "path": str(tmp_path / "m.jsonl"), "resolution": 64})
    check(ds, tmp_path)
    assert ds[0].origin.line == 2


def test_sidecar(tmp_path, records):
    (tmp_path / "m.jsonl").write_text(lines(*records))
    (tmp_path / "m.jsonl.meta.json").write_text(json.dumps(META))
    check(build_dataset({"format": "jsonl", "path": str(tmp_path / "m.jsonl")}), tmp_path)


def test_header_and_sidecar_is_an_error(tmp_path, records):
    (tmp_path / "m.jsonl").write_text(lines({"meta": META}, *records))
    (tmp_path / "m.meta.json").write_text(json.dumps(META))
    with pytest.raises(DataConfigError, match="more than once"):
        build_dataset({"format": "jsonl", "path": str(tmp_path / "m.jsonl")})


def test_without_metadata_levels_and_vocab_are_inferred(tmp_path, records):
    for r in records:
        del r["targets"]
    (tmp_path / "m.jsonl").write_text(lines(*records))
    ds = build_dataset({"format": "jsonl", "path": str(tmp_path / "m.jsonl")})
    assert ds.levels == ("category", "disease", "description")
    assert ds.vocab["disease"] == ("amd", "dr", "glaucoma")
    assert ds.task_specs == {}


def test_targets_need_declared_tasks(tmp_path, records):
    (tmp_path / "m.jsonl").write_text(lines(*records))
    with pytest.raises(DataConfigError, match="no tasks are declared"):
        build_dataset({"format": "jsonl", "path": str(tmp_path / "m.jsonl")})


def test_line_problems_reported_together(tmp_path, records):
    bad = [
        {"image": "images/a.png", "texts": {}},                                # line 2: no id
        {"id": "x", "texts": {"category": "Normal"}},                          # line 3: no image
        {"id": "y", "image": "images/a.png", "text": {}},                      # line 4: unknown key
        {"id": "z", "image": "images/a.png", "split": "dev"},                  # line 5: bad split
        {"id": "w", "image": "images/a.png", "texts": {"organ": "eye"}},       # line 6: undeclared level
        {"id": "v", "image": "images/a.png", "targets": {"dr_grade": 2}},      # line 7: undeclared task
        {"id": "u", "image": "images/a.png", "targets": {"glaucoma": [1]}},    # line 8: bad target
    ]
    (tmp_path / "m.jsonl").write_text(lines({"meta": META}, *bad) + "{not json\n")
    with pytest.raises(DataValidationError) as e:
        build_dataset({"format": "jsonl", "path": str(tmp_path / "m.jsonl")})
    got = [(p.line, p.field) for p in e.value.problems]
    assert got == [(2, "id"), (3, "image"), (4, "text"), (5, "split"), (6, "texts.organ"), (7, "targets.dr_grade"),
                   (8, "targets.glaucoma"), (9, None)]
    assert all(p.file == str(tmp_path / "m.jsonl") for p in e.value.problems)
    msg = str(e.value)
    assert msg.startswith("8 data problems:")
    assert "m.jsonl, line 3 [image]: missing field 'image'" in msg
    assert "'dev' is not one of ['train', 'val', 'test']" in msg


def test_bad_metadata(tmp_path, records):
    (tmp_path / "m.jsonl").write_text(lines({"meta": {"tasks": {"t": {"kind": "regression", "classes": []}}}}, *records))
    with pytest.raises(DataConfigError, match=r"tasks.t.*multiclass"):
        build_dataset({"format": "jsonl", "path": str(tmp_path / "m.jsonl")})
    (tmp_path / "m.jsonl").write_text(lines({"meta": {"level": ["a"]}}, *records))
    with pytest.raises(DataConfigError, match="unknown metadata key"):
        build_dataset({"format": "jsonl", "path": str(tmp_path / "m.jsonl")})
