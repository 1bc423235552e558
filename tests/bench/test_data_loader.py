"""The data loader: decoding, the sampler's rank slices, independence from the number of workers, bad
files found while loading (error naming file and sample, or skipped and counted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench.data import build_dataset, loader
from bench.data.images import ImageSource, StringTable, decode
from bench.data.problems import DataValidationError
from bench.data.sampler import GlobalBatchSampler, SequentialBatches, data_position, epoch_order


@pytest.fixture(autouse=True)
def _loader_defaults():
    loader.configure()
    yield
    loader.configure()


def picture(seed: int, h: int, w: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
    return np.kron(base, np.ones((8, 8, 1), np.uint8))[:h, :w]  # blocky: survives JPEG well


def corpus(folder, n=24, fmt="png", sizes=((40, 48),)):
    """A JSONL dataset of ``n`` image files of mixed sizes (one level, ``disease``, two texts)."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n):
        h, w = sizes[i % len(sizes)]
        name = f"im{i}.{fmt}"
        if fmt == "npz":
            np.savez(folder / name, image=picture(i, h, w))
        else:
            Image.fromarray(picture(i, h, w)).save(folder / name, quality=95)
        lines.append(json.dumps({"id": f"s{i}", "image": name, "texts": {"disease": f"text {i % 2}"},
                                 "labels": {"disease": [f"d{i % 2}"]}, "split": "train"}))
    (folder / "m.jsonl").write_text("\n".join(lines) + "\n")
    return str(folder / "m.jsonl")


# -- decoding ---------------------------------------------------------------------------------------------
def test_decode_png_npz_exact_and_jpeg_draft(tmp_path):
    img = picture(0, 512, 384)
    Image.fromarray(img).save(tmp_path / "a.png")
    np.savez(tmp_path / "a.npz", image=img)
    Image.fromarray(img).save(tmp_path / "a.jpg", quality=95)
    assert np.array_equal(decode(tmp_path / "a.png", 64), img)
    assert np.array_equal(decode(tmp_path / "a.npz", 64), img)
    full = decode(tmp_path / "a.jpg")
    assert full.shape == (512, 384, 3) and np.abs(full.astype(int) - img).mean() < 16
    # 384 >= 2 * 64: decoded at 1/4 scale (both sides stay >= 64); 384 < 2 * 224: full size
    assert decode(tmp_path / "a.jpg", 64).shape == (128, 96, 3)
    assert decode(tmp_path / "a.jpg", 224).shape == (512, 384, 3)


def test_string_table_and_source_hold_numpy_only(tmp_path):
    t = StringTable(["a", "", "ünï", "long/path/x.png"])
    assert [t[i] for i in range(4)] == ["a", "", "ünï", "long/path/x.png"] and len(t) == 4
    data = build_dataset({"format": "jsonl", "path": corpus(tmp_path, n=4)})
    src = ImageSource(data)
    assert src.data is None and src.paths[2].endswith("im2.png") and src.sample_id(3) == "s3"
    assert np.array_equal(src.read(1), picture(1, 40, 48))


# -- sampler ----------------------------------------------------------------------------------------------
def test_global_order_is_the_seeded_permutation_and_ranks_split_it():
    n, bs, seed, total = 50, 12, 3, 9  # 4 steps per epoch: steps 0..8 span 3 epochs
    one = list(GlobalBatchSampler(n, bs, seed, total))
    assert len(one) == total
    for step, rows in enumerate(one):
        epoch, b = divmod(step, 4)
        assert rows == [(epoch, i) for i in epoch_order(n, seed, epoch)[b * bs:(b + 1) * bs].tolist()]
        assert torch.equal(epoch_order(n, seed, epoch),
                           torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1000003 + epoch)))
    ranks = [list(GlobalBatchSampler(n, bs, seed, total, rank=r, world=3)) for r in range(3)]
    for step in range(total):
        parts = [ranks[r][step] for r in range(3)]
        assert all(len(p) == 4 for p in parts)
        assert sum(parts, []) == one[step]  # disjoint slices, in rank order, exactly the global batch
    # resuming at step 5 continues with exactly the batches an uninterrupted run reads next
    assert list(GlobalBatchSampler(n, bs, seed, total, start_step=5, rank=1, world=3)) == ranks[1][5:]
    assert data_position(5, 4, bs) == {"epoch": 1, "batch": 1, "samples_seen": 60}
    with pytest.raises(ValueError, match="divisible"):
        GlobalBatchSampler(n, bs, seed, total, world=5)
    assert [len(b) for b in SequentialBatches(5, 2)] == [2, 2, 1]


# -- the loader -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("preset", ["flip", "mgll"])
def test_batches_do_not_depend_on_workers(tmp_path, preset):
    data = build_dataset({"format": "jsonl", "path": corpus(tmp_path, n=20, fmt="jpg", sizes=((40, 48), (64, 32)))})
    runs = []
    for workers in (0, 2):
        got = list(loader.train_batches(data, 32, preset, seed=7, batch_size=8, total_steps=5, workers=workers))
        runs.append(got)
        assert [x.shape for _, x in got] == [(8, 32, 32, 3)] * 5 and got[0][1].dtype == torch.uint8
    for (i0, x0), (i2, x2) in zip(*runs):
        assert torch.equal(i0, i2) and torch.equal(x0, x2)
    # the order is the sampler's; a resumed iterator gives the same tail
    tail = list(loader.train_batches(data, 32, preset, seed=7, batch_size=8, total_steps=5, start_step=3, workers=2))
    assert all(torch.equal(a[1], b[1]) for a, b in zip(tail, runs[0][3:]))


def test_eval_batches_in_order_resized(tmp_path):
    data = build_dataset({"format": "jsonl", "path": corpus(tmp_path, n=7, sizes=((32, 32), (40, 48)))})
    got = list(loader.eval_batches(data, 32, 3, workers=2))
    assert torch.cat([i for i, _ in got]).tolist() == list(range(7))
    assert torch.equal(got[0][1][0], torch.from_numpy(picture(0, 32, 32)))  # already 32 px: untouched


def test_corrupt_file_while_loading_names_file_and_id_or_is_skipped(tmp_path):
    path = corpus(tmp_path, n=16)
    data = build_dataset({"format": "jsonl", "path": path, "check_images": "none"})
    (tmp_path / "im5.png").write_bytes(b"\x89PNG\r\n\x1a\nnot a png")
    with pytest.raises(DataValidationError) as e:
        list(loader.train_batches(data, 32, "none", seed=0, batch_size=16, total_steps=1, workers=1))
    (p,) = e.value.problems
    assert p.sample == "s5" and "im5.png" in str(e.value) and "cannot read image" in p.message
    loader.configure(on_bad_sample="skip")
    b = loader.train_batches(data, 32, "none", seed=0, batch_size=16, total_steps=1, workers=0)
    ((idx, x),) = list(b)
    assert b.skipped == 1 and len(idx) == 15 and 5 not in idx.tolist() and x.shape[0] == 15
    with pytest.raises(DataValidationError, match="s5"):  # feature extraction never skips
        list(loader.eval_batches(data, 32, 16))


def test_corrupt_file_found_by_validation_before_training(tmp_path):
    path = corpus(tmp_path, n=8)
    (tmp_path / "im3.png").write_bytes(b"garbage")
    for mode in ("all", "auto", True):
        with pytest.raises(DataValidationError, match="im3.png"):
            build_dataset({"format": "jsonl", "path": path, "check_images": mode})
    assert len(build_dataset({"format": "jsonl", "path": path, "check_images": "sample", "on_bad_sample": "skip"})) == 7


def test_workers_ignore_job_control_signals():
    import os
    import signal

    import bench.data.loader as L

    class Probe(torch.utils.data.Dataset):
        def __len__(self):
            return 1

        def __getitem__(self, i):
            return [signal.getsignal(s) == signal.SIG_IGN for s in L.WORKER_IGNORED_SIGNALS] + [os.getpid()]

    dl = torch.utils.data.DataLoader(Probe(), batch_size=None, num_workers=1, worker_init_fn=L._worker_init)
    (flags,) = list(dl)
    assert all(flags[:-1]) and flags[-1] != os.getpid() and signal.SIGUSR2 in L.WORKER_IGNORED_SIGNALS
    assert signal.getsignal(signal.SIGINT) != signal.SIG_IGN  # the main process keeps its own handlers


@pytest.mark.parametrize("consume", ["all", "half"])
def test_process_with_a_loader_alive_at_exit_exits(tmp_path, consume):
    """Workers ignore SIGTERM, which multiprocessing's exit hook sends them before waiting: a pass still
    referenced at interpreter exit (finished or not) must not hang the process."""
    script = tmp_path / "alive.py"
    script.write_text(
        "import numpy as np\n"
        "from bench.data.loader import eval_batches\n"
        "class D:\n"
        "    name = 'd'\n"
        "    def __len__(self): return 64\n"
        "    def image(self, i): return np.zeros((8, 8, 3), np.uint8)\n"
        "B = eval_batches(D(), 8, 8, workers=2)\n"
        + ("G = iter(B)\nnext(G)\n" if consume == "half" else "n = sum(len(i) for i, _ in B)\n")
        + "print('reached the end', flush=True)\n")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0 and "reached the end" in out.stdout, out.stderr[-2000:]
