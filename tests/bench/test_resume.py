"""Checkpointing and resuming: periodic checkpoints, the deferred preemption checkpoint, and a grid killed
with SIGKILL mid-cell then rerun ends with exactly the metrics of an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from bench import store, train
from bench.cell import build_objective
from bench.config import merge
from bench.data import build_dataset
from bench.models import build_model
from bench.run import main as run_main

REPO = Path(__file__).resolve().parents[2]

# the TINY pattern of test_run.py: 96 + 48 synthetic images at 32 px, one-block towers, 3 steps per epoch
TINY_FIXED = {
    "data": {"format": "fundus_synth", "size": 96, "test_size": 48, "val_fraction": 0.25, "resolution": 32},
    "image": {"name": "vit_tiny_custom", "width": 32, "depth": 1, "heads": 2},
    "text": {"name": "tiny_transformer", "width": 32, "layers": 1, "heads": 2, "context_length": 32},
    "model": {"embed_dim": 32},
    "train": {"epochs": 3, "batch_size": 24, "threads": 1, "log_every": 1},
    "tasks": [{"name": "linear_probe", "target": "disease_multilabel", "c_grid": [0.1, 1.0]}],
}
RUNS = [
    {"label": "CLIP", "objective": {"name": "clip", "level": "disease"}},
    {"label": "MGLL", "objective": {"name": "mgll", "levels": ["disease", "description"]}},
]


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("CONTRASTIVE_BENCH_CACHE", str(tmp_path_factory.getbasetemp() / "resume-cache"))


def _parts(objective=None, data=None, **train_over):
    cfg = merge(TINY_FIXED, {"objective": objective or RUNS[1]["objective"], "train": train_over, "data": data or {}})
    torch.set_num_threads(1)
    train.seed_everything(0)
    data = build_dataset(cfg.data)
    objective = build_objective(cfg)
    train.seed_everything(0)
    model = build_model(cfg, objective)
    return cfg, model, objective, data.split("train")


def _pretrain(cell_dir: Path, data=None, **train_over):
    cfg, model, objective, data = _parts(data=data, **train_over)
    summary = train.pretrain(model, objective, data, cfg.train, cell_dir, 0, torch.device("cpu"))
    return summary, model


def _assert_same_state(a: torch.nn.Module, b: torch.nn.Module):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def test_checkpoint_every_steps(tmp_path, monkeypatch):
    saved = []
    real = train.save_checkpoint
    monkeypatch.setattr(train, "save_checkpoint", lambda path, **st: (saved.append(st["step"]), real(path, **st)))
    _pretrain(tmp_path / "cell", checkpoint_every_steps=2)
    # 3 steps per epoch, 9 in all: every 2 steps, plus every epoch end
    assert saved == [2, 3, 4, 6, 8, 9]
    saved.clear()
    _pretrain(tmp_path / "cell0", checkpoint_every_steps=0)
    assert saved == [3, 6, 9]
    with pytest.raises(ValueError, match="checkpoint_every_steps"):
        _pretrain(tmp_path / "bad", checkpoint_every_steps=-1)


def _preempted_at_step(monkeypatch, n: int, run) -> list:
    """``run()`` with a preemption "signal" arriving while optimiser step ``n`` is computed and a handler that
    raises like submitit's sys.exit; returns the handler's calls (``[True]`` when it ran once)."""
    fired = []

    def handler():
        fired.append(True)
        raise SystemExit(-1)

    real_step = torch.optim.AdamW.step
    calls = {"n": 0}

    def step_and_signal(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == n:
            assert train.PREEMPTION.request()
        return real_step(self, *a, **k)

    train.PREEMPTION.install(handler)
    monkeypatch.setattr(torch.optim.AdamW, "step", step_and_signal)
    try:
        with pytest.raises(SystemExit):
            run()
    finally:
        monkeypatch.setattr(torch.optim.AdamW, "step", real_step)
        train.PREEMPTION.install(None)
    return fired


def test_deferred_preemption_saves_at_the_step_and_resumes_exactly(tmp_path, monkeypatch):
    """A signal during step 5 (mid-epoch 2) is acted on after the step: last.pt at step 5 with that step's RNG
    state, then the installed handler runs (here it raises like submitit's sys.exit). Resuming gives the same
    parameters, history and summary as an uninterrupted run, augmentation flips included."""
    ref_summary, ref_model = _pretrain(tmp_path / "ref")

    fired = _preempted_at_step(monkeypatch, 5, lambda: _pretrain(tmp_path / "cell"))
    assert fired == [True]
    state = torch.load(tmp_path / "cell" / "checkpoints" / "last.pt", weights_only=False)
    assert state["step"] == 5
    assert not train.PREEMPTION.request()  # no loop running: the caller must act at once

    summary, model = _pretrain(tmp_path / "cell")
    assert "resumed" not in str(summary)
    _assert_same_state(model, ref_model)
    hist = (tmp_path / "cell" / "history.csv").read_text()
    assert hist == (tmp_path / "ref" / "history.csv").read_text()
    for k, v in ref_summary.items():
        if k.startswith("train/final_") or k in ("train/steps", "train/epochs"):
            assert summary[k] == v, k


@pytest.mark.parametrize("augment", ["flip", "mgll"])
def test_preempted_with_workers_resumes_like_an_uninterrupted_run_without(tmp_path, monkeypatch, augment):
    """data.workers=2, preempted mid-epoch 2 at step 5, resumed: the same parameters, history and summary as
    an uninterrupted run that decoded in the main process (data.workers=0); the checkpoint records the
    position in the data."""
    ref_summary, ref_model = _pretrain(tmp_path / "ref", data={"workers": 0}, augment=augment)
    assert ref_summary["train/data_workers"] == 0

    assert _preempted_at_step(monkeypatch, 5, lambda: _pretrain(tmp_path / "cell", data={"workers": 2},
                                                                augment=augment)) == [True]
    state = torch.load(tmp_path / "cell" / "checkpoints" / "last.pt", weights_only=False)
    assert state["step"] == 5 and state["data_position"] == {"epoch": 1, "batch": 2, "samples_seen": 120}
    summary, model = _pretrain(tmp_path / "cell", data={"workers": 2}, augment=augment)
    assert summary["train/data_workers"] == 2
    _assert_same_state(model, ref_model)
    assert (tmp_path / "cell" / "history.csv").read_text() == (tmp_path / "ref" / "history.csv").read_text()
    for k, v in ref_summary.items():
        if k.startswith("train/final_"):
            assert summary[k] == v, k


def _grid(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump({"name": "tiny", "fixed": TINY_FIXED, "axes": {"run": RUNS}, "seeds": [0]}))
    return path


def _history_step(cell: Path) -> int:
    try:
        lines = (cell / "history.csv").read_text().strip().splitlines()
        return int(lines[-1].split(",")[0]) if len(lines) > 1 else 0
    except (OSError, ValueError):
        return 0


def test_sigkill_mid_cell_then_rerun_matches_uninterrupted(tmp_path):
    grid = _grid(tmp_path)
    args = [f"grid={grid}", "train.checkpoint_every_steps=1"]
    total = 3 * (72 // 24)

    # the uninterrupted reference
    assert run_main([*args, f"results_dir={tmp_path / 'ref'}"]) == 0
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}

    root = tmp_path / "run" / "tiny"
    proc = subprocess.Popen([sys.executable, "-m", "bench.run", *args, f"results_dir={tmp_path / 'run'}"],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    killed_cell, killed_at = None, 0
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            cells = [p for p in root.glob("*") if p.is_dir()] if root.exists() else []
            for cell in cells:
                s = _history_step(cell)
                # the second cell (so one cell is done before the kill), mid-training
                if not (cell / "done").exists() and any((c / "done").exists() for c in cells) and 2 <= s <= total - 3:
                    os.killpg(proc.pid, signal.SIGKILL)
                    killed_cell, killed_at = cell, s
                    break
            if killed_cell:
                break
            time.sleep(0.02)
    finally:
        if proc.poll() is None and killed_cell is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert killed_cell is not None, "the grid finished before it could be killed mid-cell"
    first_cell = next(c for c in root.glob("*") if c.is_dir() and c != killed_cell)
    done_mtime = (first_cell / "done").stat().st_mtime
    assert store.cell_state(killed_cell) == store.PENDING  # stale running marker of a dead pid
    assert not (killed_cell / "done").exists() and not (killed_cell / "metrics.json").exists()

    assert run_main([*args, f"results_dir={tmp_path / 'run'}"]) == 0

    # every cell completed exactly once; the killed one resumed from its checkpoint, nothing else was redone
    assert (first_cell / "done").stat().st_mtime == done_mtime
    first_log = (first_cell / "log.txt").read_text()
    assert first_log.count("starting") == 1 and first_log.count(" done in ") == 1
    killed_log = (killed_cell / "log.txt").read_text()
    assert killed_log.count("starting") == 2 and killed_log.count(" done in ") == 1
    resumed = [ln for ln in killed_log.splitlines() if "resumed from" in ln]
    assert len(resumed) == 1
    step = int(resumed[0].split(" at step ")[1].split("/")[0])
    assert killed_at <= step < total

    for cell in (first_cell, killed_cell):
        got = json.loads((cell / "metrics.json").read_text())
        want = json.loads((tmp_path / "ref" / "tiny" / cell.name / "metrics.json").read_text())
        compared = [k for k in want if k.startswith("linear_probe/") and not k.endswith("time_s")]
        compared += [k for k in want if k.startswith("train/final_")]
        assert "train/final_loss" in compared and "linear_probe/disease_multilabel/auc" in compared
        assert {k: got[k] for k in compared} == {k: want[k] for k in compared}, cell.name
        assert (cell / "history.csv").read_text() == (tmp_path / "ref" / "tiny" / cell.name / "history.csv").read_text()
