"""data.format=wds: shard round trips equal their source sample by sample; the index and its cache; damaged
shards name the shard and the key, and are skipped and counted with data.on_bad_sample=skip."""

import io
import json
import pickle
import tarfile

import numpy as np
import pytest
import webdataset
from PIL import Image

from bench.data import DataConfigError, build_dataset
from bench.data.export import export
from bench.data.problems import DataValidationError
from bench.data.index_cache import load_index
from bench.data.shards import ShardMember, index_shard
from bench.data.wds import expand_shards

SYNTH = {"format": "fundus_synth", "size": 40, "test_size": 8, "resolution": 16, "progress": False}


def same(a, b):
    """Two datasets equal sample by sample: ids, texts, labels, targets, splits, patients, pixels."""
    assert len(a) == len(b) and a.levels == b.levels and a.vocab == b.vocab and a.task_specs == b.task_specs
    assert [s.id for s in a] == [s.id for s in b]
    for g in a.levels:
        assert a.texts(g) == b.texts(g)
        np.testing.assert_array_equal(a.multi_hot(g), b.multi_hot(g))
    for t in a.task_specs:
        np.testing.assert_array_equal(a.task_targets(t), b.task_targets(t))
    assert [s.split for s in a] == [s.split for s in b]
    assert [s.patient_id for s in a] == [s.patient_id for s in b]
    for i in range(len(a)):
        np.testing.assert_array_equal(a.image(i), b.image(i))


@pytest.fixture(scope="module")
def synth():
    return build_dataset(SYNTH)


@pytest.fixture(scope="module")
def shards(synth, tmp_path_factory):
    out = tmp_path_factory.mktemp("wds") / "shards"
    st = export(synth, out, "wds", shard_size=16, progress=False)
    assert st["samples"] == 48 and st["path"] == str(out / "shard-{000000..000002}.tar")
    return out


def wds(path, **kw):
    return build_dataset({"format": "wds", "path": str(path), "index_cache": False, **kw})


def test_round_trip_from_fundus_synth(synth, shards):
    assert sorted(p.name for p in shards.iterdir()) == ["meta.json", "shard-000000.tar", "shard-000001.tar",
                                                         "shard-000002.tar"]
    same(synth, wds(shards))
    same(synth, wds(shards / "shard-{000000..000002}.tar"))
    one = wds(shards / "shard-000001.tar")
    assert [s.id for s in one] == [s.id for s in synth][16:32]


def test_open_clip_layout(shards):
    """One image and one .json member per key, readable by webdataset's own pipeline."""
    with tarfile.open(shards / "shard-000000.tar") as tf:
        names = tf.getnames()
    assert names[:2] == ["fundus_synth-s0-dev000000.json", "fundus_synth-s0-dev000000.png"]
    pipe = webdataset.WebDataset(str(shards / "shard-{000000..000002}.tar"), shardshuffle=False).decode("rgb8")
    first = next(iter(pipe))
    assert first["__key__"] == "fundus_synth-s0-dev000000" and first["png"].shape == (16, 16, 3)
    assert set(first["json"]) >= {"texts", "labels", "targets", "split", "patient_id"}
    assert sum(1 for _ in pipe) == 48


@pytest.fixture
def manifest(tmp_path):
    """A jsonl manifest with png, npz and jpg images, a missing text, patients, targets."""
    img = tmp_path / "src"
    img.mkdir()
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (9, 7, 3), dtype=np.uint8) for _ in range(4)]
    Image.fromarray(arrays[0]).save(img / "a.png")
    np.savez(img / "b.npz", image=arrays[1])
    Image.fromarray(arrays[2]).save(img / "c.jpg", quality=90)
    Image.fromarray(arrays[3]).save(img / "d.e.png")  # an id with a dot: the key becomes s<index>
    meta = {"levels": ["category", "disease"], "vocab": {"category": ["Normal", "Abnormal"], "disease": ["dr", "amd"]},
            "tasks": {"dr": {"kind": "multiclass", "classes": ["no", "yes"]},
                      "ml": {"kind": "multilabel", "classes": ["dr", "amd"]}}}
    rows = [("a", "a.png", "train", "p1"), ("b", "b.npz", "train", "p1"), ("c", "c.jpg", "val", None),
            ("d.e", "d.e.png", "test", "p3")]
    lines = []
    for k, (sid, name, split, pid) in enumerate(rows):
        rec = {"id": sid, "image": f"src/{name}", "texts": {"category": "Abnormal", "disease": f"dr {k}" if k != 2 else None},
               "labels": {"category": ["Abnormal"], "disease": ["dr"] if k % 2 else ["amd", "dr"]},
               "targets": {"dr": k % 2, "ml": [1, k % 2]}, "split": split}
        if pid:
            rec["patient_id"] = pid
        lines.append(json.dumps(rec))
    (tmp_path / "m.jsonl").write_text("\n".join(lines) + "\n")
    (tmp_path / "m.jsonl.meta.json").write_text(json.dumps(meta))
    return tmp_path / "m.jsonl"


def test_round_trip_from_jsonl_and_back(manifest, tmp_path):
    src = build_dataset({"format": "jsonl", "path": str(manifest)})
    st = export(src, tmp_path / "w", "wds", shard_size=3, progress=False)
    back = wds(tmp_path / "w")
    same(src, back)  # the jpg is copied byte for byte (--image-format keep): equal pixels too
    assert [s.image.name for s in back] == ["a.png", "b.npz", "c.jpg", "s000000003.png"]
    assert back[3].id == "d.e"
    assert st["bytes"] == sum(p.stat().st_size for p in (manifest.parent / "src").iterdir())
    export(back, tmp_path / "j", "jsonl", progress=False)  # shards -> image files + manifest
    same(src, build_dataset({"format": "jsonl", "path": str(tmp_path / "j" / "manifest.jsonl")}))


def test_index_is_cached_per_shard(shards, tmp_path, caplog):
    cache = tmp_path / "idx"
    opts = {"format": "wds", "path": str(shards), "index_cache": str(cache), "check_images": False}
    with caplog.at_level("INFO", logger="bench.data.index_cache"):
        a = build_dataset(opts)
        assert "3 file(s) (shards or manifests): 0 from the cache" in caplog.text
        caplog.clear()
        b = build_dataset(opts)
        assert "3 file(s) (shards or manifests): 3 from the cache" in caplog.text
    assert len(list(cache.glob("*.json"))) == 3
    assert [s.image for s in a] == [s.image for s in b]


def test_changed_shard_is_indexed_again(synth, tmp_path, caplog):
    out = tmp_path / "s"
    export(synth.subset(range(8)), out, "wds", shard_size=4, progress=False)
    opts = {"format": "wds", "path": str(out), "index_cache": str(tmp_path / "idx"), "check_images": False}
    assert len(build_dataset(opts)) == 8
    export(synth.subset(range(10, 16)), out, "wds", shard_size=4, overwrite=True, progress=False)
    with caplog.at_level("INFO", logger="bench.data.index_cache"):
        ds = build_dataset(opts)
    assert "0 from the cache" in caplog.text
    assert [s.id for s in ds] == [synth[i].id for i in range(10, 16)]


def test_parallel_index_equals_serial(shards):
    paths = expand_shards(str(shards)) * 2  # 6 shards: indexed by a pool of 2 processes
    par = load_index(paths, None, workers=2, progress=False)
    assert par == [index_shard(p) for p in paths]


def test_member_pickles_for_workers(shards):
    ds = wds(shards)
    m = pickle.loads(pickle.dumps(ds[5].image))
    assert isinstance(m, ShardMember) and m == ds[5].image
    np.testing.assert_array_equal(m.read(), ds.image(5))


def test_bad_data_path(tmp_path):
    with pytest.raises(DataConfigError, match="holds no .tar shard"):
        wds(tmp_path)
    (tmp_path / "a-0.tar").write_bytes(b"")
    with pytest.raises(DataConfigError, match=r"1 of 2 shards do not exist, e.g. .*a-1.tar"):
        wds(tmp_path / "a-{0..1}.tar")


# -- damaged shards ----------------------------------------------------------------------------------------
def png_bytes(value):
    buf = io.BytesIO()
    Image.fromarray(np.full((4, 4, 3), value, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def write_shard(path, samples):
    with webdataset.TarWriter(str(path), encoder=False) as w:
        for s in samples:
            w.write(s)


def rec(i, **kw):
    return json.dumps({"texts": {"disease": f"text {i}"}, "split": "train", **kw}).encode()


@pytest.fixture
def damaged(tmp_path):
    write_shard(tmp_path / "a.tar", [{"__key__": f"k{i}", "png": png_bytes(i), "json": rec(i)} for i in range(3)])
    write_shard(tmp_path / "b.tar", [
        {"__key__": "good", "png": png_bytes(9), "json": rec(9)},
        {"__key__": "corrupt", "png": png_bytes(8)[:20] + b"garbage" * 5, "json": rec(8)},
        {"__key__": "nojson", "png": png_bytes(7)},
        {"__key__": "noimage", "json": rec(6)},
        {"__key__": "badfield", "png": png_bytes(5), "json": rec(5, split="training")},
    ])
    return tmp_path


def test_damaged_members_name_shard_and_key(damaged):
    with pytest.raises(DataValidationError) as e:
        wds(damaged)
    msg = str(e.value)
    shard = str(damaged / "b.tar")
    assert f"{shard} [corrupt.png]: corrupt image member corrupt.png" in msg
    assert f"{shard} [nojson.json]: key 'nojson' has no .json member" in msg
    assert f"{shard} [noimage.*]: key 'noimage' has no image member" in msg
    assert f"{shard} [badfield.json split]: split 'training' is not one of" in msg
    assert len(e.value.problems) == 4
    ds = wds(damaged, on_bad_sample="skip")
    assert [s.id for s in ds] == ["k0", "k1", "k2", "good"]
    assert ds.stats["bad_samples_skipped"] == 4


def test_corrupt_member_found_while_reading(damaged):
    """Without the image check, reading the member raises an error naming the shard and the member."""
    ds = wds(damaged, check_images=False, on_bad_sample="skip")
    i = [s.id for s in ds].index("corrupt")
    with pytest.raises(DataConfigError, match=r"corrupt image member corrupt.png .* in shard .*b.tar"):
        ds.image(i)


def test_truncated_shard(damaged):
    a = damaged / "a.tar"
    data = a.read_bytes()
    with tarfile.open(a) as tf:
        png1 = tf.getmember("k1.png")
        k0_png = tf.getmember("k0.png")
    a.write_bytes(data[: png1.offset_data + 30])  # inside k1's image member
    with pytest.raises(DataValidationError, match=r"a.tar \[k1.png\]: shard is truncated inside member k1.png"):
        wds(damaged)
    ds = wds(damaged, on_bad_sample="skip")
    assert [s.id for s in ds] == ["k0", "good"]
    assert ds.stats["bad_samples_skipped"] == 5
    a.write_bytes(data[: k0_png.offset + 100])  # inside k0.png's tar header
    with pytest.raises(DataValidationError, match=r"a.tar: unreadable or truncated tar shard .* at or after key 'k0'"):
        wds(damaged)
    assert [s.id for s in wds(damaged, on_bad_sample="skip")] == ["good"]


def test_unreadable_shard(tmp_path):
    (tmp_path / "x.tar").write_bytes(b"this is not a tar file" * 40)
    with pytest.raises(DataValidationError, match=r"x.tar: unreadable or truncated tar shard"):
        wds(tmp_path)
    with pytest.raises(DataValidationError, match="unreadable"):  # a whole-shard problem: not skippable
        wds(tmp_path, on_bad_sample="skip")


@pytest.mark.parametrize("opts, message", [
    ({"index_workers": -1}, "data.index_workers"),
    ({"index_cache": ""}, "must be a folder path, or false"),
    ({"shard_size": 3}, "shard_size"),
])
def test_option_errors(shards, opts, message):
    with pytest.raises(DataConfigError, match=message):
        build_dataset({"format": "wds", "path": str(shards), **opts})


def test_index_cache_false_string(shards, tmp_path, monkeypatch):
    monkeypatch.setenv("CONTRASTIVE_BENCH_CACHE", str(tmp_path / "c"))
    assert len(build_dataset({"format": "wds", "path": str(shards), "index_cache": "false", "check_images": False})) == 48
    assert not (tmp_path / "c").exists()
    build_dataset({"format": "wds", "path": str(shards), "check_images": False})  # the default folder
    assert len(list((tmp_path / "c" / "wds-index").glob("*.json"))) == 3


def test_meta_change_invalidates_the_cache(synth, tmp_path):
    out = tmp_path / "s"
    export(synth.subset(range(4)), out, "wds", progress=False)
    opts = {"format": "wds", "path": str(out), "index_cache": str(tmp_path / "idx"), "check_images": False}
    assert len(build_dataset(opts)) == 4
    meta = json.loads((out / "meta.json").read_text())
    meta["levels"] = ["category", "disease"]
    meta["vocab"].pop("description")
    (out / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(DataValidationError, match=r"\[.*\.json texts.description\]: level 'description' is not declared"):
        build_dataset(opts)


# -- through the loader ------------------------------------------------------------------------------------
def test_loader_reads_shards_as_it_reads_files(tmp_path):
    """The same JPEG bytes as files and as shard members: equal batches with 0 and 2 workers (the loader's
    workers hold numpy tables, not samples; large JPEGs decode at reduced scale in both)."""
    import torch

    from bench.data import loader
    from bench.data.images import ImageSource

    rng = np.random.default_rng(0)
    lines = []
    for i in range(12):
        base = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
        Image.fromarray(np.kron(base, np.ones((8, 8, 1), np.uint8))).save(tmp_path / f"{i}.jpg", quality=90)
        lines.append(json.dumps({"id": f"s{i}", "image": f"{i}.jpg", "texts": {"t": f"x {i}"}, "split": "train"}))
    (tmp_path / "m.jsonl").write_text("\n".join(lines) + "\n")
    files = build_dataset({"format": "jsonl", "path": str(tmp_path / "m.jsonl")})
    export(files, tmp_path / "w", "wds", shard_size=5, progress=False)
    shards = wds(tmp_path / "w")
    src = ImageSource(shards)
    assert src.data is None and src.shards is not None and src.where(6).endswith("shard-000001.tar [s6.jpg]")
    ref = list(loader.train_batches(files, 32, "flip", seed=3, batch_size=4, total_steps=4, workers=0))
    for workers in (0, 2):
        got = list(loader.train_batches(shards, 32, "flip", seed=3, batch_size=4, total_steps=4, workers=workers))
        assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(ref, got))
    assert src.read(0, 32).shape == (48, 40, 3)  # 80 x 96 JPEG, >= 2 x 32: decoded at 1/2


def test_corrupt_member_while_loading_is_named_or_skipped(damaged):
    from bench.data import loader

    data = wds(damaged, check_images="none", on_bad_sample="skip")  # parse problems skipped, images unchecked
    assert [s.id for s in data] == ["k0", "k1", "k2", "good", "corrupt"]
    try:
        loader.configure(on_bad_sample="error")
        with pytest.raises(DataValidationError) as e:
            list(loader.train_batches(data, 16, "none", seed=0, batch_size=5, total_steps=1, workers=1))
        (p,) = e.value.problems
        assert p.sample == "corrupt" and p.file == f"{damaged / 'b.tar'} [corrupt.png]"
        assert "corrupt image member corrupt.png" in p.message
        loader.configure(on_bad_sample="skip")
        b = loader.train_batches(data, 16, "none", seed=0, batch_size=5, total_steps=1, workers=0)
        ((idx, x),) = list(b)
        assert b.skipped == 1 and sorted(idx.tolist()) == [0, 1, 2, 3] and x.shape == (4, 16, 16, 3)
    finally:
        loader.configure()


@pytest.mark.slow
def test_perf_rows_run(tmp_path):
    """The shard rows of python -m bench.perf data measure something on a tiny set (no workers)."""
    from bench import perf_wds

    rng = np.random.default_rng(0)
    lines = []
    for i in range(8):
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(tmp_path / f"{i}.jpg")
        lines.append(json.dumps({"id": f"s{i}", "image": f"{i}.jpg", "texts": {"disease": f"x {i}"}, "split": "train"}))
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    for i in range(8):
        (tmp_path / f"{i}.jpg").rename(tmp_path / "src" / f"{i}.jpg")
    folder = perf_wds.make_shards(tmp_path / "src" / "manifest.jsonl")
    assert folder == tmp_path / "src_wds" and (folder / "meta.json").exists()
    assert perf_wds.ours(folder, 0, 8, 4, 32) > 0
    assert perf_wds.open_clip_pipeline(folder, 0, 8, 4, 32) > 0
    # the memory / start-up probe reads the shards (a fresh process, as python -m bench.perf data does)
    from bench.perf_data import run_probe

    r = run_probe(folder, 32, 2, 0, 4, "wds")
    assert r["format"] == "wds" and r["samples"] == 8 and r["steps"] == 2
    assert 0 < r["rss_after_data_mib"] <= r["peak_rss_mib"] and r["startup_s"] > 0


def test_index_command(shards, damaged, tmp_path, capsys):
    from bench.data.wds_index import main

    assert main([str(shards), "--index-cache", str(tmp_path / "idx")]) == 0
    out = capsys.readouterr().out
    assert "48 samples" in out and "splits train 32, val 8, test 8" in out
    assert len(list((tmp_path / "idx").glob("*.json"))) == 3
    assert main([str(damaged), "--index-cache", "false"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: 3 data problems") and "[corrupt.png]" not in err  # images are not opened
