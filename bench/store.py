"""The results store: one folder per cell, atomic writes, cell states.

``<results_dir>/<grid>/<cell id>/`` holds ``config.yaml`` (the resolved config; the cell id is its hash),
``log.txt``, ``history.csv``, ``checkpoints/last.pt``, ``metrics.json``, and ``done``, written last. A failed
cell has ``error.json`` (the traceback) and never ``done``. A cell being worked on has ``running.json``
(host, pid, start time, SLURM job id if any).

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
        try:
            info = read_json(running)
        except (OSError, ValueError):
            info = {}
        if info.get("host") != socket.gethostname() or _pid_alive(int(info.get("pid", -1))):
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
    write_json(Path(cell_dir) / "running.json", info)


def clear_running(cell_dir: Path) -> None:
    try:
        (Path(cell_dir) / "running.json").unlink()
    except FileNotFoundError:
        pass
