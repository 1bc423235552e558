"""Claims (bench.claim): exclusive creation, release, heartbeat, a claim taken over, staleness, the NFS
lost-reply and no-hard-link paths, and processes racing for one cell (fresh and stale) with one winner."""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import claim

REPO = Path(__file__).resolve().parents[2]


def test_acquire_is_exclusive_and_release_removes_it(tmp_path):
    c = claim.acquire(tmp_path)
    assert c is not None
    info = json.loads((tmp_path / "running.json").read_text())
    assert info["host"] == socket.gethostname() and info["pid"] == os.getpid() and info["token"] == c.info["token"]
    assert claim.acquire(tmp_path) is None  # this process is alive: the claim is live
    assert claim.is_live(tmp_path)
    c.release()
    assert not (tmp_path / "running.json").exists()
    assert not list(tmp_path.glob(".*tmp"))  # no temporary file left
    with claim.acquire(tmp_path) as again:
        assert again is not None and again.held()
    assert not (tmp_path / "running.json").exists()


def test_heartbeat_touches_the_claim(tmp_path):
    c = claim.acquire(tmp_path, heartbeat_s=0.05)
    try:
        old = time.time() - 3600
        os.utime(tmp_path / "running.json", (old, old))
        deadline = time.time() + 5
        while (tmp_path / "running.json").stat().st_mtime < old + 60 and time.time() < deadline:
            time.sleep(0.02)
        assert (tmp_path / "running.json").stat().st_mtime > time.time() - 60
    finally:
        c.release()


def test_a_claim_taken_over_is_noticed_and_left_alone(tmp_path):
    c = claim.acquire(tmp_path, heartbeat_s=0.05)
    other = {"host": "elsewhere", "pid": 1, "token": "theirs"}
    (tmp_path / "running.json").write_text(json.dumps(other))
    time.sleep(0.3)
    assert not c.held() and c.lost
    c.release()  # not ours: not removed
    assert json.loads((tmp_path / "running.json").read_text()) == other


@pytest.mark.parametrize("info, age, live, why", [
    ({"host": "HERE", "pid": "SELF"}, 0, True, "is running"),
    ({"host": "HERE", "pid": "SELF", "pid_start": -5}, 0, False, "belongs to another process"),
    ({"host": "HERE", "pid": "DEAD"}, 0, False, "is gone"),
    ({"host": "elsewhere", "pid": 1}, 10, True, "heartbeat from host elsewhere"),
    ({"host": "elsewhere", "pid": 1}, claim.STALE_AFTER_S + 1, False, "no heartbeat"),
    (None, 1, True, "unreadable claim changed"),
    (None, claim.UNREADABLE_GRACE_S + 1, False, "unreadable claim, unchanged"),
])
def test_judge(info, age, live, why):
    if info is not None:
        info = dict(info)
        if info["host"] == "HERE":
            info["host"] = socket.gethostname()
        if info["pid"] == "SELF":
            info["pid"] = os.getpid()
        elif info["pid"] == "DEAD":
            p = subprocess.Popen([sys.executable, "-c", "pass"])
            p.wait()
            info["pid"] = p.pid
    got, reason = claim.judge(info, time.time() - age)
    assert got is live and why in reason


def test_judge_slurm_requeue(monkeypatch):
    info = {"host": "elsewhere", "pid": 1, "slurm_job_id": "77", "slurm_restart_count": 0}
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    live, why = claim.judge(info, time.time())
    assert not live and "earlier run of this SLURM job 77" in why
    monkeypatch.setenv("SLURM_RESTART_COUNT", "0")  # the same incarnation (two processes of one allocation)
    assert claim.judge(info, time.time())[0]
    monkeypatch.setenv("SLURM_JOB_ID", "78")  # another job
    assert claim.judge(info, time.time())[0]


def test_without_hard_links_the_fallback_is_o_excl(tmp_path, monkeypatch):
    def no_link(src, dst):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_link)
    c = claim.acquire(tmp_path)
    assert c is not None and json.loads((tmp_path / "running.json").read_text())["token"] == c.info["token"]
    assert claim.acquire(tmp_path) is None
    c.release()
    assert not (tmp_path / "running.json").exists()


def test_nfs_lost_reply_counts_as_success(tmp_path, monkeypatch):
    real = os.link

    def link_then_lose_the_reply(src, dst):
        real(src, dst)
        raise FileExistsError(errno.EEXIST, "File exists")  # the retransmitted request

    monkeypatch.setattr(os, "link", link_then_lose_the_reply)
    c = claim.acquire(tmp_path)
    assert c is not None
    c.release()


RACER = """
import sys, time, json
from pathlib import Path
from bench import claim
cell, start = Path(sys.argv[1]), float(sys.argv[2])
while time.time() < start:
    time.sleep(0.001)
c = claim.acquire(cell)
print("GOT" if c is not None else "NOT", flush=True)
time.sleep(3.0)
if c is not None:
    c.release()
"""


@pytest.mark.parametrize("stale", [False, True], ids=["fresh", "stale"])
def test_racing_processes_one_winner(tmp_path, stale):
    cell = tmp_path / "cell"
    cell.mkdir()
    if stale:  # a claim of a killed process: every racer sees it stale and tries to take it over
        p = subprocess.Popen([sys.executable, "-c", "pass"])
        p.wait()
        (cell / "running.json").write_text(json.dumps({"host": socket.gethostname(), "pid": p.pid}))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    start = time.time() + 2.0
    procs = [subprocess.Popen([sys.executable, "-c", RACER, str(cell), str(start)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for _ in range(6)]
    outs = [p.communicate(timeout=60) for p in procs]
    got = [o.strip() for o, _ in outs]
    assert sorted(got) == ["GOT"] + ["NOT"] * 5, outs
    if stale:
        assert sum("taking over the stale claim" in e for _, e in outs) == 1
    assert not (cell / "running.json").exists() and not (cell / "running.json.reclaim").exists()


def test_the_claims_benchmark_runs(tmp_path, capsys):
    from bench.perf import main as perf_main

    assert perf_main(["claims", "--dir", str(tmp_path), "--steps", "3", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "one heartbeat" in out and "ratio 1.000" in out and "claim, heartbeat 30 s" in out
    assert list(tmp_path.iterdir()) == []
