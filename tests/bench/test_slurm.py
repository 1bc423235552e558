"""Against a real SLURM cluster (``bash slurm/local/up.sh``; skipped when none is up): a grid as one job array
with ``launcher.profile=local``, a running element preempted with USR2 that checkpoints, is requeued and
resumes (same metrics as an uninterrupted run), a cell that raises and a cancelled one reported failed with
their errors (never hung), the cancelled one then resumed with ``rerun_failed=true``, and sbatch refusals as
configuration errors.

Run with ``python -m pytest -m slurm -q`` (``.ci/slurm-tests.sh`` brings the cluster up and down)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from bench import store
from bench.run import main as run_main
from bench.status import collect
from bench.status import main as status_main

REPO = Path(__file__).resolve().parents[2]


def _cluster_up() -> bool:
    if not (shutil.which("scontrol") and shutil.which("sinfo") and shutil.which("sbatch")):
        return False
    try:  # scontrol ping answers at once; sinfo retries for ~10 s when the controller is down: ask it only then
        ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=5)
        if ping.returncode != 0 or " is UP" not in ping.stdout:
            return False
        info = subprocess.run(["sinfo", "-h", "-o", "%P %a"], capture_output=True, text=True, timeout=15)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return info.returncode == 0 and " up" in info.stdout


pytestmark = [
    pytest.mark.slurm,
    pytest.mark.slow,
    pytest.mark.skipif(not _cluster_up(), reason="no SLURM cluster is up (bash slurm/local/up.sh)"),
]

FIXED = {
    "data": {"format": "fundus_synth", "size": 96, "test_size": 48, "val_fraction": 0.25, "resolution": 32},
    "image": {"name": "vit_tiny_custom", "width": 32, "depth": 1, "heads": 2},
    "text": {"name": "tiny_transformer", "width": 32, "layers": 1, "heads": 2, "context_length": 32},
    "model": {"embed_dim": 32},
    "train": {"epochs": 20, "batch_size": 24, "threads": 1, "log_every": 1, "checkpoint_every_steps": 5},
    "tasks": [{"name": "linear_probe", "target": "disease_multilabel", "c_grid": [0.1, 1.0]}],
}
CLIP = {"label": "CLIP", "objective": {"name": "clip", "level": "disease"}}
MGLL = {"label": "MGLL", "objective": {"name": "mgll", "levels": ["disease", "description"]}}
# (launcher.time > 10 minutes: with a limit of 10 minutes or less submitit counts every USR2 as a timeout)
SLURM = ["launcher.name=slurm", "launcher.profile=local", "launcher.poll_s=1"]


@pytest.fixture(autouse=True)
def _env(tmp_path, monkeypatch):
    # jobs run in the submitter's cwd with its environment (sbatch --export=ALL): bench must be importable
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("CONTRASTIVE_BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


def _grid(tmp_path: Path, name: str, runs: list[dict], **fixed) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "fixed": {**FIXED, **fixed}, "axes": {"run": runs}, "seeds": [0]}))
    return path


def _cells(root: Path) -> dict[str, Path]:
    return {yaml.safe_load((p / "config.yaml").read_text())["label"]: p for p in root.iterdir()
            if p.is_dir() and (p / "config.yaml").exists()}


def _step(cell: Path) -> int:
    try:
        lines = (cell / "history.csv").read_text().strip().splitlines()
        return int(lines[-1].split(",")[0]) if len(lines) > 1 else 0
    except (OSError, ValueError):
        return 0


def _wait_for(pred, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def _resumed_step(cell: Path) -> int | None:
    lines = [ln for ln in (cell / "log.txt").read_text().splitlines() if "resumed from" in ln]
    return int(lines[-1].split(" at step ")[1].split("/")[0]) if lines else None


def test_array_preempted_element_resumes_from_its_checkpoint(tmp_path, capsys):
    grid = _grid(tmp_path, "arr", [CLIP, MGLL])
    assert run_main([f"grid={grid}", f"results_dir={tmp_path / 'r'}", *SLURM, "launcher.wait=false"]) == 0
    out = capsys.readouterr().out
    assert "not waiting" in out and "python -m bench.status" in out
    root = tmp_path / "r" / "arr"
    cells = _cells(root)
    jobs = {label: store.read_job(c)["job_id"] for label, c in cells.items()}
    assert len({j.split("_")[0] for j in jobs.values()}) == 1 and all("_" in j for j in jobs.values())  # one array

    # a second run while the array is queued/running submits nothing again
    assert run_main([f"grid={grid}", f"results_dir={tmp_path / 'r'}", *SLURM, "launcher.wait=false"]) == 0
    assert "already queued or running in SLURM" in capsys.readouterr().err

    # preempt MGLL while it trains: USR2 to the job's steps, as SLURM does at preemption
    victim = cells["MGLL"]
    _wait_for(lambda: _step(victim) >= 6, 180, "MGLL to train a few steps")
    subprocess.run(["scancel", "--signal=USR2", jobs["MGLL"]], check=True)

    assert status_main([str(root), "--wait", "--interval", "2"]) == 0
    step = _resumed_step(victim)
    assert step is not None and step > 0, (victim / "log.txt").read_text()[-3000:]
    assert _resumed_step(cells["CLIP"]) is None
    job = store.read_job(victim)
    job_log = Path(job["log_out"]).read_text() + Path(job["log_err"]).read_text()
    assert "this job is preempted" in job_log and "checkpoint saved at step" in job_log
    assert all(store.cell_state(c) == store.DONE for c in cells.values())
    records = collect(root)
    assert [r["slurm"] for r in records] == ["COMPLETED", "COMPLETED"]

    # same metrics as an uninterrupted run of that cell
    (tmp_path / "ref").mkdir()
    only_mgll = _grid(tmp_path / "ref", "arr", [MGLL])  # same cell id: the grid name is not part of it
    assert run_main([f"grid={only_mgll}", f"results_dir={tmp_path / 'ref'}"]) == 0
    got = json.loads((victim / "metrics.json").read_text())
    want = json.loads((tmp_path / "ref" / "arr" / victim.name / "metrics.json").read_text())
    keys = [k for k in want if (k.startswith("linear_probe/") and not k.endswith("time_s")) or k.startswith("train/final_")]
    assert "train/final_loss" in keys
    assert {k: got[k] for k in keys} == {k: want[k] for k in keys}


def test_failed_and_cancelled_cells_are_reported_then_resumed(tmp_path):
    # fails inside its job: a batch larger than the training set (the preflight, which finds it, is off)
    bad = {"label": "BAD", "objective": {"name": "clip", "level": "disease"}, "train": {"batch_size": 5000}}
    long = {"label": "LONG", "objective": {"name": "clip", "level": "disease"}, "train": {"epochs": 60}}
    grid = _grid(tmp_path, "fc", [bad, long])
    args = [sys.executable, "-m", "bench.run", f"grid={grid}", f"results_dir={tmp_path / 'r'}", *SLURM, "preflight=false"]
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    root = tmp_path / "r" / "fc"
    try:
        cell = _wait_for(lambda: _cells(root).get("LONG") if root.exists() else None, 120, "the submission")
        _wait_for(lambda: _step(cell) >= 5, 180, "LONG to train past its first checkpoint")
        subprocess.run(["scancel", store.read_job(cell)["job_id"]], check=True)
        out, _ = proc.communicate(timeout=180)  # the runner notices the cancelled job: no hang
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, out[-3000:]
    cells = _cells(root)
    err_bad = json.loads((cells["BAD"] / "error.json").read_text())
    assert err_bad["type"] == "ValueError" and "batch_size" in err_bad["message"]
    err_long = json.loads((cells["LONG"] / "error.json").read_text())
    assert err_long["type"] == "Cancelled" and "CANCELLED" in err_long["message"]
    assert "FAILED" in out and "Cancelled" in out and "ValueError" in out
    assert all(store.cell_state(c) == store.FAILED for c in cells.values())
    assert not any((c / "done").exists() for c in cells.values())
    text = subprocess.run([sys.executable, "-m", "bench.status", str(root)], cwd=REPO, capture_output=True,
                          text=True, timeout=60).stdout
    assert "0 done, 2 failed" in text and "Cancelled" in text

    # rerun_failed=true resubmits both: LONG resumes from its checkpoint and completes, BAD fails again
    assert run_main([f"grid={grid}", f"results_dir={tmp_path / 'r'}", *SLURM, "rerun_failed=true", "preflight=false"]) == 1
    assert store.cell_state(cells["LONG"]) == store.DONE
    assert (_resumed_step(cells["LONG"]) or 0) >= 5
    assert store.cell_state(cells["BAD"]) == store.FAILED
    assert (cells["LONG"] / "error.previous.json").exists()


def test_sbatch_refusal_is_a_configuration_error(tmp_path, capsys):
    grid = _grid(tmp_path, "ref", [CLIP])
    assert run_main([f"grid={grid}", f"results_dir={tmp_path / 'r'}", *SLURM, "launcher.partition=nope"]) == 2
    err = capsys.readouterr().err
    assert "sbatch refused" in err and "nope" in err.lower()


def test_real_partition_preemption_requeues_and_resumes(tmp_path):
    """A job of the `high` partition needing every CPU preempts the cell's `debug` job (PreemptMode=REQUEUE,
    preempt_send_user_signal): the cell gets USR2, checkpoints, is requeued and resumes."""
    cpus = int(subprocess.run(["sinfo", "-h", "-N", "-o", "%c"], capture_output=True, text=True).stdout.split()[0])
    grid = _grid(tmp_path, "pre", [CLIP], train={**FIXED["train"], "epochs": 60})
    assert run_main([f"grid={grid}", f"results_dir={tmp_path / 'r'}", *SLURM, f"launcher.cpus={cpus}",
                     "launcher.wait=false"]) == 0
    root = tmp_path / "r" / "pre"
    (cell,) = _cells(root).values()
    _wait_for(lambda: _step(cell) >= 6, 180, "the cell to train a few steps")
    high = subprocess.run(["sbatch", "-p", "high", "-c", str(cpus), "-o", str(tmp_path / "high.out"), "--wrap", "sleep 2"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert high.returncode == 0, high.stderr
    assert status_main([str(root), "--wait", "--interval", "2"]) == 0
    job = store.read_job(cell)
    assert "this job is preempted" in Path(job["log_out"]).read_text()
    assert (_resumed_step(cell) or 0) > 0 and store.cell_state(cell) == store.DONE


def test_an_inline_rerun_beside_a_running_array_trains_nothing_twice(tmp_path, capsys):
    """While the array runs one cell (claimed, on the node) and holds the other in the queue, an inline rerun
    of the same grid runs neither and says so (exit status 1: cells left not done); once the array is done,
    every cell was trained exactly once."""
    grid = _grid(tmp_path, "side", [CLIP, MGLL], train={**FIXED["train"], "epochs": 40})
    assert run_main([f"grid={grid}", f"results_dir={tmp_path / 'r'}", *SLURM, "launcher.array_parallelism=1",
                     "launcher.wait=false"]) == 0
    root = tmp_path / "r" / "side"
    cells = _cells(root)
    _wait_for(lambda: any(store.cell_state(c) == store.RUNNING for c in cells.values()), 180, "an element to claim its cell")
    capsys.readouterr()
    assert run_main([f"grid={grid}", f"results_dir={tmp_path / 'r'}"]) == 1  # inline, beside the array
    captured = capsys.readouterr()
    assert "0 to run" in captured.err and "already queued or running in SLURM" in captured.err
    assert "RUNNING" in captured.out and "held by host" in captured.out
    assert status_main([str(root), "--wait", "--interval", "2"]) == 0
    for c in cells.values():
        assert store.cell_state(c) == store.DONE
        log = (c / "log.txt").read_text()
        assert log.count("starting") == 1 and log.count(" done in ") == 1
