"""Two gloo ranks, each with a loader worker, read disjoint slices that together are exactly the global
batch of one process, images included, at every step (across an epoch boundary and from a resumed step)."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import json

import numpy as np
from PIL import Image

from bench.data import build_dataset, loader

pytestmark = [pytest.mark.distributed]

N, BS, STEPS = 20, 8, 6  # 2 steps per epoch: 3 epochs


def corpus(folder, n):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    lines = []
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (24 - 8 * (i % 2), 20, 3), dtype=np.uint8)).save(folder / f"{i}.jpg")
        lines.append(json.dumps({"id": f"s{i}", "image": f"{i}.jpg", "texts": {"disease": f"t{i % 3}"},
                                 "labels": {"disease": ["x"]}, "split": "train"}))
    (folder / "m.jsonl").write_text("\n".join(lines) + "\n")
    return str(folder / "m.jsonl")


def _rank(rank: int, world: int, path: str, rdv: str, out: str, start: int) -> None:
    dist.init_process_group("gloo", init_method=f"file://{rdv}", rank=rank, world_size=world)
    try:
        r, w = dist.get_rank(), dist.get_world_size()
        data = build_dataset({"format": "jsonl", "path": path})
        got = [(i, x) for i, x in loader.train_batches(data, 16, "mgll", seed=5, batch_size=BS, total_steps=STEPS,
                                                       start_step=start, rank=r, world=w, workers=1)]
        gathered = [None] * w
        dist.all_gather_object(gathered, got)
        if r == 0:
            torch.save(gathered, out)
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("start", [0, 3])
def test_two_ranks_read_disjoint_slices_of_the_global_batch(tmp_path, start):
    path = corpus(tmp_path / "data", N)
    out = tmp_path / "gathered.pt"
    mp.start_processes(_rank, args=(2, path, str(tmp_path / "rdv"), str(out), start), nprocs=2, join=True,
                       start_method="fork")  # fork: no re-import of torch in the ranks
    per_rank = torch.load(out, weights_only=False)
    data = build_dataset({"format": "jsonl", "path": path})
    one = list(loader.train_batches(data, 16, "mgll", seed=5, batch_size=BS, total_steps=STEPS, start_step=start,
                                    workers=0))
    assert len(one) == STEPS - start and all(len(p) == STEPS - start for p in per_rank)
    for step, (idx, images) in enumerate(one):
        (i0, x0), (i1, x1) = per_rank[0][step], per_rank[1][step]
        assert len(i0) == len(i1) == BS // 2 and not set(i0.tolist()) & set(i1.tolist())
        assert torch.equal(torch.cat([i0, i1]), idx)
        assert torch.equal(torch.cat([x0, x1]), images)
