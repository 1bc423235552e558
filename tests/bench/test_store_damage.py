"""A finished two-cell grid, copied and damaged one way per case (malicious and damaged checkpoints, damaged
metrics / config / error files, stale and live claims): ``bench.status`` and ``bench.report`` never raise,
``bench.run`` exits with the status and message of the table, ``rerun_corrupt=true`` (or a plain rerun)
brings the cell back to done, the damaged cell is trained again only when its checkpoint was unusable, and
the other cell is never touched."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
import torch
import yaml

from bench import claim, store
from bench.report import main as report_main
from bench.run import main as run_main
from bench.status import main as status_main

FIXED = {
    "data": {"format": "fundus_synth", "size": 96, "test_size": 48, "val_fraction": 0.25, "resolution": 32},
    "image": {"name": "vit_tiny_custom", "width": 32, "depth": 1, "heads": 2},
    "text": {"name": "tiny_transformer", "width": 32, "layers": 1, "heads": 2, "context_length": 32},
    "model": {"embed_dim": 32},
    "train": {"epochs": 1, "batch_size": 24, "threads": 1, "log_every": 1},
    "tasks": [{"name": "linear_probe", "target": "disease_multilabel", "c_grid": [1.0]}],
}
GRID = {"name": "dmg", "fixed": FIXED, "seeds": [0], "axes": {"run": [
    {"label": "A", "objective": {"name": "clip", "level": "disease"}},
    {"label": "B", "objective": {"name": "mgll", "levels": ["disease", "description"]}},
]}}
STEPS = 72 // 24  # one epoch


class Payload:
    """Unpickling it runs ``touch <marker>`` (what an attacker's ``last.pt`` would do)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


def malicious_torch_file(path: Path, marker: Path) -> None:
    torch.save({"model": Payload(marker), "step": 1}, path)
    # the file is live: an unsafe load would run the command
    torch.load(path, weights_only=False)
    assert marker.exists()
    marker.unlink()


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    base = tmp_path_factory.mktemp("finished")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CONTRASTIVE_BENCH_CACHE", str(base / "cache"))
        _tables_only(mp)
        (base / "dmg.yaml").write_text(yaml.safe_dump(GRID))
        assert run_main([f"grid={base / 'dmg.yaml'}", f"results_dir={base / 'results'}"]) == 0
    return base


def _tables_only(mp: pytest.MonkeyPatch) -> None:
    """The report bench.run writes when every cell is done, without its figures (seconds each)."""
    import functools

    import bench.report

    mp.setattr(bench.report, "write_report", functools.partial(bench.report.write_report, formats=["md"]))


@pytest.fixture(autouse=True)
def _fast_report(monkeypatch):
    _tables_only(monkeypatch)


@dataclass
class Ctx:
    cell: Path
    marker: Path
    procs: list
    monkeypatch: pytest.MonkeyPatch


def _undone(c: Ctx) -> None:
    """The cell as if killed after its last checkpoint: pending, resumable at its final step."""
    (c.cell / "done").unlink()
    (c.cell / "metrics.json").unlink()


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _claim_file(c: Ctx, info: dict, age_s: float = 0.0) -> None:
    path = c.cell / "running.json"
    path.write_text(json.dumps(info))
    t = time.time() - age_s
    os.utime(path, (t, t))


def _live_pid(c: Ctx) -> int:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    c.procs.append(proc)
    return proc.pid


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _mismatched_checkpoint(c: Ctx) -> None:
    path = c.cell / "checkpoints" / "last.pt"
    state = torch.load(path, weights_only=False)
    key = next(iter(state["model"]))
    state["model"][key] = torch.zeros(3, 3, 3)
    torch.save(state, path)


@dataclass
class Case:
    name: str
    damage: Callable[[Ctx], None]
    state: str  # the damaged cell's state before any run
    run_code: int  # bench.run without repair options
    run_says: tuple[str, ...]  # in its output
    after_run: str  # the cell's state after that run
    repair: tuple[str, ...]  # options of the run that brings it back
    retrains: bool  # whether bringing it back trains it again (its checkpoint was unusable)
    report_code: int = 0  # bench.report allow_missing=true on the damaged folder
    release: Callable[[Ctx], None] | None = None  # before bringing it back (e.g. the other host died)


TRUNCATED_CKPT = ("last.pt", "cannot be read (truncated or damaged)", "rerun_corrupt=true")
CASES = [
    Case("metrics_missing", lambda c: (c.cell / "metrics.json").unlink(), store.CORRUPT, 1,
         ("CORRUPT", "metrics.json is missing although the cell is marked done", "rerun_corrupt=true"), store.CORRUPT,
         ("rerun_corrupt=true",), retrains=False),
    Case("metrics_truncated", lambda c: _truncate(c.cell / "metrics.json"), store.CORRUPT, 1,
         ("CORRUPT", "metrics.json cannot be read as a JSON object"), store.CORRUPT, ("rerun_corrupt=true",), retrains=False),
    Case("metrics_not_an_object", lambda c: (c.cell / "metrics.json").write_text("[1, 2]"), store.CORRUPT, 1,
         ("CORRUPT", "metrics.json cannot be read"), store.CORRUPT, ("rerun_corrupt=true",), retrains=False),
    Case("config_garbage", lambda c: (c.cell / "config.yaml").write_text("label: [unclosed\n  - {{\n"), store.CORRUPT, 1,
         ("CORRUPT", "config.yaml cannot be read as a YAML mapping"), store.CORRUPT, ("rerun_corrupt=true",),
         retrains=False, report_code=2),
    Case("config_a_list", lambda c: (c.cell / "config.yaml").write_text("- a\n- b\n"), store.CORRUPT, 1,
         ("CORRUPT", "config.yaml cannot be read"), store.CORRUPT, ("rerun_corrupt=true",), retrains=False, report_code=2),
    Case("error_truncated", lambda c: (_undone(c), (c.cell / "error.json").write_text('{"type": "ValueErr')), store.CORRUPT, 1,
         ("CORRUPT", "error.json cannot be read as a JSON object"), store.CORRUPT, ("rerun_corrupt=true",), retrains=False),
    Case("checkpoint_truncated", lambda c: (_undone(c), _truncate(c.cell / "checkpoints" / "last.pt")), store.PENDING, 1,
         ("CORRUPT", *TRUNCATED_CKPT), store.CORRUPT, ("rerun_corrupt=true",), retrains=True),
    Case("checkpoint_empty", lambda c: (_undone(c), (c.cell / "checkpoints" / "last.pt").write_bytes(b"")), store.PENDING, 1,
         ("CORRUPT", *TRUNCATED_CKPT), store.CORRUPT, ("rerun_corrupt=true",), retrains=True),
    Case("checkpoint_malicious",
         lambda c: (_undone(c), malicious_torch_file(c.cell / "checkpoints" / "last.pt", c.marker)), store.PENDING, 1,
         ("CORRUPT", "last.pt", "refused", "GLOBAL posix.system", "rerun_corrupt=true"), store.CORRUPT,
         ("rerun_corrupt=true",), retrains=True),
    Case("checkpoint_not_a_resume_checkpoint",
         lambda c: (_undone(c), torch.save({"weights": torch.ones(2)}, c.cell / "checkpoints" / "last.pt")), store.PENDING, 1,
         ("CORRUPT", "not a resume checkpoint of this code"), store.CORRUPT, ("rerun_corrupt=true",), retrains=True),
    Case("checkpoint_of_another_model", lambda c: (_undone(c), _mismatched_checkpoint(c)), store.PENDING, 1,
         ("CORRUPT", "does not match this cell's model"), store.CORRUPT, ("rerun_corrupt=true",), retrains=True),
    Case("claim_of_a_dead_process_here",
         lambda c: (_undone(c), _claim_file(c, {"host": socket.gethostname(), "pid": _dead_pid(), "started": time.time()})),
         store.PENDING, 0, ("taking over the stale claim", "is gone"), store.DONE, (), retrains=False),
    Case("claim_of_a_live_process_here",
         lambda c: (_undone(c), _claim_file(c, {"host": socket.gethostname(), "pid": _live_pid(c), "started": time.time()})),
         store.RUNNING, 1, ("RUNNING", f"held by host {socket.gethostname()}", "python -m bench.status"), store.RUNNING,
         (), retrains=False),
    Case("claim_from_another_host_with_a_heartbeat",
         lambda c: (_undone(c), _claim_file(c, {"host": "node-elsewhere", "pid": 7, "started": time.time()}, age_s=60)),
         store.RUNNING, 1, ("RUNNING", "held by host node-elsewhere, pid 7"), store.RUNNING, (), retrains=False,
         release=lambda c: _claim_file_age(c, claim.STALE_AFTER_S + 60)),
    Case("claim_from_another_host_without_a_heartbeat",
         lambda c: (_undone(c), _claim_file(c, {"host": "node-elsewhere", "pid": 7}, age_s=claim.STALE_AFTER_S + 60)),
         store.PENDING, 0, ("taking over the stale claim", "no heartbeat from host node-elsewhere"), store.DONE, (),
         retrains=False),
    Case("claim_unreadable_and_old",
         lambda c: (_undone(c), (c.cell / "running.json").write_text("{"), _claim_file_age(c, 3600)),
         store.PENDING, 0, ("taking over the stale claim", "unreadable claim"), store.DONE, (), retrains=False),
    Case("claim_of_this_slurm_job_before_its_requeue",
         lambda c: (_undone(c), _slurm_env(c, "4242", 1),
                    _claim_file(c, {"host": "node-elsewhere", "pid": 7, "slurm_job_id": "4242", "slurm_restart_count": 0})),
         store.PENDING, 0, ("taking over the stale claim", "earlier run of this SLURM job 4242"), store.DONE, (),
         retrains=False),
    Case("claim_of_another_task_of_this_slurm_job",
         lambda c: (_undone(c), _slurm_env(c, "4242", 0),
                    _claim_file(c, {"host": "node-elsewhere", "pid": 7, "slurm_job_id": "4242", "slurm_restart_count": 0})),
         store.RUNNING, 1, ("RUNNING", "held by host node-elsewhere"), store.RUNNING, (), retrains=False,
         release=lambda c: _claim_file_age(c, claim.STALE_AFTER_S + 60)),
    Case("job_and_history_garbage",
         lambda c: ((c.cell / "job.json").write_text("[not json"), (c.cell / "history.csv").write_text('a,"b\n\x00,1,2\n')),
         store.DONE, 0, ("0 to run",), store.DONE, (), retrains=False),
]


def _claim_file_age(c: Ctx, age_s: float) -> None:
    t = time.time() - age_s
    os.utime(c.cell / "running.json", (t, t))


def _slurm_env(c: Ctx, job: str, restarts: int) -> None:
    c.monkeypatch.setenv("SLURM_JOB_ID", job)
    c.monkeypatch.setenv("SLURM_RESTART_COUNT", str(restarts))


def _cells(root: Path) -> dict[str, Path]:
    out = {}
    for p in root.iterdir():
        if p.is_dir() and (p / "config.yaml").exists():
            cfg = yaml.safe_load((p / "config.yaml").read_text())
            out[cfg["label"]] = p
    return out


def _count(cell: Path, text: str) -> int:
    return (cell / "log.txt").read_text().count(text)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_damaged_cell(case: Case, finished, tmp_path, monkeypatch, capsys, caplog):
    monkeypatch.setenv("CONTRASTIVE_BENCH_CACHE", str(finished / "cache"))
    shutil.copytree(finished / "results", tmp_path / "results")
    root = tmp_path / "results" / "dmg"
    cells = _cells(root)
    a, b = cells["A"], cells["B"]
    b_done, b_metrics = (b / "done").stat().st_mtime, (b / "metrics.json").read_text()
    a_epochs = _count(a, "epoch 1/1 done")
    ctx = Ctx(a, tmp_path / "MARKER", [], monkeypatch)
    args = [f"grid={finished / 'dmg.yaml'}", f"results_dir={tmp_path / 'results'}"]
    try:
        case.damage(ctx)
        assert store.cell_state(a) == case.state

        # status and report: no traceback
        capsys.readouterr()
        assert status_main([str(root), "--no-update"]) == 0
        out = capsys.readouterr().out
        assert f"1 {case.state}" in out or (case.state == store.DONE and "2 done" in out), out
        assert report_main([str(root), "allow_missing=true", "formats=md"]) == case.report_code
        capsys.readouterr()

        # a plain run: the status of the table, the message, and the other cell untouched
        caplog.clear()
        code = run_main(args)
        out = capsys.readouterr()
        text = out.out + out.err + caplog.text
        assert code == case.run_code, text[-3000:]
        for needle in case.run_says:
            assert needle in text, (needle, text[-3000:])
        assert "Traceback" not in out.out + out.err
        assert store.cell_state(a) == case.after_run
        assert (b / "done").stat().st_mtime == b_done and (b / "metrics.json").read_text() == b_metrics
        assert _count(b, "starting") == 1

        # bringing it back
        for p in ctx.procs:
            p.kill()
            p.wait()
        monkeypatch.delenv("SLURM_JOB_ID", raising=False)
        monkeypatch.delenv("SLURM_RESTART_COUNT", raising=False)
        if case.release is not None:
            case.release(ctx)
        if store.cell_state(a) != store.DONE:
            code = run_main([*args, *case.repair])
            text = "".join(capsys.readouterr())
            assert code == 0, text[-3000:]
        assert store.cell_state(a) == store.DONE
        metrics = json.loads((a / "metrics.json").read_text())
        assert metrics["train/steps"] == STEPS and 0 <= metrics["linear_probe/disease_multilabel/auc"] <= 1
        # trained again only when the checkpoint was unusable (then from scratch, the bad file set aside)
        assert _count(a, "epoch 1/1 done") == a_epochs + (1 if case.retrains else 0)
        if case.retrains:
            assert (a / "checkpoints" / "last.pt.corrupt").exists()
            assert "the cell starts from scratch" in caplog.text or "starts again without it" in caplog.text
        assert (b / "done").stat().st_mtime == b_done and _count(b, "starting") == 1
        assert not (a / "running.json").exists() and not (b / "running.json").exists()
        assert not ctx.marker.exists()  # no code in any file ever ran
        assert report_main([str(root), "formats=md"]) == 0
    finally:
        for p in ctx.procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def test_a_refused_checkpoint_restarts_in_one_run_with_rerun_corrupt(finished, tmp_path, monkeypatch, capsys, caplog):
    """rerun_corrupt=true applies at load time too: a cell whose last.pt is refused starts from scratch in the
    same run (no first run needed to mark it corrupt)."""
    monkeypatch.setenv("CONTRASTIVE_BENCH_CACHE", str(finished / "cache"))
    shutil.copytree(finished / "results", tmp_path / "results")
    a = _cells(tmp_path / "results" / "dmg")["A"]
    _undone(Ctx(a, tmp_path / "M", [], monkeypatch))
    malicious_torch_file(a / "checkpoints" / "last.pt", tmp_path / "M")
    assert run_main([f"grid={finished / 'dmg.yaml'}", f"results_dir={tmp_path / 'results'}", "rerun_corrupt=true"]) == 0
    assert "refused" in caplog.text and "the cell starts from scratch" in caplog.text
    assert store.cell_state(a) == store.DONE and not (tmp_path / "M").exists()
    assert (a / "checkpoints" / "last.pt.corrupt").exists()


def test_a_cell_that_plans_no_steps_is_not_done(finished, tmp_path, monkeypatch):
    """train.epochs=-1 used to give a done cell with train/steps -4 and untrained metrics. The config refuses
    it (bench.schema: train.epochs >= 1); the training loop refuses it too, for configs built around the
    checks."""
    from bench import train
    from bench.cell import build_objective
    from bench.config import merge
    from bench.data import build_dataset
    from bench.errors import ConfigError
    from bench.models import build_model

    monkeypatch.setenv("CONTRASTIVE_BENCH_CACHE", str(finished / "cache"))
    with pytest.raises(ConfigError, match=r"train\.epochs=-1 must be >= 1"):
        merge(FIXED, {"train": {"epochs": -1}})
    cfg = merge(FIXED, {"objective": {"name": "clip", "level": "disease"}})
    cfg.train.epochs = -1  # past the schema's check
    objective = build_objective(cfg)
    model = build_model(cfg, objective)
    data = build_dataset(cfg.data).split("train")
    with pytest.raises(ValueError, match=r"train\.epochs=-1 plans -3 optimiser steps"):
        train.pretrain(model, objective, data, cfg.train, tmp_path / "cell", 0, torch.device("cpu"))
    assert not (tmp_path / "cell" / "checkpoints" / "last.pt").exists()
