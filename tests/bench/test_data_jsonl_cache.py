"""jsonl's cached parsed index: a warm start parses no JSON line and gives the same dataset as a cold start;
a changed manifest or sidecar invalidates the cache; a damaged cache file is rebuilt with a warning."""

import json
import logging
import os

import numpy as np
import pytest
from PIL import Image

from bench.data import build_dataset, jsonl
from bench.data.problems import DataValidationError

META = {"levels": ["category", "disease"], "tasks": {"glaucoma": {"kind": "multiclass", "classes": ["no", "yes"]},
                                                     "ml": {"kind": "multilabel", "classes": ["g", "dr"]}}}


@pytest.fixture
def manifest(tmp_path):
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "a.png")
    rows = [{"id": f"s{i}", "image": "a.png", "texts": {"category": "Abnormal" if i % 2 else "Normal",
                                                        "disease": None if i == 3 else f"text {i}"},
             "labels": {"category": ["Abnormal" if i % 2 else "Normal"], "disease": ["g"] if i % 2 else []},
             "targets": {"glaucoma": i % 2, "ml": [i % 2, 0]}, "patient_id": f"p{i // 2}"} for i in range(12)]
    m = tmp_path / "m.jsonl"
    m.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (tmp_path / "m.jsonl.meta.json").write_text(json.dumps(META))
    return m


def build(m, cache, **kw):
    return build_dataset({"format": "jsonl", "path": str(m), "index_cache": str(cache), "check_images": "none", **kw})


def same(a, b):
    assert a.samples == b.samples and a.levels == b.levels and a.vocab == b.vocab and a.task_specs == b.task_specs
    for g in a.levels:
        np.testing.assert_array_equal(a.text_ids(g), b.text_ids(g))
        np.testing.assert_array_equal(a.multi_hot(g), b.multi_hot(g))


def no_parsing(monkeypatch):
    def fail(*a, **k):
        raise AssertionError("a JSON line was parsed on a warm start")

    monkeypatch.setattr(jsonl, "parse_record", fail)
    monkeypatch.setattr(jsonl, "parse_manifest", fail)


def test_warm_start_reads_the_cache_and_equals_a_cold_start(manifest, tmp_path, monkeypatch):
    cold = build(manifest, tmp_path / "idx")
    uncached = build_dataset({"format": "jsonl", "path": str(manifest), "index_cache": False, "check_images": "none"})
    same(cold, uncached)
    assert len(list((tmp_path / "idx").glob("m.jsonl-*.json"))) == 1
    no_parsing(monkeypatch)
    warm = build(manifest, tmp_path / "idx")
    same(warm, cold)
    assert [s.split for s in warm.samples] == [s.split for s in cold.samples]  # drawn splits too
    assert warm.samples[3].texts == {"category": "Abnormal", "disease": None}
    assert warm.samples[1].targets == {"glaucoma": 1, "ml": (1, 0)} and warm.samples[1].labels["disease"] == ("g",)


def test_a_changed_manifest_or_sidecar_invalidates_the_cache(manifest, tmp_path):
    build(manifest, tmp_path / "idx")
    text = manifest.read_text().replace('"text 5"', '"text five"')
    manifest.write_text(text)
    st = manifest.stat()
    os.utime(manifest, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert build(manifest, tmp_path / "idx").samples[5].texts["disease"] == "text five"
    assert len(list((tmp_path / "idx").glob("m.jsonl-*.json"))) == 1  # the stale entry is removed
    meta = dict(META, levels=["category"])  # the sidecar is not part of the manifest's stamp: its hash is
    (tmp_path / "m.jsonl.meta.json").write_text(json.dumps(meta))
    with pytest.raises(DataValidationError, match="level 'disease' is not declared"):
        build(manifest, tmp_path / "idx")


def test_a_damaged_cache_file_is_rebuilt_with_a_warning(manifest, tmp_path, caplog):
    cold = build(manifest, tmp_path / "idx")
    (f,) = (tmp_path / "idx").glob("m.jsonl-*.json")
    for damage in ("{not json", json.dumps({"samples": [[1, 2]], "problems": [], "targets": False}), "[]"):
        f.write_text(damage)
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            same(build(manifest, tmp_path / "idx"), cold)
        assert "missing or damaged" in caplog.text
        assert json.loads(f.read_text())["samples"]  # rewritten


def test_problems_are_the_same_from_the_cache(manifest, tmp_path, monkeypatch):
    with open(manifest, "a") as fh:
        fh.write('{"id": "bad", "image": "a.png", "texts": {"nope": "x"}}\nnot json\n')
    with pytest.raises(DataValidationError) as cold:
        build(manifest, tmp_path / "idx")
    no_parsing(monkeypatch)
    with pytest.raises(DataValidationError) as warm:
        build(manifest, tmp_path / "idx")
    assert str(warm.value) == str(cold.value) and "line 13" in str(cold.value) and "line 14" in str(cold.value)
    skipped = build(manifest, tmp_path / "idx", on_bad_sample="skip")
    assert len(skipped) == 12 and skipped.stats["bad_samples_skipped"] == 2
