"""The columnar sample store (bench/data/table.py) and the dataset container over it (bench/data/dataset.py):
samples come back exactly as they went in, subsets and derived arrays equal what a list of samples gives."""

from pathlib import Path

import numpy as np
import pytest

from bench.data import MultiGranularDataset, Sample, TaskSpec
from bench.data.sample import Origin
from bench.data.shards import ShardMember, ShardTable
from bench.data.table import ABSENT, NONE, PACK_STRINGS, Interned, SampleTable, StringTable, TableBuilder


def mixed_samples():
    """Every shape a field takes: texts None vs absent, empty label sets, absent labels, both target kinds,
    origins with line / row / record or none, patients and splits present or not."""
    return [
        Sample("a", "img/a.png", {"c": "Normal", "d": "Normal, none"}, {"c": ("Normal",), "d": ()},
               {"dr": 0, "ml": (0, 1)}, "p1", "train", Origin("m.jsonl", line=1, image_field="image")),
        Sample("b", "img/b.png", {"c": "Abnormal", "d": None}, {"c": ("Abnormal",)}, {"dr": 2}, None, "test",
               Origin("t.csv", row=4, image_field="path")),
        Sample("c", "img/c.png", {"d": "glaucoma"}, {"d": ("glaucoma", "dr")}, {}, "p1", None,
               Origin("l.json", record=0)),
        Sample("a2", "img/a.png", {"c": "Normal", "d": "Normal, none"}, {}, {"ml": (1, 1)}, "", "val", None),
    ]


def test_round_trip_is_exact_and_absent_differs_from_none():
    ss = mixed_samples()
    t = SampleTable.from_samples(ss)
    assert [t.sample(i) for i in range(len(t))] == ss
    assert "d" in t.sample(1).texts and t.sample(1).texts["d"] is None  # a None text keeps its key
    assert "c" not in t.sample(2).texts  # an absent one stays absent
    assert t.texts["c"].codes.tolist() == [0, 1, ABSENT, 0]  # equal texts share one code
    assert t.texts["d"].codes.tolist()[1] == NONE
    assert t.key_order == ("c", "d")
    with pytest.raises(IndexError):
        t.sample(4)
    assert t.sample(-1) == ss[-1]


def test_take_and_replace_share_values_and_leave_the_source():
    ss = mixed_samples()
    t = SampleTable.from_samples(ss)
    sub = t.take([3, 0, 0])
    assert [sub.sample(i) for i in range(3)] == [ss[3], ss[0], ss[0]]
    split = Interned.of(["train", "train", "val", None])
    r = t.replace(split=split)
    assert [r.sample(i).split for i in range(4)] == ["train", "train", "val", None]
    assert [t.sample(i).split for i in range(4)] == [s.split for s in ss]
    with pytest.raises(TypeError, match="unknown column"):
        t.replace(colour=split)


def test_builder_fields_equal_samples_and_paths_keep_their_type():
    b = TableBuilder()
    b.append("x", Path("/data/x.png"), {"g": "t"}, {"g": ["l1", "l2"]}, {"ml": [0, 1]}, None, "train")
    t = b.build()
    s = t.sample(0)
    assert s.image == Path("/data/x.png") and isinstance(s.image, Path)
    assert s.labels == {"g": ("l1", "l2")} and s.targets == {"ml": (0, 1)}  # lists are stored as tuples
    mixed = SampleTable.from_samples([Sample("y", "/a.png", {}), Sample("z", Path("/b.png"), {})])
    assert [mixed.sample(i).image for i in range(2)] == ["/a.png", "/b.png"]  # mixed: strings
    arrays = SampleTable.from_samples([Sample("q", np.zeros((2, 2, 3), np.uint8), {})])
    assert arrays.images.paths is None and arrays.sample(0).image.shape == (2, 2, 3)


def test_values_keep_their_type():
    col = Interned.of([1, True, 1.0, 1, None])
    assert [type(v) for v in col.tolist()[:3]] == [int, bool, float]
    assert col.codes.tolist() == [0, 1, 2, 0, NONE]


def test_many_distinct_strings_are_packed_in_one_buffer():
    texts = [f"text {i}" for i in range(PACK_STRINGS + 5)] + ["text 3", None]
    col = Interned.of(texts)
    assert isinstance(col.values, StringTable)
    assert col.tolist() == texts
    assert col.codes[-2] == col.codes[3]
    assert np.array_equal(col.where("text 3"), np.array([i in (3, len(texts) - 2) for i in range(len(texts))]))
    assert col.replaced(np.arange(len(texts)) == 0, "new").tolist()[:2] == ["new", "text 1"]
    assert Interned.of(texts[:5]).values == tuple(texts[:5])  # few: a tuple


def test_string_table_take_gathers_bytes():
    t = StringTable(["a", "", "ünï", "long/path/x.png", "z"])
    assert t.take(np.array([4, 2, 1, 2])).tolist() == ["z", "ünï", "", "ünï"]
    assert t.take(np.array([], dtype=np.int64)).tolist() == []
    assert list(t) == ["a", "", "ünï", "long/path/x.png", "z"]


def test_shard_members_are_packed_and_taken(tmp_path):
    members = [ShardMember(str(tmp_path / f"s{i % 2}.tar"), f"k{i}.jpg", 512 * i, 100 + i) for i in range(5)]
    t = SampleTable.from_samples([Sample(f"k{i}", m, {"g": "t"}) for i, m in enumerate(members)])
    assert isinstance(t.images.packed, ShardTable)
    assert [t.sample(i).image for i in range(5)] == members
    sub = t.take([4, 1])
    assert [sub.sample(i).image for i in range(2)] == [members[4], members[1]]
    assert sub.images.packed.where(0) == f"{members[4].shard} [k4.jpg]"


def reference(samples, levels, vocab):
    """The derived arrays as a list of samples defines them (first-appearance text ids, multi-hot)."""
    ids = {}
    for g in levels:
        table, out = {}, []
        for s in samples:
            t = s.texts.get(g)
            out.append(-1 if t is None else table.setdefault(t, len(table)))
        ids[g] = out
    mh = {g: [[int(lab in s.labels.get(g, ())) for lab in vocab[g]] for s in samples] for g in levels}
    return ids, mh


def test_dataset_arrays_equal_the_list_definition_also_after_subsets():
    rng = np.random.default_rng(0)
    texts = ["x", "y", "z", None]
    ss = [Sample(f"s{i}", "a.png", {"g": texts[rng.integers(4)], "h": f"h{rng.integers(3)}"},
                 {"g": tuple(sorted({str(v) for v in rng.integers(0, 3, size=rng.integers(0, 3))}))},
                 {"k": int(rng.integers(3)), "m": tuple(int(v) for v in rng.integers(0, 2, 2))},
                 split=["train", "val", "test"][i % 3]) for i in range(40)]
    specs = {"k": TaskSpec("multiclass", ("a", "b", "c")), "m": TaskSpec("multilabel", ("u", "v"))}
    ds = MultiGranularDataset(ss, ["g", "h"], task_specs=specs)
    assert ds.vocab["g"] == tuple(sorted({lab for s in ss for lab in s.labels.get("g", ())}))
    for sub, part in ((ds, ss), (ds.split("val"), [s for s in ss if s.split == "val"]),
                      (ds.subset([7, 3, 3, 0]), [ss[7], ss[3], ss[3], ss[0]])):
        ids, mh = reference(part, ["g", "h"], ds.vocab)
        for g in ("g", "h"):
            assert sub.text_ids(g).tolist() == ids[g]
            assert sub.multi_hot(g).tolist() == mh[g]
            assert sub.present(g).tolist() == [s.texts.get(g) is not None for s in part]
            assert sub.texts(g) == [s.texts.get(g) for s in part]
        assert sub.task_targets("k").tolist() == [s.targets["k"] for s in part]
        assert sub.task_targets("m").tolist() == [list(s.targets["m"]) for s in part]
        assert sub.sample_ids() == [s.id for s in part] and list(sub.samples) == part
    assert ds.samples[1:3] == ss[1:3] and ds.samples == ss and ds.samples != ss[:-1]


def test_dataset_errors_name_the_sample():
    ss = [Sample("a", "a.png", {"g": "t"}, {"g": ("known",)}, {"k": 1}), Sample("b", "b.png", {"g": "u"}, {"g": ("odd",)})]
    ds = MultiGranularDataset(ss, ["g"], {"g": ["known"]}, {"k": TaskSpec("multiclass", ("n", "y"))})
    with pytest.raises(KeyError, match="'b' has label 'odd'"):
        ds.multi_hot("g")
    with pytest.raises(ValueError, match=r"1 sample\(s\) lack a target for task 'k', e.g. \['b'\]"):
        ds.task_targets("k")
    assert ds.subset([0]).multi_hot("g").tolist() == [[1]]  # the bad label set is not in this subset
    with pytest.raises(KeyError, match="unknown level"):
        ds.text_ids("zz")


def test_memory_per_sample_is_small():
    """The columns of 20k samples with distinct ids, paths and texts take well under 300 bytes per sample of
    numpy buffers (a list of Sample objects took about 2 KB each)."""
    b = TableBuilder()
    for i in range(20_000):
        b.append(f"id{i:06d}", f"/corpus/images/{i:06d}.jpg", {"c": "Abnormal", "d": f"disease {i % 50}",
                 "e": f"description number {i}"}, {"c": ("Abnormal",), "d": (f"d{i % 50}",)}, {}, None, "train",
                 Origin("/corpus/manifest.jsonl", line=i + 1, image_field="image"))
    t = b.build()

    def nbytes(x):
        if isinstance(x, np.ndarray):
            return x.nbytes
        if isinstance(x, StringTable):
            return x.buffer.nbytes + x.offsets.nbytes
        if isinstance(x, Interned):
            return nbytes(x.codes) + (nbytes(x.values) if isinstance(x.values, StringTable) else 0)
        if isinstance(x, dict):
            return sum(nbytes(v) for v in x.values())
        return 0

    total = sum(nbytes(getattr(t, k)) for k in ("ids", "texts", "labels", "targets", "patient", "split", "origin", "field",
                                                 "position"))
    total += nbytes(t.images.paths)
    assert isinstance(t.texts["e"].values, StringTable) and isinstance(t.texts["d"].values, tuple)
    assert total / len(t) < 300, total / len(t)
