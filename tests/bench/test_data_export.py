"""python -m bench.data.export and fundus_synth draw --to wds: what they write, atomically; CLI errors exit 2;
a run of bench.run on shards."""

import json

import numpy as np
import pytest
import yaml

from bench.data import build_dataset
from bench.data.export import export, main
from bench.data.fundus_synth.cli import main as synth_main
from bench.run import main as run_main

from test_data_wds import same

SYNTH = ["data.format=fundus_synth", "data.size=24", "data.test_size=6", "data.resolution=16", "data.progress=false"]


def test_cli_writes_shards_equal_to_the_source(tmp_path, capsys):
    assert main(["--to", "wds", "--out", str(tmp_path / "w"), "--shard-size", "10", "--no-progress", *SYNTH]) == 0
    out = capsys.readouterr().out
    pattern = str(tmp_path / "w" / "shard-{000000..000002}.tar")
    assert f"read it with: data.format=wds data.path={pattern}" in out
    meta = json.loads((tmp_path / "w" / "meta.json").read_text())
    assert meta["samples"] == 30 and meta["shards"] == 3 and meta["levels"] == ["category", "disease", "description"]
    src = build_dataset({k.split("=")[0][5:]: yaml.safe_load(k.split("=")[1]) for k in SYNTH})
    same(src, build_dataset({"format": "wds", "path": pattern, "index_cache": False}))


def test_cli_jsonl_with_reencoding_and_workers(tmp_path):
    assert main(["--to", "jsonl", "--out", str(tmp_path / "j"), "--image-format", "npz", "--workers", "2",
                 "--chunk", "7", "--no-progress", *SYNTH]) == 0
    lines = (tmp_path / "j" / "manifest.jsonl").read_text().splitlines()
    assert len(lines) == 30 and json.loads(lines[0])["image"] == "images/0000/fundus_synth-s0-dev000000.npz"
    src = build_dataset({k.split("=")[0][5:]: yaml.safe_load(k.split("=")[1]) for k in SYNTH})
    same(src, build_dataset({"format": "jsonl", "path": str(tmp_path / "j" / "manifest.jsonl")}))


def test_caption_member_for_open_clip(tmp_path):
    """--caption-level writes <key>.txt: the stages of open_clip's webdataset pipeline (decode pilrgb, rename
    image=jpg;png;jpeg;webp text=txt, its training transform) read the shards. (open_clip_train 3.3's own
    get_wds_dataset does not run with webdataset 1.0: its tarfile_to_samples_nothrow chokes on the end-of-shard
    marker webdataset 1.0 yields.)"""
    import webdataset
    from open_clip import image_transform

    assert main(["--to", "wds", "--out", str(tmp_path / "w"), "--shard-size", "10", "--caption-level", "disease",
                 "--no-progress", *SYNTH]) == 0
    src = build_dataset({k.split("=")[0][5:]: yaml.safe_load(k.split("=")[1]) for k in SYNTH})
    same(src, build_dataset({"format": "wds", "path": str(tmp_path / "w"), "index_cache": False}))  # .txt ignored
    pipe = (webdataset.WebDataset(str(tmp_path / "w" / "shard-{000000..000002}.tar"), shardshuffle=False)
            .decode("pilrgb").rename(image="jpg;png;jpeg;webp", text="txt")
            .map_dict(image=image_transform(16, is_train=True)).to_tuple("image", "text"))
    got = list(pipe)
    assert len(got) == 30 and tuple(got[0][0].shape) == (3, 16, 16)
    assert [t for _, t in got] == src.texts("disease")


@pytest.mark.parametrize("argv, message", [
    (["--to", "wds", "--out", "OUT", "--caption-level", "organ", *SYNTH], "--caption-level 'organ' is not a level"),
    (["--to", "wds", "--out", "OUT"], "give the dataset to export, e.g. data.format=fundus_synth"),
    (["--to", "wds", "--out", "OUT", "data.format=fundus_synht"], "data.format='fundus_synht' is unknown (did you mean fundus_synth?)"),
    (["--to", "wds", "--out", "OUT", "train.epochs=1", "data.format=fundus_synth"], "takes data.* options only"),
    (["--to", "wds", "--out", "OUT", "--shard-size", "0", *SYNTH], "--shard-size"),
    (["--to", "wds", "--out", "OUT", "data.format=jsonl", "data.path=/nonexistent.jsonl"], "no such file"),
    (["--to", "wds", "--out", "OUT", "data.format=fundus_synth", "data.size=-1"], "data.size"),
])
def test_cli_errors_exit_2(tmp_path, capsys, argv, message):
    argv = [str(tmp_path / "o") if a == "OUT" else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_cli_usage_errors(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--to", "zip", "--out", "x"])
    assert e.value.code == 2 and "invalid choice: 'zip'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0 and "--shard-size" in capsys.readouterr().out


def test_existing_output_needs_overwrite(tmp_path, capsys):
    out = tmp_path / "w"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    assert main(["--to", "wds", "--out", str(out), "--no-progress", *SYNTH]) == 2
    assert "exists and is not empty; pass --overwrite" in capsys.readouterr().err
    assert main(["--to", "wds", "--out", str(out), "--no-progress", "--overwrite", *SYNTH]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["meta.json", "shard-000000.tar"]


def test_failed_export_leaves_nothing(tmp_path):
    """An image that cannot be read half-way: no output folder, no partial folder, the old output intact."""
    rng = np.random.default_rng(0)
    lines = []
    for i in range(5):
        if i != 3:
            np.savez(tmp_path / f"{i}.npz", image=rng.integers(0, 256, (4, 4, 3), dtype=np.uint8))
        lines.append(json.dumps({"id": f"s{i}", "image": f"{i}.npz", "texts": {"t": f"text {i}"}, "split": "train"}))
    (tmp_path / "m.jsonl").write_text("\n".join(lines) + "\n")
    ds = build_dataset({"format": "jsonl", "path": str(tmp_path / "m.jsonl"), "check_images": False})
    out = tmp_path / "out"
    with pytest.raises(FileNotFoundError):
        export(ds, out, "wds", shard_size=2, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir() if "out" in p.name) == []
    export(ds.subset([0, 1]), out, "wds", progress=False)
    with pytest.raises(FileNotFoundError):
        export(ds, out, "jsonl", overwrite=True, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir() if "out" in p.name) == ["out"]
    assert len(build_dataset({"format": "wds", "path": str(out), "index_cache": False})) == 2


def test_fundus_synth_draws_to_shards(tmp_path, capsys):
    argv = ["draw", "--to", "wds", "--out", str(tmp_path / "d"), "--size", "20", "--test-size", "5", "--resolution", "16",
            "--shard-size", "8", "--no-progress"]
    assert synth_main(argv) == 0
    assert "train on it: data.format=wds data.path=" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["meta.json"] + [f"shard-00000{i}.tar" for i in range(4)]
    meta = json.loads((tmp_path / "d" / "meta.json").read_text())
    assert meta["source"]["format"] == "fundus_synth" and meta["source"]["images"] == 25
    src = build_dataset({"format": "fundus_synth", "size": 20, "test_size": 5, "resolution": 16, "progress": False})
    same(src, build_dataset({"format": "wds", "path": str(tmp_path / "d"), "index_cache": False}))
    assert synth_main(argv) == 2  # not empty: --overwrite needed
    assert "--overwrite" in capsys.readouterr().err


TINY = {
    "name": "tiny",
    "fixed": {
        "image": {"name": "vit_tiny_custom", "width": 32, "depth": 1, "heads": 2},
        "text": {"name": "tiny_transformer", "width": 32, "layers": 1, "heads": 2, "context_length": 32},
        "model": {"embed_dim": 32},
        "train": {"epochs": 1, "batch_size": 16, "threads": 1, "log_every": 1},
        "objective": {"name": "clip", "level": "disease"},
        "tasks": [{"name": "linear_probe", "target": "disease_multilabel", "c_grid": [1.0]}],
    },
    "seeds": [0],
}


@pytest.mark.slow
def test_run_on_shards(tmp_path, capsys):
    """bench.run trains on shards and evaluates; a corrupt member is found before training: exit 2."""
    assert synth_main(["draw", "--to", "wds", "--out", str(tmp_path / "d"), "--size", "48", "--test-size", "16",
                       "--resolution", "32", "--shard-size", "20", "--no-progress"]) == 0
    grid = tmp_path / "tiny.yaml"
    data = {"format": "wds", "path": str(tmp_path / "d"), "index_cache": str(tmp_path / "idx")}
    grid.write_text(yaml.safe_dump({**TINY, "fixed": {**TINY["fixed"], "data": data}}))
    assert run_main([f"grid={grid}", f"results_dir={tmp_path / 'r'}"]) == 0
    cell = next(p for p in (tmp_path / "r" / "tiny").iterdir() if (p / "metrics.json").exists())
    metrics = json.loads((cell / "metrics.json").read_text())
    assert 0.0 <= metrics["linear_probe/disease_multilabel/auc"] <= 1.0
    assert metrics["train/steps"] == 48 * 4 // 5 // 16  # the val fifth held out
    shard = tmp_path / "d" / "shard-000001.tar"
    raw = bytearray(shard.read_bytes())
    i = raw.index(b"IDAT")  # damage the first PNG's pixel data in the second shard
    raw[i + 8:i + 40] = b"\xff" * 32
    shard.write_bytes(bytes(raw))
    capsys.readouterr()
    assert run_main([f"grid={grid}", f"results_dir={tmp_path / 'r2'}"]) == 2
    err = capsys.readouterr().err
    assert f"{shard} [fundus_synth-s0-dev000020.png]: corrupt image member" in err and "Traceback" not in err


def test_keys_stay_unique(tmp_path):
    """An id that is not a safe key becomes s<index>, which may be another sample's id: keys stay distinct."""
    rng = np.random.default_rng(1)
    lines = []
    for i, sid in enumerate(["s000000001", "x.y", "z/w"]):
        np.savez(tmp_path / f"{i}.npz", image=rng.integers(0, 256, (4, 4, 3), dtype=np.uint8))
        lines.append(json.dumps({"id": sid, "image": f"{i}.npz", "texts": {"t": f"text {i}"}, "split": "train"}))
    (tmp_path / "m.jsonl").write_text("\n".join(lines) + "\n")
    src = build_dataset({"format": "jsonl", "path": str(tmp_path / "m.jsonl")})
    export(src, tmp_path / "w", "wds", progress=False)
    back = build_dataset({"format": "wds", "path": str(tmp_path / "w"), "index_cache": False})
    same(src, back)
    assert [s.image.name for s in back] == ["s000000001.npz", "s000000001-1.npz", "s000000002.npz"]


def test_interrupted_draw_leaves_nothing(tmp_path):
    """fundus_synth draw --to wds interrupted half-way: no output folder and no partial folder."""
    from bench.data.fundus_synth.corpus import write_corpus
    from bench.data.fundus_synth.sinks import WdsSink

    class Stop(WdsSink):
        def write(self, sample):
            if sample.index == 5:
                raise KeyboardInterrupt
            super().write(sample)

    with pytest.raises(KeyboardInterrupt):
        write_corpus({"size": 10, "test_size": 0, "resolution": 16, "cache_dir": False}, Stop(tmp_path / "d", 4),
                     progress=False)
    assert list(tmp_path.iterdir()) == []
