"""Launchers: option validation and SLURM profiles (no cluster needed), the SLURM state parsing and the
settling of cells whose job ended without a verdict (with fake squeue/sacct), and the ``local`` launcher
end to end (two cells at once, one failing)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import yaml

from bench import launch, store
from bench.launch import LAUNCHERS, LauncherError, resolve
from bench.run import main as run_main

# the TINY pattern of test_run.py
TINY_FIXED = {
    "data": {"format": "fundus_synth", "size": 96, "test_size": 48, "val_fraction": 0.25, "resolution": 32},
    "image": {"name": "vit_tiny_custom", "width": 32, "depth": 1, "heads": 2},
    "text": {"name": "tiny_transformer", "width": 32, "layers": 1, "heads": 2, "context_length": 32},
    "model": {"embed_dim": 32},
    "train": {"epochs": 2, "batch_size": 24, "threads": 1, "log_every": 1},
    "tasks": [{"name": "linear_probe", "target": "disease_multilabel", "c_grid": [0.1, 1.0]}],
}


# -- options -----------------------------------------------------------------------------------------------
def test_registry_and_defaults():
    assert {"inline", "local", "slurm"} <= set(LAUNCHERS)
    launcher, opts = resolve({"name": "local"})
    assert launcher.name == "local" and opts["parallel"] == 1 and opts["timeout_min"] >= 24 * 60
    launcher, opts = resolve({})
    assert launcher.name == "inline" and opts == {}


@pytest.mark.parametrize(
    "cfg, match",
    [
        ({"name": "inline", "parallel": 2}, r"launcher\.parallel is not an option of launcher\.name=inline; allowed: none"),
        ({"name": "local", "paralel": 2}, r"launcher\.paralel .*allowed: launcher\.parallel, "),
        ({"name": "local", "wait": False}, r"launcher\.wait is not an option of launcher\.name=local"),
        ({"name": "local", "parallel": 0}, r"launcher\.parallel=0 must be >= 1"),
        ({"name": "slurm", "partiton": "debug"}, r"launcher\.partiton .*allowed: launcher\.profile, launcher\.partition"),
        ({"name": "slurm", "time": "1h"}, r"launcher\.time='1h' must be an integer"),
        ({"name": "slurm", "mem": "lots"}, r"launcher\.mem='lots'"),
        ({"name": "slurm", "wait": "no"}, r"launcher\.wait='no' .*true or false"),
        ({"name": "slurm", "profile": "nope"}, r"launcher\.profile='nope': no profile .*nope\.yaml; available .*local"),
        ({"name": "warp"}, r"launcher\.name='warp' is unknown; allowed: inline, local, slurm"),
    ],
)
def test_bad_options_name_the_key_and_the_allowed(cfg, match):
    with pytest.raises(LauncherError, match=match):
        resolve(cfg)


def test_shipped_profiles_and_overrides():
    assert {"local", "example"} <= set(launch.list_profiles())
    _, opts = resolve({"name": "slurm", "profile": "local"})
    assert opts["partition"] == "debug" and opts["gpus"] == 0 and opts["wait"] is True
    _, opts = resolve({"name": "slurm", "profile": "local", "time": 5, "partition": "high", "setup": "echo hi"})
    assert (opts["time"], opts["partition"], opts["setup"]) == (5, "high", ["echo hi"])
    _, ex = resolve({"name": "slurm", "profile": "example"})
    assert ex["gpus"] == 1 and ex["mem"] == 32 and ex["setup"]


def test_bad_profile_key_is_named(tmp_path, monkeypatch):
    (tmp_path / "mine.yaml").write_text("partition: a\ncpu: 4\n")
    monkeypatch.setenv("BENCH_SLURM_PROFILES", str(tmp_path))
    with pytest.raises(LauncherError, match=r"mine\.yaml: cpu is not an option of a SLURM profile \(did you mean cpus\?\); allowed: partition, account"):
        resolve({"name": "slurm", "profile": "mine"})


def test_executor_parameters():
    _, opts = resolve({"name": "slurm", "profile": "local", "account": "lab", "qos": "low", "mem": 8, "gpus": 2,
                       "tasks_per_node": 2, "additional": {"exclude": "n1"}})
    p = launch.slurm._executor_parameters(opts, "ablation")
    assert p["slurm_partition"] == "debug" and p["slurm_account"] == "lab" and p["slurm_qos"] == "low"
    assert p["mem_gb"] == 8.0 and p["gpus_per_node"] == 2 and p["tasks_per_node"] == 2 and p["nodes"] == 1
    assert p["timeout_min"] == 30 and p["name"] == "bench-ablation" and p["slurm_array_parallelism"] == 4
    assert p["slurm_additional_parameters"] == {"exclude": "n1"}
    _, opts = resolve({"name": "slurm", "mem": "500M"})
    p = launch.slurm._executor_parameters(opts, "g")
    assert p["slurm_mem"] == "500M" and "mem_gb" not in p and "slurm_partition" not in p


def test_runner_rejects_bad_launcher_before_anything(tmp_path, capsys):
    grid = tmp_path / "g.yaml"
    grid.write_text(yaml.safe_dump({"name": "g", "fixed": TINY_FIXED}))
    assert run_main([f"grid={grid}", f"results_dir={tmp_path}", "launcher.name=local", "launcher.paralel=2"]) == 2
    err = capsys.readouterr().err
    assert "launcher.paralel" in err and "launcher.parallel" in err
    assert run_main([f"grid={grid}", f"results_dir={tmp_path}", "launcher.name=slurm", "launcher.profile=local",
                     "dry_run=true"]) == 0
    out = capsys.readouterr().out
    assert "launcher slurm" in out and "partition=debug" in out
    assert not (tmp_path / "g").exists()


# -- SLURM state parsing and settling, with fake squeue/sacct ------------------------------------------------
def _fake_tools(folder: Path, squeue: str, sacct: str) -> None:
    folder.mkdir()
    for name, out in (("squeue", squeue), ("sacct", sacct)):
        p = folder / name
        p.write_text(f"#!/bin/sh\ncat <<'EOF'\n{out}\nEOF\n")
        p.chmod(p.stat().st_mode | stat.S_IEXEC)


def test_states_and_settling_with_fake_slurm(tmp_path, monkeypatch):
    _fake_tools(tmp_path / "bin", squeue="12_3|RUNNING\n12_4|PENDING",
                sacct="JobID|State|NodeList\n12_0|COMPLETED|n1\n12_0.batch|COMPLETED|n1\n12_1|CANCELLED by 0|n1\n"
                      "12_2|OUT_OF_MEMORY|n1\n12_[3-4%2]|PENDING|None")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    ids = ["12_0", "12_1", "12_2", "12_3", "12_4", "12_9"]
    states = launch.slurm_states(ids)
    assert states == {"12_0": "COMPLETED", "12_1": "CANCELLED by 0", "12_2": "OUT_OF_MEMORY", "12_3": "RUNNING",
                      "12_4": "PENDING", "12_9": "GONE"}
    assert [launch.is_active(states[i]) for i in ids] == [False, False, False, True, True, False]

    root = tmp_path / "grid"
    cells = {}
    for i in ids:
        d = root / f"cell{i}"
        store.write_yaml(d / "config.yaml", {"label": f"L{i}", "seed": 0})
        store.write_job(d, {"launcher": "slurm", "job_id": i})
        cells[i] = d
    store.write_json(cells["12_0"] / "metrics.json", {"a/auc": 0.5})
    store.write_text(cells["12_0"] / "done", "x")  # finished normally
    # a marker left by a killed job on another host must not keep the cancelled cell "running"
    store.write_json(cells["12_1"] / "running.json", {"host": "elsewhere", "pid": 1, "slurm_array": "12_1"})

    from bench.status import collect, main as status_main, render

    records = {r["job"]: r for r in collect(root)}
    assert records["12_0"]["state"] == store.DONE
    assert records["12_1"]["state"] == store.FAILED and records["12_1"]["error"].startswith("Cancelled: SLURM job 12_1")
    assert records["12_2"]["state"] == store.FAILED and "OUT_OF_MEMORY" in records["12_2"]["error"]
    assert records["12_9"]["state"] == store.FAILED and "JobFailed" in records["12_9"]["error"]
    assert records["12_3"]["state"] == store.PENDING and records["12_3"]["slurm"] == "RUNNING"
    assert records["12_4"]["slurm"] == "PENDING"
    err = json.loads((cells["12_1"] / "error.json").read_text())
    assert err["type"] == "Cancelled" and "rerun_failed=true" in err["message"]
    assert not (cells["12_1"] / "running.json").exists()
    assert not (cells["12_0"] / "error.json").exists()
    text = render(root, list(records.values()))
    assert "6 cells" in text and "1 done, 3 failed" in text and "(2 queued in SLURM)" in text
    assert status_main([str(root)]) == 0

    # the runner does not submit again the cells whose job is still queued or running
    from bench.run import _queued
    from bench.grid import Cell

    queued = _queued(root, [Cell(f"cell{i}", None) for i in ids])
    assert queued == {"cell12_3": "12_3", "cell12_4": "12_4"}


def test_status_no_update_and_bad_path(tmp_path, capsys):
    from bench.status import main as status_main

    assert status_main([str(tmp_path / "nothing")]) == 2
    assert "not a folder" in capsys.readouterr().err
    d = tmp_path / "g" / "c1"
    store.write_yaml(d / "config.yaml", {"label": "A", "seed": 1})
    (d / "history.csv").write_text("step,epoch,lr,logit_scale,loss\n1,0.5,0.001,14.2,3.5\n2,1.0,0.001,14.2,3.25\n")
    assert status_main([str(tmp_path / "g"), "--no-update"]) == 0
    out = capsys.readouterr().out
    assert "c1" in out and "pending" in out and "3.2500" in out and "2 (ep 1.00)" in out
    assert status_main([str(tmp_path / "g"), "--json"]) == 0
    rec = json.loads(capsys.readouterr().out)[0]
    assert rec["state"] == "pending" and rec["step"] == 2.0 and rec["label"] == "A"


def test_status_help(capsys):
    from bench.status import main as status_main

    with pytest.raises(SystemExit) as e:
        status_main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "bench.status" in out and "--wait" in out and "Cancelled" in out


# -- local launcher --------------------------------------------------------------------------------------------
def test_local_launcher_parallel_and_failure(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CONTRASTIVE_BENCH_CACHE", str(tmp_path / "cache"))
    fixed = {**TINY_FIXED, "train": {**TINY_FIXED["train"], "epochs": 1}}
    grid = tmp_path / "tiny.yaml"
    grid.write_text(yaml.safe_dump({"name": "tiny", "fixed": fixed, "axes": {"run": [
        {"label": "OK", "objective": {"name": "clip", "level": "disease"}},
        # fails inside the cell (the preflight, which would find it, is off): a batch larger than the training set
        {"label": "BAD", "objective": {"name": "clip", "level": "disease"}, "train": {"batch_size": 5000}},
    ]}}))
    code = run_main([f"grid={grid}", f"results_dir={tmp_path / 'r'}", "launcher.name=local", "launcher.parallel=2",
                     "launcher.poll_s=0.2", "preflight=false"])
    assert code == 1
    root = tmp_path / "r" / "tiny"
    cells = {yaml.safe_load((p / "config.yaml").read_text())["label"]: p for p in root.iterdir()
             if (p / "config.yaml").exists()}
    assert store.cell_state(cells["OK"]) == store.DONE
    assert store.cell_state(cells["BAD"]) == store.FAILED and not (cells["BAD"] / "done").exists()
    err = json.loads((cells["BAD"] / "error.json").read_text())
    assert err["type"] == "ValueError" and "batch_size" in err["message"]
    out = capsys.readouterr().out
    assert "FAILED" in out and "BAD" in out
    jobs = [store.read_job(c) for c in cells.values()]
    assert all(j["launcher"] == "local" for j in jobs) and len({j["job_id"] for j in jobs}) == 2
    logs = list((root / ".submitit").glob("*_0_log.err"))
    assert len(logs) == 2
    metrics = json.loads((cells["OK"] / "metrics.json").read_text())
    assert metrics["world_size"] == 1 and 0 <= metrics["linear_probe/disease_multilabel/auc"] <= 1


def _one_cell_grid(tmp_path, epochs: int):
    fixed = {**TINY_FIXED, "train": {**TINY_FIXED["train"], "epochs": epochs, "checkpoint_every_steps": 5}}
    grid = tmp_path / "one.yaml"
    grid.write_text(yaml.safe_dump({"name": "one", "fixed": {**fixed, "objective": {"name": "clip", "level": "disease"}}}))
    return grid


@pytest.mark.slow
def test_local_timeout_without_requeues_left_is_a_failure(tmp_path, monkeypatch, capsys):
    """LocalExecutor sends USR2 `signal_delay_s` before its time limit; with launcher.max_num_timeout=0 the
    cell checkpoints, submitit refuses to requeue, and the cell is failed with the reason (resumable later)."""
    monkeypatch.setenv("CONTRASTIVE_BENCH_CACHE", str(tmp_path / "cache"))
    grid = _one_cell_grid(tmp_path, epochs=400)
    code = run_main([f"grid={grid}", f"results_dir={tmp_path / 'r'}", "launcher.name=local", "launcher.timeout_min=1.0",
                     "launcher.signal_delay_s=30", "launcher.max_num_timeout=0", "launcher.poll_s=0.2"])
    assert code == 1
    (cell,) = [p for p in (tmp_path / "r" / "one").iterdir() if (p / "config.yaml").exists()]
    err = json.loads((cell / "error.json").read_text())
    assert err["type"] == "UncompletedJobError" and "timed-out too many times" in err["message"]
    assert "checkpoint saved at step" in (cell / "log.txt").read_text()
    assert (cell / "checkpoints" / "last.pt").exists()


@pytest.mark.slow
def test_local_timeout_checkpoints_and_restarts(tmp_path, monkeypatch):
    monkeypatch.setenv("CONTRASTIVE_BENCH_CACHE", str(tmp_path / "cache"))
    # long enough that a fast machine (the cell's 60 epochs took 19 s on CI) still meets at least one timeout,
    # with enough requeues left that a loaded 2-core machine still finishes
    grid = _one_cell_grid(tmp_path, epochs=160)
    assert run_main([f"grid={grid}", f"results_dir={tmp_path / 'r'}", "launcher.name=local", "launcher.timeout_min=0.75",
                     "launcher.signal_delay_s=20", "launcher.max_num_timeout=15", "launcher.poll_s=0.2"]) == 0
    (cell,) = [p for p in (tmp_path / "r" / "one").iterdir() if (p / "config.yaml").exists()]
    log = (cell / "log.txt").read_text()
    assert store.cell_state(cell) == store.DONE
    assert log.count("checkpoint saved at step") >= 1 and log.count("resumed from") >= 1
    assert log.count(" done in ") == 1
