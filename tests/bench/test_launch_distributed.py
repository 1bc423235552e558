"""A cell trained by two processes (``launcher.name=local launcher.tasks_per_node=2``: torch.distributed over
gloo, each rank taking half of every global batch, DDP, objectives gathering features and labels) follows the
same loss trajectory as one process on the same global batches, and only rank 0 writes."""

from __future__ import annotations

import csv
import json

import pytest
import yaml

from bench.run import main as run_main

pytestmark = [pytest.mark.slow, pytest.mark.distributed]

FIXED = {
    "data": {"format": "fundus_synth", "size": 96, "test_size": 48, "val_fraction": 0.25, "resolution": 32},
    "image": {"name": "vit_tiny_custom", "width": 32, "depth": 1, "heads": 2},
    "text": {"name": "tiny_transformer", "width": 32, "layers": 1, "heads": 2, "context_length": 32},
    "model": {"embed_dim": 32},
    "train": {"epochs": 2, "batch_size": 24, "threads": 1, "log_every": 1, "checkpoint_every_steps": 2},
    "objective": {"name": "mgll", "levels": ["disease", "description"]},
    "tasks": [{"name": "linear_probe", "target": "disease_multilabel", "c_grid": [0.1, 1.0]}],
}


def _history(path):
    return list(csv.DictReader(path.read_text().splitlines()))


def test_two_processes_match_one(tmp_path, monkeypatch):
    monkeypatch.setenv("CONTRASTIVE_BENCH_CACHE", str(tmp_path / "cache"))
    grid = tmp_path / "dist.yaml"
    grid.write_text(yaml.safe_dump({"name": "dist", "fixed": FIXED}))
    assert run_main([f"grid={grid}", f"results_dir={tmp_path / 'one'}"]) == 0
    assert run_main([f"grid={grid}", f"results_dir={tmp_path / 'two'}", "launcher.name=local",
                     "launcher.tasks_per_node=2", "launcher.poll_s=0.2"]) == 0
    (one,) = [p for p in (tmp_path / "one" / "dist").iterdir() if (p / "done").exists()]
    two = tmp_path / "two" / "dist" / one.name  # same cell id: the launcher is not part of it
    assert (two / "done").exists()

    h1, h2 = _history(one / "history.csv"), _history(two / "history.csv")
    assert len(h1) == len(h2) == 6
    for a, b in zip(h1, h2):
        assert a["step"] == b["step"]
        for k in ("loss", "sclip/disease", "pointwise/description", "skl", "logit_scale"):
            assert float(b[k]) == pytest.approx(float(a[k]), rel=1e-5, abs=1e-6), (a["step"], k)
    m1 = json.loads((one / "metrics.json").read_text())
    m2 = json.loads((two / "metrics.json").read_text())
    assert m1["world_size"] == 1 and m2["world_size"] == 2
    for k, v in m1.items():
        if k.startswith("linear_probe/") and not k.endswith("time_s"):
            assert m2[k] == pytest.approx(v, abs=2e-3), k
    # both ranks ran (two task logs), only rank 0 wrote the cell's files (one "starting" in log.txt)
    assert len(list((tmp_path / "two" / "dist" / ".submitit").glob("*_1_log.err"))) == 1
    assert (two / "log.txt").read_text().count("starting") == 1
    assert "rank 1 of 2" in next((tmp_path / "two" / "dist" / ".submitit").glob("*_1_log.err")).read_text()
