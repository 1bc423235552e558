"""Cell states from the store (running with a live pid vs a stale marker, another host, job records,
failures recorded from outside) and what ``python -m bench.status`` shows for them."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

from bench import claim, store
from bench.status import collect, last_progress, main as status_main


def _cell(root, name, label="A", seed=0):
    d = root / name
    store.write_yaml(d / "config.yaml", {"label": label, "seed": seed})
    return d


def test_running_marker_live_pid_then_stale(tmp_path):
    d = _cell(tmp_path, "c")
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        store.write_json(d / "running.json", {"host": socket.gethostname(), "pid": proc.pid})
        assert store.cell_state(d) == store.RUNNING
        store.write_json(d / "error.json", {"type": "X"})  # an old failure while it reruns: still running
        assert store.cell_state(d) == store.RUNNING
    finally:
        proc.kill()
        proc.wait()
    assert store.cell_state(d) == store.FAILED  # the marker is stale: the old verdict shows again
    (d / "error.json").unlink()
    assert store.cell_state(d) == store.PENDING  # killed mid-run: resumable


def _done(d):
    store.write_json(d / "metrics.json", {"a/auc": 0.5})
    store.write_text(d / "done", "x")


def test_marker_from_another_host_counts_as_running_while_its_heartbeat_is_fresh(tmp_path):
    d = _cell(tmp_path, "c")
    store.write_json(d / "running.json", {"host": "node-that-is-not-here", "pid": 1})
    assert store.cell_state(d) == store.RUNNING
    old = time.time() - claim.STALE_AFTER_S - 5  # no heartbeat for longer than the timeout: stale
    os.utime(d / "running.json", (old, old))
    assert store.cell_state(d) == store.PENDING
    os.utime(d / "running.json")
    assert store.cell_state(d) == store.RUNNING
    _done(d)
    assert store.cell_state(d) == store.DONE  # done wins over any marker


def test_mark_failed_and_set_aside(tmp_path):
    d = _cell(tmp_path, "c")
    store.write_json(d / "running.json", {"host": "elsewhere", "pid": 1})
    store.mark_failed(d, "Cancelled", "SLURM job 3 was cancelled")
    assert store.cell_state(d) == store.FAILED and not (d / "running.json").exists()
    assert json.loads((d / "error.json").read_text())["type"] == "Cancelled"
    store.set_aside_error(d)
    assert store.cell_state(d) == store.PENDING and (d / "error.previous.json").exists()
    _done(d)
    store.mark_failed(d, "Cancelled", "too late")  # never touches a done cell
    assert not (d / "error.json").exists()


def test_job_record(tmp_path):
    d = _cell(tmp_path, "c")
    assert store.read_job(d) is None
    store.write_job(d, {"launcher": "slurm", "job_id": "12_3"})
    job = store.read_job(d)
    assert job["job_id"] == "12_3" and job["submitted"] > 0


def test_status_lines_and_counts(tmp_path, capsys):
    root = tmp_path / "grid"
    done = _cell(root, "c1", "CLIP", 0)
    _done(done)
    failed = _cell(root, "c2", "MGLL", 0)
    store.write_json(failed / "error.json", {"type": "ValueError", "message": "bad batch"})
    running = _cell(root, "c3", "MGLL", 1)
    store.mark_running(running)  # this process: live
    (running / "history.csv").write_text("step,epoch,lr,logit_scale,loss\n7,1.75,0.001,14.0,2.5\n")
    _cell(root, "c4", "CLIP", 1)
    (root / ".submitit").mkdir()  # not a cell
    records = {r["cell"]: r for r in collect(root)}
    assert {k: r["state"] for k, r in records.items()} == {"c1": "done", "c2": "failed", "c3": "running", "c4": "pending"}
    assert records["c3"]["step"] == 7.0 and records["c3"]["loss"] == 2.5
    assert last_progress(root / "c4") == {}
    assert status_main([str(root)]) == 0
    out = capsys.readouterr().out
    assert "4 cells in" in out and "1 done, 1 failed, 1 running, 1 pending" in out
    assert "FAILED c2 (MGLL): ValueError: bad batch" in out and "7 (ep 1.75)" in out
    store.clear_running(running)
