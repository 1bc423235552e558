"""Runs beside runs: two ``bench.run`` on one results folder train each cell exactly once; the local launcher's
runner stopped with SIGTERM, or killed with SIGKILL, stops its cell processes (their claims are released, the
cells resume later); a runner beside a SLURM array leaves the array's cells alone, and settling an ended job
leaves a cell held by another process alone (fake squeue/sacct)."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from bench import claim, store

REPO = Path(__file__).resolve().parents[2]
FIXED = {
    "data": {"format": "fundus_synth", "size": 96, "test_size": 48, "val_fraction": 0.25, "resolution": 32},
    "image": {"name": "vit_tiny_custom", "width": 32, "depth": 1, "heads": 2},
    "text": {"name": "tiny_transformer", "width": 32, "layers": 1, "heads": 2, "context_length": 32},
    "model": {"embed_dim": 32},
    "train": {"epochs": 2, "batch_size": 24, "threads": 1, "log_every": 1},
    "tasks": [{"name": "linear_probe", "target": "disease_multilabel", "c_grid": [1.0]}],
}
RUNS = [{"label": "CLIP", "objective": {"name": "clip", "level": "disease"}},
        {"label": "MGLL", "objective": {"name": "mgll", "levels": ["disease", "description"]}}]


def _env(tmp_path: Path) -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
            "CONTRASTIVE_BENCH_CACHE": str(tmp_path / "cache")}


def _cells(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and (p / "config.yaml").exists()) if root.exists() else []


def _wait_for(pred, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is gone for our purpose
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
def test_two_runs_on_one_folder_train_each_cell_once(tmp_path):
    grid = tmp_path / "two.yaml"
    grid.write_text(yaml.safe_dump({"name": "two", "fixed": FIXED, "axes": {"run": RUNS}, "seeds": [0, 1]}))
    cmd = [sys.executable, "-m", "bench.run", f"grid={grid}", f"results_dir={tmp_path / 'r'}"]
    root = tmp_path / "r" / "two"
    first = subprocess.Popen(cmd, cwd=REPO, env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # the second starts once the first holds a cell: they work side by side
    _wait_for(lambda: any((c / "running.json").exists() for c in _cells(root)), 180, "the first run to claim a cell")
    second = subprocess.Popen(cmd, cwd=REPO, env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out1, _ = first.communicate(timeout=600)
    out2, _ = second.communicate(timeout=600)
    cells = _cells(root)
    assert len(cells) == 4
    for c in cells:
        assert store.cell_state(c) == store.DONE, (out1[-2000:], out2[-2000:])
        log = (c / "log.txt").read_text()
        assert log.count("starting") == 1 and log.count(" done in ") == 1, c.name  # trained exactly once
    # the runs met: one left a cell to the other, found held at claim time ("not run here") or already at
    # planning time (the second run plans fewer cells than the first left undone)
    planned = re.search(r"4 cells, (\d) already done, (\d) to run", out2)
    assert "not run here" in out1 + out2 or (planned and sum(map(int, planned.groups())) < 4), (out1[-2000:], out2[-2000:])
    assert {first.returncode, second.returncode} <= {0, 1} and 0 in (first.returncode, second.returncode)
    again = subprocess.run(cmd, cwd=REPO, env=_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "4 already done, 0 to run" in again.stderr


def _long_local_grid(tmp_path: Path) -> Path:
    grid = tmp_path / "long.yaml"
    fixed = {**FIXED, "train": {**FIXED["train"], "epochs": 2000, "checkpoint_every_steps": 5},
             "objective": {"name": "clip", "level": "disease"}}
    grid.write_text(yaml.safe_dump({"name": "long", "fixed": fixed}))
    return grid


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_stopping_the_local_runner_stops_its_cells(tmp_path, sig):
    grid = _long_local_grid(tmp_path)
    cmd = [sys.executable, "-m", "bench.run", f"grid={grid}", f"results_dir={tmp_path / 'r'}", "launcher.name=local",
           "launcher.poll_s=0.2"]
    runner = subprocess.Popen(cmd, cwd=REPO, env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    root = tmp_path / "r" / "long"
    try:
        cell = _wait_for(lambda: next(iter(_cells(root)), None), 120, "the cell folder")

        def trained():
            info = store.read_running(cell)
            return info if info and (cell / "checkpoints" / "last.pt").exists() else None

        info = _wait_for(trained, 180, "the cell to train past a checkpoint")
        pid = int(info["pid"])
        assert pid != runner.pid and _alive(pid)
        os.kill(runner.pid, sig)
        out, _ = runner.communicate(timeout=60)
        assert runner.returncode == (143 if sig == signal.SIGTERM else -9), out[-3000:]
        if sig == signal.SIGTERM:
            assert "interrupted (SIGTERM)" in out and "stopping 1 local job" in out
        _wait_for(lambda: not _alive(pid), 30, f"the cell process {pid} to stop")
    finally:
        if runner.poll() is None:
            runner.kill()
    # the cell let its claim go and resumes later from its checkpoint
    _wait_for(lambda: store.cell_state(cell) == store.PENDING, 30, "the cell to be pending")
    assert not (cell / "done").exists() and (cell / "checkpoints" / "last.pt").exists()
    log = (cell / "log.txt").read_text()
    if sig == signal.SIGKILL:
        err = "".join(p.read_text() for p in (root / ".submitit").glob("*_log.err"))
        assert "the local runner" in err and "is gone" in err


# -- beside a SLURM array (fake squeue / sacct) -------------------------------------------------------------
def _fake_tools(folder: Path, squeue: str, sacct: str) -> None:
    folder.mkdir()
    for name, out in (("squeue", squeue), ("sacct", sacct)):
        p = folder / name
        p.write_text(f"#!/bin/sh\ncat <<'EOF'\n{out}\nEOF\n")
        p.chmod(p.stat().st_mode | stat.S_IEXEC)


def test_an_inline_run_beside_a_slurm_array(tmp_path, monkeypatch, capsys):
    """Cells queued in SLURM are not run; a cell the array is running on another node (its claim has a fresh
    heartbeat) is not run; the one cell left is; the exit status says cells are left not done."""
    from bench.run import main as run_main

    monkeypatch.setenv("CONTRASTIVE_BENCH_CACHE", str(tmp_path.parent / "shared-cache"))
    _fake_tools(tmp_path / "bin", squeue="90_0|PENDING\n90_1|RUNNING", sacct="JobID|State|NodeList\n90_[0-1]|PENDING|None")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    fixed = {**FIXED, "train": {**FIXED["train"], "epochs": 1}}
    grid = tmp_path / "arr.yaml"
    grid.write_text(yaml.safe_dump({"name": "arr", "fixed": fixed, "axes": {"run": RUNS}, "seeds": [0, 1]}))
    args = [f"grid={grid}", f"results_dir={tmp_path / 'r'}"]
    assert run_main([*args, "dry_run=true"]) == 0
    ids = [ln.split()[0] for ln in capsys.readouterr().out.splitlines()[2:6]]
    root = tmp_path / "r" / "arr"
    queued, running_there = ids[0], ids[1]
    store.write_job(root / queued, {"launcher": "slurm", "job_id": "90_0"})
    store.write_job(root / running_there, {"launcher": "slurm", "job_id": "90_1"})
    store.write_json(root / running_there / "running.json",
                     {"host": "node7", "pid": 4, "slurm_job_id": "91", "slurm_array": "90_1", "started": time.time()})
    code = run_main(args)
    captured = capsys.readouterr()
    assert code == 1
    assert "already queued or running in SLURM (90_0)" in captured.err
    assert f"RUNNING {running_there}" in captured.out and "held by host node7, pid 4" in captured.out
    assert "1 cell(s) are not run yet" in captured.out
    states = {i: store.cell_state(root / i) for i in ids}
    assert states[queued] == store.PENDING and states[running_there] == store.RUNNING
    assert [states[i] for i in ids[2:]] == [store.DONE, store.DONE]
    assert not (root / queued / "log.txt").exists() and not (root / running_there / "log.txt").exists()


def test_settling_an_ended_job_leaves_a_cell_held_by_another_process_alone(tmp_path, monkeypatch):
    """A SLURM job that started after an inline run had claimed its cell leaves it alone and ends COMPLETED;
    settling that job must not mark the cell failed while the inline run works on it."""
    from bench.launch import settle_slurm_job

    cell = tmp_path / "cell"
    store.write_yaml(cell / "config.yaml", {"label": "A", "seed": 0})
    store.write_job(cell, {"launcher": "slurm", "job_id": "90_3"})
    store.write_json(cell / "running.json", {"host": "login1", "pid": 5, "started": time.time()})  # an inline run
    settle_slurm_job(cell, "90_3", "COMPLETED")
    assert store.cell_state(cell) == store.RUNNING and not (cell / "error.json").exists()
    # the job's own claim, left when it was cancelled, is settled: failed, claim removed
    store.write_json(cell / "running.json", {"host": "node7", "pid": 5, "slurm_array": "90_3", "slurm_job_id": "93"})
    settle_slurm_job(cell, "90_3", "CANCELLED by 0")
    assert store.cell_state(cell) == store.FAILED and not (cell / "running.json").exists()
    assert json.loads((cell / "error.json").read_text())["type"] == "Cancelled"
    assert claim.read(cell) == (None, None)


def test_an_interruption_inside_a_checkpoint_write_is_not_a_failure(tmp_path, monkeypatch, capsys):
    """Ctrl-C (or SIGTERM under bench.run) that lands while torch.save writes to a file object comes out of
    torch's C++ writer as a RuntimeError: the cell is interrupted and resumable, never recorded as failed."""
    from bench import train
    from bench.run import main as run_main

    monkeypatch.setenv("CONTRASTIVE_BENCH_CACHE", str(tmp_path.parent / "shared-cache"))
    grid = tmp_path / "one.yaml"
    grid.write_text(yaml.safe_dump({"name": "one", "fixed": {**FIXED, "objective": RUNS[0]["objective"]}}))

    def save_interrupted(path, **state):
        try:
            signal.raise_signal(signal.SIGINT)  # the handler raises KeyboardInterrupt in torch's write callback ...
        except KeyboardInterrupt as e:  # ... and torch's writer turns it into this
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0") from e

    monkeypatch.setattr(train, "save_checkpoint", save_interrupted)
    assert run_main([f"grid={grid}", f"results_dir={tmp_path / 'r'}"]) == 130
    assert "interrupted (SIGINT)" in capsys.readouterr().err
    (cell,) = _cells(tmp_path / "r" / "one")
    assert store.cell_state(cell) == store.PENDING and not (cell / "error.json").exists()
    assert not (cell / "running.json").exists()


DIST = """
import os, sys, json
import torch
from bench.cell import execute
rank, world, cell, init = int(sys.argv[1]), 2, sys.argv[2], sys.argv[3]
torch.distributed.init_process_group("gloo", init_method=f"file://{init}", rank=rank, world_size=world)
state = execute({"label": "x", "seed": 0}, cell)
torch.distributed.barrier()
print(json.dumps({"rank": rank, "state": state}))
torch.distributed.destroy_process_group()
"""


@pytest.mark.slow
@pytest.mark.distributed
def test_a_distributed_cell_held_elsewhere_is_left_alone_by_every_rank(tmp_path):
    """Only rank 0 claims; when the cell is held by another process (or done), every rank returns at once
    with that state (no rank waits in a collective the others never enter)."""
    cell = tmp_path / "cell"
    cell.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        store.write_json(cell / "running.json", {"host": os.uname().nodename, "pid": holder.pid})
        for expected in (store.RUNNING, store.DONE):
            if expected == store.DONE:
                store.write_json(cell / "metrics.json", {"a/auc": 0.5})
                store.write_text(cell / "done", "x")
            init = tmp_path / f"init-{expected}"
            procs = [subprocess.Popen([sys.executable, "-c", DIST, str(r), str(cell), str(init)], cwd=REPO,
                                      env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                     for r in range(2)]
            outs = [p.communicate(timeout=120) for p in procs]
            states = [json.loads(o.strip().splitlines()[-1])["state"] for o, _ in outs]
            assert states == [expected, expected], outs
            assert json.loads((cell / "running.json").read_text())["pid"] == holder.pid  # untouched
            assert not (cell / "log.txt").exists() and not (cell / "config.yaml").exists()
    finally:
        holder.kill()
        holder.wait()
