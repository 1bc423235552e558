"""The results store: one folder per cell, atomic writes, cell states.

``<results_dir>/<grid>/<cell id>/`` holds ``config.yaml`` (the resolved config; the cell id is its hash),
``log.txt``, ``history.csv``, ``checkpoints/last.pt``, ``metrics.json``, and ``done``, written last. A failed
cell has ``error.json`` (the traceback) and never ``done``. A cell being worked on has ``running.json``
(host, pid, start time, SLURM job id if any). A cell handed to a scheduler has ``job.json`` (launcher, job
id, submission time, log folder), so ``bench.status`` can ask the scheduler about it.

States (:func:`cell_state`): ``done`` (``done`` exists), ``running`` (a running marker whose process is alive:
same host and live pid, or another host), ``failed`` (``error.json``, no live marker), ``pending``
(anything else, including a marker left by a killed process on this host: the cell resumes when rerun).

Every file is written atomically (to a temporary name in the same folder, then ``os.replace``), so a
process killed at any moment leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import yaml

DONE, FAILED, RUNNING, PENDING = "done", "failed", "running", "pending"


def atomic_write(path: Path, write: Callable[[Any], None], mode: str = "w") -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text))


def write_json(path: Path, data: Any) -> None:
    atomic_write(path, lambda f: json.dump(data, f, indent=2, sort_keys=True, default=str))


def write_yaml(path: Path, data: Any) -> None:
    atomic_write(path, lambda f: yaml.safe_dump(data, f, sort_keys=False))


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def grid_dir(results_dir: str | Path, grid: str) -> Path:
    return Path(results_dir) / grid


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cell_state(cell_dir: Path) -> str:
    cell_dir = Path(cell_dir)
    if (cell_dir / "done").exists():
        return DONE
    running = cell_dir / "running.json"
    if running.exists():
        info = read_running(cell_dir) or {}
        if running_is_live(info):
            return RUNNING
    if (cell_dir / "error.json").exists():
        return FAILED
    return PENDING


def mark_running(cell_dir: Path) -> None:
    info = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time()}
    job = os.environ.get("SLURM_JOB_ID")
    if job:
        info["slurm_job_id"] = job
        if os.environ.get("SLURM_ARRAY_TASK_ID"):
            info["slurm_array"] = f"{os.environ.get('SLURM_ARRAY_JOB_ID')}_{os.environ['SLURM_ARRAY_TASK_ID']}"
        info["slurm_restart_count"] = int(os.environ.get("SLURM_RESTART_COUNT", 0) or 0)
    write_json(Path(cell_dir) / "running.json", info)


def read_running(cell_dir: Path) -> dict | None:
    """The running marker's content, or None (absent or unreadable)."""
    try:
        return read_json(Path(cell_dir) / "running.json")
    except (OSError, ValueError):
        return None


def running_is_live(info: dict) -> bool:
    """Whether a running marker names a live process (a marker from another host counts as live)."""
    return info.get("host") != socket.gethostname() or _pid_alive(int(info.get("pid", -1)))


def write_job(cell_dir: Path, info: dict) -> None:
    """Record the scheduler job that runs this cell (``job.json``)."""
    write_json(Path(cell_dir) / "job.json", {**info, "submitted": time.time()})


def read_job(cell_dir: Path) -> dict | None:
    try:
        return read_json(Path(cell_dir) / "job.json")
    except (OSError, ValueError):
        return None


def mark_failed(cell_dir: Path, type_: str, message: str, traceback: str = "") -> None:
    """Record a failure found from outside the cell (a cancelled or crashed job): ``error.json``, and the
    running marker removed. Never touches a done cell."""
    cell_dir = Path(cell_dir)
    if (cell_dir / "done").exists():
        return
    write_json(cell_dir / "error.json", {"type": type_, "message": message, "traceback": traceback, "time": time.time()})
    clear_running(cell_dir)


def set_aside_error(cell_dir: Path) -> None:
    """Before rerunning a failed cell: ``error.json`` -> ``error.previous.json`` (so the queued cell does not
    read as failed)."""
    err = Path(cell_dir) / "error.json"
    if err.exists():
        os.replace(err, err.with_name("error.previous.json"))


def clear_running(cell_dir: Path) -> None:
    try:
        (Path(cell_dir) / "running.json").unlink()
    except FileNotFoundError:
        pass
