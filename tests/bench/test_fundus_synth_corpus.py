"""fundus_synth drawn straight to disk: the jsonl corpus holds exactly the in-memory samples, does not depend
on the number of workers, keeps a bounded number of chunks in flight, and the sink interface behaves."""

from __future__ import annotations

import json
from concurrent.futures import Future
from pathlib import Path

import numpy as np
import pytest

from bench.data import build_dataset
from bench.data import fundus_synth as F
from bench.data.fundus_synth import corpus
from bench.data.fundus_synth.cli import main as fundus_cli
from bench.data.fundus_synth.sinks import MANIFEST, FileSink
from bench.errors import DataConfigError


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("variant, fmt", [("pretrain", "png"), ("multidisease", "npz"), ("dr", "jpg")])
def test_disk_corpus_is_the_in_memory_dataset(tmp_path, variant, fmt):
    opts = dict(variant=variant, size=14, test_size=5, val_fraction=0.3, resolution=32, seed=2)
    stats = corpus.write_corpus(opts, FileSink(tmp_path), image_format=fmt, progress=False)
    assert stats["images"] == 19 and stats["bytes"] > 0
    disk = build_dataset({"format": "jsonl", "path": str(tmp_path / MANIFEST)})
    mem = F.build(**opts, cache_dir=False)
    assert len(disk) == len(mem) == 19
    assert disk.levels == mem.levels and disk.vocab == mem.vocab and disk.task_specs == mem.task_specs
    for k, (d, m) in enumerate(zip(disk.samples, mem.samples)):
        assert (d.id, d.split, d.patient_id, d.texts, d.labels, d.targets) == \
               (m.id, m.split, m.patient_id, m.texts, m.labels, m.targets)
        pixels = disk.image(k)
        assert pixels.shape == m.image.shape and pixels.dtype == np.uint8
        if fmt == "jpg":  # lossy: the file is the JPEG of the in-memory pixels, and close to them
            assert Path(d.image).read_bytes() == corpus.encode_image(m.image, "jpg")
            assert np.abs(pixels.astype(int) - m.image.astype(int)).mean() < 6.0
        else:
            assert np.array_equal(pixels, m.image)
    for s in ("train", "val", "test"):
        assert len(disk.split(s)) == len(mem.split(s))


def test_result_does_not_depend_on_workers_or_chunks(tmp_path):
    opts = dict(variant="glaucoma", size=9, test_size=4, resolution=24)
    corpus.write_corpus(opts, FileSink(tmp_path / "w1"), workers=1, chunk=32, progress=False)
    corpus.write_corpus(opts, FileSink(tmp_path / "w2"), workers=2, chunk=3, progress=False)
    one, two = _files(tmp_path / "w1"), _files(tmp_path / "w2")
    assert one == two
    assert sum(k.endswith(".png") for k in one) == 13


class _InlineExecutor:
    """Stands in for the process pool: runs each task when submitted, records how many are in flight."""

    submitted = 0

    def __init__(self, *a, **k):
        pass

    def submit(self, fn, *args):
        type(self).submitted += 1
        f = Future()
        f.set_result(fn(*args))
        return f

    def shutdown(self, wait=True, cancel_futures=False):
        pass


def test_at_most_two_chunks_per_worker_are_in_flight(monkeypatch):
    monkeypatch.setattr(corpus, "ProcessPoolExecutor", _InlineExecutor)
    _InlineExecutor.submitted = 0
    it = corpus.iter_corpus(dict(size=40, test_size=0, resolution=16), workers=3, chunk=2)
    first = next(it)
    assert first.index == 0 and _InlineExecutor.submitted == 2 * 3 + 1  # the window, refilled once
    consumed = 1 + sum(1 for _ in zip(range(9), it))  # 10 samples = 5 chunks consumed
    assert consumed == 10 and _InlineExecutor.submitted <= 5 + 2 * 3 + 1
    assert [s.index for s in it] == list(range(10, 40))


class _Recorder:
    def __init__(self, fail_at=None):
        self.calls = []
        self.fail_at = fail_at

    def open(self, info):
        self.calls.append(("open", info.total, info.levels, tuple(info.task_specs)))

    def write(self, sample):
        if sample.index == self.fail_at:
            raise RuntimeError("disk full")
        self.calls.append(("write", sample.index, sample.id, sample.split, sample.image_format))

    def close(self, complete):
        self.calls.append(("close", complete))


def test_sink_interface_order_and_failure():
    rec = _Recorder()
    corpus.write_corpus(dict(variant="amd", size=3, test_size=2, resolution=16), rec, image_format="npz",
                        progress=False)
    assert rec.calls[0] == ("open", 5, F.LEVELS, ("amd",))
    writes = [c for c in rec.calls if c[0] == "write"]
    assert [w[1] for w in writes] == [0, 1, 2, 3, 4]
    assert [w[3] for w in writes][3:] == ["test", "test"] and all(w[4] == "npz" for w in writes)
    assert writes[0][2] == "fundus_synth-amd-s0-dev000000" and rec.calls[-1] == ("close", True)
    bad = _Recorder(fail_at=2)
    with pytest.raises(RuntimeError, match="disk full"):
        corpus.write_corpus(dict(size=4, test_size=0, resolution=16), bad, progress=False)
    assert bad.calls[-1] == ("close", False)


def test_file_sink_leaves_no_manifest_when_interrupted_and_refuses_to_overwrite(tmp_path):
    class Boom(FileSink):
        def write(self, sample):
            if sample.index == 2:
                raise KeyboardInterrupt
            super().write(sample)

    with pytest.raises(KeyboardInterrupt):
        corpus.write_corpus(dict(size=4, test_size=0, resolution=16), Boom(tmp_path), progress=False)
    assert not (tmp_path / MANIFEST).exists()  # unfinished: no manifest
    corpus.write_corpus(dict(size=4, test_size=0, resolution=16), FileSink(tmp_path), progress=False)
    assert len((tmp_path / MANIFEST).read_text().splitlines()) == 4
    with pytest.raises(DataConfigError, match="already holds a corpus"):
        corpus.write_corpus(dict(size=2, test_size=0, resolution=16), FileSink(tmp_path), progress=False)
    corpus.write_corpus(dict(size=2, test_size=0, resolution=16), FileSink(tmp_path, overwrite=True), progress=False)
    assert len((tmp_path / MANIFEST).read_text().splitlines()) == 2
    assert len(list((tmp_path / "images").rglob("*.png"))) == 2  # the old images are gone


def test_cli_draw(tmp_path, capsys):
    out = tmp_path / "corpus"
    rc = fundus_cli(["draw", "--out", str(out), "--variant", "glaucoma", "--size", "5", "--test-size", "2",
                     "--resolution", "16", "--set", "noise=0", "--set", "prevalence={glaucoma: 0.5}", "--no-progress"])
    assert rc == 0 and "drew 7 images" in capsys.readouterr().out
    prov = json.loads((out / "fundus_synth.json").read_text())
    assert prov["options"]["noise"] == 0 and prov["options"]["prevalence"]["glaucoma"] == 0.5
    mem = F.build(variant="glaucoma", size=5, test_size=2, resolution=16, noise=0, prevalence={"glaucoma": 0.5},
                  cache_dir=False)
    lines = [json.loads(x) for x in (out / MANIFEST).read_text().splitlines()]
    assert [x["id"] for x in lines] == [s.id for s in mem.samples]
    assert fundus_cli(["draw", "--out", str(out), "--size", "2", "--set", "noize=0", "--no-progress"]) == 2
    assert "data.noize is not an option" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        fundus_cli(["draw", "--help"])
    assert e.value.code == 0 and "--image-format" in capsys.readouterr().out


def test_cli_benchmark_draw(capsys):
    assert fundus_cli(["benchmark-draw", "-n", "4", "--resolutions", "16", "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "images/s" in out and len([ln for ln in out.splitlines() if ln.strip().startswith("16 ")]) == 1
