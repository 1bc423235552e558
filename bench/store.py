"""The results store: one folder per cell, atomic writes, cell states, repairs.

``<results_dir>/<grid>/<cell id>/`` holds ``config.yaml`` (the resolved config; the cell id is its hash),
``log.txt``, ``history.csv``, ``checkpoints/last.pt``, ``metrics.json``, and ``done``, written last. A failed
cell has ``error.json`` (the traceback) and never ``done``. A cell being worked on has ``running.json``, the
claim of the one process that runs it (host, pid, start time, SLURM job; see :mod:`bench.claim`). A cell
handed to a scheduler has ``job.json`` (launcher, job id, submission time, log folder), so ``bench.status``
can ask the scheduler about it.

States (:func:`inspect`, :func:`cell_state`), in this order:

- ``done``: ``done`` exists, ``metrics.json`` is a readable JSON object and ``config.yaml`` a readable mapping;
- ``corrupt``: a file the cell needs cannot be read: ``done`` without a readable ``metrics.json``, a
  ``config.yaml`` that is not a YAML mapping, an unreadable ``error.json``, or a failure that named a damaged
  file (``error.json`` with ``"corrupt": [paths]``, e.g. a truncated ``checkpoints/last.pt`` or one the safe
  loader refused). ``rerun_corrupt=true`` repairs it (:func:`repair`): what is valid is kept, what is not is
  set aside (``<name>.corrupt``) and recomputed;
- ``running``: a live claim (same host and live process, or another host with a recent heartbeat);
- ``failed``: ``error.json``, no live claim;
- ``pending``: anything else, including a claim left by a killed process (the cell resumes when rerun).

Every file is written atomically (to a temporary name in the same folder, then ``os.replace``), so a
process killed at any moment leaves either the old file or the new one, never half of one. Files get the
mode ``0666`` less the umask (group and others can read them with the usual umask ``022``), like any file
the user creates.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from . import claim as claims
from .errors import ConfigError

log = logging.getLogger(__name__)

DONE, FAILED, RUNNING, PENDING, CORRUPT = "done", "failed", "running", "pending", "corrupt"
STATES = (DONE, FAILED, CORRUPT, RUNNING, PENDING)
#: the option that repairs corrupt cells (a run-config key)
REPAIR_OPTION = "rerun_corrupt=true"


class StoreError(ConfigError):
    """The results folder cannot be used: not a folder, not writable, full (exit status 2)."""


#: errors of the file system itself (not of a cell): they stop the grid, the cell stays resumable
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})


_umask_lock = threading.Lock()


def umask() -> int:
    """The process umask, read without changing it where ``/proc`` tells it."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _umask_lock:  # no /proc: set and restore (a safe value in between)
        old = os.umask(0o022)
        os.umask(old)
    return old


class _Recording:
    """A file object that remembers the ``OSError`` of a write: writers in C++ (``torch.save``) turn it into
    a ``RuntimeError`` that no longer says the disk is full."""

    def __init__(self, f: Any):
        self._f = f
        self.error: OSError | None = None

    def write(self, data: Any) -> Any:
        try:
            return self._f.write(data)
        except OSError as e:
            self.error = e
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)


def atomic_write(path: Path, write: Callable[[Any], None], mode: str = "w") -> None:
    """Call ``write(file object)`` on a temporary file next to ``path``, then rename it to ``path``. A failed
    write leaves the old file and raises an ``OSError`` naming ``path`` (disk full, quota, ...)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    recording = None
    try:
        try:
            os.fchmod(fd, 0o666 & ~umask())  # mkstemp makes 0600, whatever the umask
        except OSError:  # pragma: no cover - file systems without modes
            pass
        with os.fdopen(fd, mode) as f:
            recording = _Recording(f)
            write(recording)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if recording is not None and recording.error is not None and not isinstance(e, OSError):
            e = recording.error  # the write's own error, not what a C++ writer made of it
        if isinstance(e, OSError) and e.errno is not None and e.filename is None:  # name the file
            raise OSError(e.errno, e.strerror or str(e), str(path)) from e
        if e is not sys.exc_info()[1]:
            raise e
        raise


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text))


def write_json(path: Path, data: Any) -> None:
    atomic_write(path, lambda f: json.dump(data, f, indent=2, sort_keys=True, default=str))


def write_yaml(path: Path, data: Any) -> None:
    atomic_write(path, lambda f: yaml.safe_dump(data, f, sort_keys=False))


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def read_dict(path: Path) -> dict | None:
    """A JSON object file's content, or None (absent, unreadable, or not an object)."""
    try:
        data = read_json(path)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_config(cell_dir: Path) -> dict | None:
    """The cell's ``config.yaml`` as a mapping, or None (absent, unreadable, or not a mapping)."""
    try:
        data = yaml.safe_load((Path(cell_dir) / "config.yaml").read_text())
    except (OSError, ValueError, yaml.YAMLError):
        return None
    return data if isinstance(data, dict) else None


def grid_dir(results_dir: str | Path, grid: str) -> Path:
    return Path(results_dir) / grid


# ----------------------------------------------------------------------------------------------------------
# states
# ----------------------------------------------------------------------------------------------------------
@dataclass
class CellInfo:
    """A cell's state; ``problems`` (file: what is wrong) for a corrupt cell; ``claim`` the live claim's
    content (None when unreadable) for a running cell."""

    state: str
    problems: list[str] = field(default_factory=list)
    claim: dict | None = None
    error: dict | None = None


def _file_problem(path: Path, what: str) -> str | None:
    if not path.exists():
        return f"{path.name} is missing"
    return f"{path.name} cannot be read as {what}"


def inspect(cell_dir: Path, claims_too: bool = True) -> CellInfo:
    """The state of one cell (see the module docstring). ``claims_too=False`` ignores any claim (the state
    the holder of the claim sees). A folder that cannot be read at all (no permission) is corrupt, with the
    reason."""
    try:
        return _inspect(Path(cell_dir), claims_too)
    except OSError as e:
        return CellInfo(CORRUPT, [f"the cell's files cannot be read: {e}"])


def _inspect(cell_dir: Path, claims_too: bool) -> CellInfo:
    problems: list[str] = []
    has_config = (cell_dir / "config.yaml").exists()
    if has_config and read_config(cell_dir) is None:
        problems.append(_file_problem(cell_dir / "config.yaml", "a YAML mapping"))
    if (cell_dir / "done").exists():
        if read_dict(cell_dir / "metrics.json") is None:
            problems.append(_file_problem(cell_dir / "metrics.json", "a JSON object") + " although the cell is marked done")
        return CellInfo(CORRUPT, problems) if problems else CellInfo(DONE)
    if claims_too:
        info, mtime = claims.read(cell_dir)
        if mtime is not None and claims.judge(info, mtime)[0]:
            return CellInfo(RUNNING, problems, claim=info)
    error = None
    if (cell_dir / "error.json").exists():
        error = read_dict(cell_dir / "error.json")
        if error is None:
            problems.append(_file_problem(cell_dir / "error.json", "a JSON object"))
        else:
            if error.get("corrupt"):  # the message names the damaged files
                problems.append(str(error.get("message") or f"damaged: {error['corrupt']}"))
    if problems:
        return CellInfo(CORRUPT, problems, error=error)
    return CellInfo(FAILED, error=error) if error is not None else CellInfo(PENDING)


def cell_state(cell_dir: Path) -> str:
    return inspect(cell_dir).state


def runnable(state: str, rerun_failed: bool = False, rerun_corrupt: bool = False) -> bool:
    """Whether a run starts a cell in ``state``: pending; failed with ``rerun_failed``; corrupt with
    ``rerun_corrupt`` (never done or running)."""
    return state == PENDING or (state == FAILED and rerun_failed) or (state == CORRUPT and rerun_corrupt)


def error_line(cell_dir: Path) -> str:
    """``Type: message`` of a failed cell's ``error.json`` (never raises)."""
    err = read_dict(Path(cell_dir) / "error.json")
    if err is None:
        return "error.json cannot be read"
    return f"{err.get('type', '?')}: {err.get('message', '')}"


def mark_running(cell_dir: Path) -> None:
    """Write this process's claim without the exclusive protocol (tests and tools; runs use
    :func:`bench.claim.acquire`)."""
    write_json(Path(cell_dir) / claims.NAME, claims.my_info())


def read_running(cell_dir: Path) -> dict | None:
    """The claim's content, or None (absent or unreadable)."""
    return claims.read(Path(cell_dir))[0]


def clear_running(cell_dir: Path) -> None:
    try:
        (Path(cell_dir) / claims.NAME).unlink()
    except FileNotFoundError:
        pass


def write_job(cell_dir: Path, info: dict) -> None:
    """Record the scheduler job that runs this cell (``job.json``)."""
    write_json(Path(cell_dir) / "job.json", {**info, "submitted": time.time()})


def read_job(cell_dir: Path) -> dict | None:
    return read_dict(Path(cell_dir) / "job.json")


def mark_failed(cell_dir: Path, type_: str, message: str, traceback: str = "") -> None:
    """Record a failure found from outside the cell (a cancelled or crashed job): ``error.json``, and the
    claim removed. Never touches a done cell."""
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


def set_aside(path: Path) -> Path | None:
    """``path`` -> ``<path>.corrupt`` (replacing an older one); the new path, or None when absent."""
    path = Path(path)
    if not path.exists():
        return None
    dest = path.with_name(path.name + ".corrupt")
    os.replace(path, dest)
    return dest


def repair(cell_dir: Path, config: dict | None) -> list[str]:
    """Make a corrupt cell runnable again, keeping what is valid; returns what was done (one line each).

    - ``config.yaml`` unreadable: rewritten from ``config`` (the cell's resolved config, same id);
    - ``done`` without a readable ``metrics.json``: ``done`` removed and the metrics set aside, so the cell
      runs again: it resumes from its last checkpoint (at the end of training: it is only evaluated again);
    - ``error.json`` unreadable, or naming damaged files: those files and the error set aside (the cell then
      resumes from its checkpoint, or starts from scratch when the checkpoint was the damaged file)."""
    cell_dir = Path(cell_dir)
    done: list[str] = []
    if (cell_dir / "config.yaml").exists() and read_config(cell_dir) is None:
        if config is None:
            raise ValueError(f"{cell_dir}: config.yaml is damaged and no config was given to rewrite it")
        write_yaml(cell_dir / "config.yaml", config)
        done.append("rewrote config.yaml from the grid's config")
    if (cell_dir / "done").exists() and read_dict(cell_dir / "metrics.json") is None:
        set_aside(cell_dir / "metrics.json")
        (cell_dir / "done").unlink()
        done.append("metrics.json unreadable: removed the done marker; the cell is evaluated again from its checkpoint")
    err_path = cell_dir / "error.json"
    if err_path.exists() and not (cell_dir / "done").exists():
        err = read_dict(err_path)
        if err is None:
            set_aside(err_path)
            done.append("set aside the unreadable error.json")
        elif err.get("corrupt"):
            for rel in err["corrupt"]:
                target = (cell_dir / str(rel)).resolve()
                if cell_dir.resolve() not in target.parents:
                    continue  # only files inside the cell
                moved = set_aside(target)
                if moved is not None:
                    done.append(f"set aside {rel} as {moved.name}; the cell starts again without it")
            set_aside_error(cell_dir)
    return done


# ----------------------------------------------------------------------------------------------------------
# the results folder
# ----------------------------------------------------------------------------------------------------------
#: bytes written (and removed) to check that the results folder takes data
PROBE_BYTES = 1 << 16
#: below this much free space, a warning
LOW_SPACE_BYTES = 1 << 30


def check_results_dir(root: Path, key: str = "results_dir") -> None:
    """Create ``root``, write, sync and remove a probe file in it, and remove the folders it created; raise
    :class:`StoreError` naming the folder and the reason when that fails (a file in the way, no permission,
    read-only, disk full)."""
    root = Path(root)
    for parent in [root, *root.parents]:
        if parent.exists() and not parent.is_dir():
            raise StoreError(f"{key}: {parent} is a file, not a folder; give {key}=<a folder>")
    created = [p for p in [root, *root.parents] if not p.exists()]
    try:
        root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".write-check.", dir=root)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(b"\0" * PROBE_BYTES)
                f.flush()
                os.fsync(f.fileno())
        finally:
            os.unlink(tmp)
    except OSError as e:
        reason = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded",
                  errno.EROFS: "the file system is read-only", errno.EACCES: "no permission to write there",
                  errno.EPERM: "no permission to write there", errno.EFBIG: "files cannot grow (file size limit)",
                  }.get(e.errno or -1, e.strerror or str(e))
        raise StoreError(f"{key}: cannot write to {root}: {reason} ({e})") from e
    finally:
        for p in created:  # a check leaves nothing behind (the run creates the folders it uses)
            try:
                p.rmdir()
            except OSError:
                break
    try:
        free = shutil.disk_usage(next(p for p in [root, *root.parents] if p.exists())).free
    except (OSError, StopIteration):  # pragma: no cover
        return
    if free < LOW_SPACE_BYTES:
        log.warning("%s: only %.0f MiB free in %s; checkpoints and features may not fit", key, free / 2**20, root)


def record(path: Path, data: Any) -> None:
    """``write_json`` for the verdict files of a cell: a failure to write is a :class:`StoreError` naming
    the file (a full disk or a folder that became unwritable stops the grid, it is not a cell's failure)."""
    try:
        write_json(path, data)
    except OSError as e:
        raise StoreError(f"cannot write {path}: {e.strerror or e}") from e
