"""Shared options: drawn splits (seeded, grouped by patient) and missing levels (missing_rate)."""

import json
import random

import numpy as np
import pytest
from PIL import Image

from bench.data import DataConfigError, MultiGranularDataset, Sample, build_dataset
from bench.data.missing import drop_texts
from bench.data.splits import assign_splits, draw_splits, normalize_split

LEVELS = ("category", "disease", "description")


def samples(n, patients=None, split=None):
    out = []
    for i in range(n):
        pid = None if patients is None else f"p{i % patients}"
        out.append(Sample(f"id{i:04d}", "x.png", {g: f"{g} {i % 7}" for g in LEVELS}, {}, patient_id=pid, split=split))
    return out


def test_drawn_splits_grouped_by_patient_and_deterministic():
    ss = samples(500, patients=120)
    a = draw_splits(ss, seed=3, val_fraction=0.1, test_fraction=0.2)
    assert a == draw_splits(ss, seed=3, val_fraction=0.1, test_fraction=0.2)
    assert a != draw_splits(ss, seed=4, val_fraction=0.1, test_fraction=0.2)
    by_patient = {}
    for s, name in zip(ss, a):
        by_patient.setdefault(s.patient_id, set()).add(name)
    assert all(len(v) == 1 for v in by_patient.values())  # no patient in two splits
    assert 0.2 * 500 <= a.count("test") <= 0.2 * 500 + 5  # whole patients (~4 samples each) fill the quota
    assert 0.1 * 500 <= a.count("val") <= 0.1 * 500 + 5
    # order-independent
    perm = list(range(500))
    random.Random(0).shuffle(perm)
    b = draw_splits([ss[i] for i in perm], seed=3, val_fraction=0.1, test_fraction=0.2)
    assert [b[perm.index(i)] for i in range(500)] == a


def test_drawn_splits_without_patients_exact_fractions_and_copies():
    ds = MultiGranularDataset(samples(100), LEVELS)
    out = assign_splits(ds, seed=0, val_fraction=0.1, test_fraction=0.1)
    assert out.split_names().count("val") == 10 and out.split_names().count("test") == 10
    assert out.split_names() == draw_splits(samples(100), seed=0, val_fraction=0.1, test_fraction=0.1)
    assert all(s is None for s in ds.split_names())  # input untouched
    assert [s.texts for s in out] == [s.texts for s in ds]


def test_fraction_checks():
    with pytest.raises(DataConfigError, match="val_fraction"):
        draw_splits(samples(4), val_fraction=1.5)
    with pytest.raises(DataConfigError, match="< 1"):
        draw_splits(samples(4), val_fraction=0.6, test_fraction=0.5)


def test_normalize_split():
    assert [normalize_split(v) for v in ("Train", "valid", "Validation", "dev", "TEST")] == ["train", "val", "val", "val", "test"]
    with pytest.raises(ValueError, match="holdout"):
        normalize_split("holdout")


def write_manifest(tmp_path, n, split=None, patients=None):
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "a.png")
    lines = []
    for i in range(n):
        r = {"id": f"s{i}", "image": "a.png", "texts": {g: f"{g} {i % 5}" for g in LEVELS}}
        if split:
            r["split"] = split(i)
        if patients:
            r["patient_id"] = f"p{i % patients}"
        lines.append(json.dumps(r))
    (tmp_path / "m.jsonl").write_text("\n".join(lines) + "\n")
    return str(tmp_path / "m.jsonl")


def test_build_dataset_draws_splits_by_patient(tmp_path):
    path = write_manifest(tmp_path, 200, patients=50)
    cfg = {"format": "jsonl", "path": path, "split_seed": 1, "val_fraction": 0.2, "test_fraction": 0.2}
    a, b = build_dataset(cfg), build_dataset(cfg)
    assert [s.split for s in a] == [s.split for s in b]
    groups = {}
    for s in a:
        groups.setdefault(s.patient_id, set()).add(s.split)
    assert all(len(v) == 1 for v in groups.values())
    assert {s.split for s in a} == {"train", "val", "test"}
    c = build_dataset({**cfg, "split_seed": 2})
    assert [s.split for s in c] != [s.split for s in a]


def test_split_options_with_data_splits_or_mixed_splits_are_errors(tmp_path):
    path = write_manifest(tmp_path, 10, split=lambda i: "train")
    with pytest.raises(DataConfigError, match="data.val_fraction"):
        build_dataset({"format": "jsonl", "path": path, "val_fraction": 0.2})
    path = write_manifest(tmp_path, 10, split=lambda i: "train" if i < 5 else None)
    with pytest.raises(DataConfigError, match="5 of 10 samples have no split"):
        build_dataset({"format": "jsonl", "path": path})


def test_missing_rate_rate_determinism_and_train_only(tmp_path):
    path = write_manifest(tmp_path, 1000, split=lambda i: "train" if i % 10 < 8 else ("val" if i % 10 == 8 else "test"))
    base = build_dataset({"format": "jsonl", "path": path})
    cfg = {"format": "jsonl", "path": path, "missing_rate": 0.3}
    a, b = build_dataset(cfg), build_dataset(cfg)
    train = [i for i, s in enumerate(a) if s.split == "train"]
    assert len(train) == 800
    dropped = {g: {a[i].id for i in train if a[i].texts[g] is None} for g in LEVELS}
    for g in LEVELS:
        assert len(dropped[g]) == 240  # round(0.3 * 800)
        assert a.stats[f"missing_dropped/{g}"] == 240
        assert [t is None for t in a.texts(g)] == [t is None for t in b.texts(g)]  # same seed, same samples
    # independent per level: different subsets, overlapping about as chance predicts (0.3 * 240 = 72)
    assert dropped["category"] != dropped["disease"]
    assert 30 < len(dropped["category"] & dropped["disease"]) < 120
    # val/test untouched, labels kept, other texts unchanged
    for s, s0 in zip(a, base):
        if s.split != "train":
            assert s.texts == s0.texts
        else:
            assert all(t is None or t == s0.texts[g] for g, t in s.texts.items())
    # missing texts show up as -1 ids / not present
    assert (a.text_ids("disease") == -1).sum() == 240
    c = build_dataset({**cfg, "missing_seed": 1})
    assert {c[i].id for i in train if c[i].texts["disease"] is None} != dropped["disease"]


def test_missing_levels_restricts(tmp_path):
    path = write_manifest(tmp_path, 100, split=lambda i: "train")
    ds = build_dataset({"format": "jsonl", "path": path, "missing_rate": 0.5, "missing_levels": ["description"]})
    assert sum(t is None for t in ds.texts("description")) == 50
    assert all(t is not None for t in ds.texts("category")) and all(t is not None for t in ds.texts("disease"))
    with pytest.raises(DataConfigError, match="missing_levels"):
        build_dataset({"format": "jsonl", "path": path, "missing_rate": 0.5, "missing_levels": ["organ"]})
    with pytest.raises(DataConfigError, match="missing_rate"):
        build_dataset({"format": "jsonl", "path": path, "missing_rate": 1.5})


def test_drop_texts_leaves_the_input_and_other_levels():
    ss = samples(50, split="train")
    ds = MultiGranularDataset(ss, LEVELS)
    out, counts = drop_texts(ds, ["disease"], 0.4, seed=0)
    assert counts == {"disease": 20}
    assert list(ds.samples) == ss  # the input dataset is not modified
    changed = [i for i, (s, t) in enumerate(zip(out, ss)) if s != t]
    assert len(changed) == 20 and all(out[i].texts["disease"] is None for i in changed)
    assert all("disease" in out[i].texts for i in changed)  # the level stays, its text is None
    assert out.texts("category") == ds.texts("category") and out.texts("description") == ds.texts("description")
    # independent of sample order
    out2, _ = drop_texts(MultiGranularDataset(list(reversed(ss)), LEVELS), ["disease"], 0.4, seed=0)
    assert {s.id for s in out if s.texts["disease"] is None} == {s.id for s in out2 if s.texts["disease"] is None}


def test_embedded_fundus_synth_keeps_its_own_splits_and_validates():
    ds = build_dataset({"format": "fundus_synth", "resolution": 16, "size": 30, "test_size": 6, "val_fraction": 0.2,
                        "cache_dir": False, "progress": False, "levels": None, "missing_rate": 0.5})
    assert {s.split for s in ds} == {"train", "val", "test"}
    n_train = len(ds.split("train"))
    assert sum(t is None for t, s in zip(ds.texts(ds.levels[0]), ds) if s.split == "train") == round(0.5 * n_train)
