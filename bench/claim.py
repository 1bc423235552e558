"""Claims: the one process that runs a cell, so that two runs on one results folder train each cell once.

A claim is the file ``<cell>/running.json``::

    {"host": "node12", "pid": 4711, "pid_start": 123456, "started": 1718000000.0, "token": "9f...",
     "slurm_job_id": "812", "slurm_array": "800_3", "slurm_restart_count": 0}

Taking it (:func:`acquire`) creates the file atomically and exclusively: the content is written to a temporary
name, then hard-linked to ``running.json``. ``link(2)`` fails when the name exists, atomically on local file
systems and on NFS (the classic NFS-safe lock-file recipe: a link whose reply was lost is recognised by the
link count 2 of the temporary file). On a file system without hard links the fallback is
``open(O_CREAT | O_EXCL)`` (atomic on NFSv3 and later). There are no ``flock``/``fcntl`` locks: they are
emulated or missing on some network file systems and vanish silently with a client, while a claim file with a
heartbeat works on all of them and tells who holds the cell.

Heartbeat: while a claim is held, a daemon thread touches the file (``os.utime``) every
:data:`HEARTBEAT_S` = 30 s and checks that the claim is still this process's. It takes a few tens of
microseconds every 30 s and never holds up the training loop.

Whether a claim is live (:func:`judge`):

- written by an earlier incarnation of *this* SLURM job (same ``SLURM_JOB_ID``, lower
  ``SLURM_RESTART_COUNT``: the job was requeued after a preemption or a time limit): not live, the requeued
  job takes the cell back;
- same host: live while its process exists (the pid, and where ``/proc`` says so, the same process start
  time: a reused pid does not count); the claim of a killed process is stale at once;
- another host: live while its heartbeat (the file's modification time) is younger than
  :data:`STALE_AFTER_S` = 600 s. That is far above the NFS attribute cache (``acregmax``, 60 s by default)
  and ordinary clock skew; a claim copied with its folder by ``cp`` without ``-p`` looks fresh for those
  10 minutes;
- unreadable (damaged or copied half): live for :data:`UNREADABLE_GRACE_S` after its last change, then
  stale.

A process whose claim was taken over while it ran (its heartbeat lapsed: suspended with Ctrl-Z, a frozen
node coming back) notices it (:meth:`Claim.held`) and does not record its results. A stale claim is taken
over with a warning naming its owner: under a short-lived reclaim lock
(``running.json.reclaim``, created the same exclusive way, itself stale after :data:`RECLAIM_LOCK_STALE_S`),
the claim is read again and removed only if it is still the one judged stale (same token); then the claim is
taken the normal way, so two processes reclaiming at once still end with one owner.

Under ``torch.distributed`` only rank 0 claims (``bench.cell.execute``) and tells the other ranks whether
the cell runs; they never touch the file.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

NAME = "running.json"
#: seconds between two touches of a held claim
HEARTBEAT_S = 30.0
#: a claim from another host whose heartbeat is older than this is stale (seconds)
STALE_AFTER_S = 600.0
#: an unreadable claim is stale this long after its last change (seconds)
UNREADABLE_GRACE_S = 60.0
#: a reclaim lock older than this was left by a process that died while reclaiming (seconds)
RECLAIM_LOCK_STALE_S = 60.0

# link(2) is not supported here: fall back to O_EXCL
_NO_LINK = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EMLINK, errno.EXDEV}


def _proc_start(pid: int) -> int | None:
    """The start time of process ``pid`` (clock ticks since boot, from ``/proc``), or None when unknown."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
        return int(text.rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (a killed process its parent has not reaped)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    except OverflowError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True  # no /proc: the pid exists


def my_info() -> dict[str, Any]:
    """The claim content for this process (a new token each call)."""
    info: dict[str, Any] = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time(),
                            "token": uuid.uuid4().hex}
    start = _proc_start(os.getpid())
    if start is not None:
        info["pid_start"] = start
    job = os.environ.get("SLURM_JOB_ID")
    if job:
        info["slurm_job_id"] = job
        if os.environ.get("SLURM_ARRAY_TASK_ID"):
            info["slurm_array"] = f"{os.environ.get('SLURM_ARRAY_JOB_ID')}_{os.environ['SLURM_ARRAY_TASK_ID']}"
        info["slurm_restart_count"] = _int(os.environ.get("SLURM_RESTART_COUNT"), 0)
    return info


def _int(v: Any, default: int) -> int:
    try:
        return int(v)
    except (TypeError, ValueError):
        return default


def read(cell_dir: Path) -> tuple[dict | None, float | None]:
    """(the claim's content or None when unreadable, its modification time or None when there is no claim)."""
    path = Path(cell_dir) / NAME
    try:
        mtime = path.stat().st_mtime
    except OSError:
        return None, None
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        return None, mtime
    return (info if isinstance(info, dict) else None), mtime


def judge(info: dict | None, mtime: float, now: float | None = None) -> tuple[bool, str]:
    """Whether a claim (content ``info``, None if unreadable; file time ``mtime``) is live, and why."""
    now = time.time() if now is None else now
    age = now - mtime
    if info is None:
        if age < UNREADABLE_GRACE_S:
            return True, f"unreadable claim changed {age:.0f}s ago"
        return False, f"unreadable claim, unchanged for {age:.0f}s"
    job = os.environ.get("SLURM_JOB_ID")
    if job and str(info.get("slurm_job_id")) == job:
        mine = _int(os.environ.get("SLURM_RESTART_COUNT"), 0)
        if _int(info.get("slurm_restart_count"), 0) < mine:
            return False, f"left by an earlier run of this SLURM job {job} (now restart {mine})"
    host, pid = info.get("host"), _int(info.get("pid"), -1)
    if host == socket.gethostname():
        if not _pid_alive(pid):
            return False, f"process {pid} is gone"
        recorded, current = info.get("pid_start"), _proc_start(pid)
        if recorded is not None and current is not None and _int(recorded, -1) != current:
            return False, f"process {pid} is gone (the pid now belongs to another process)"
        return True, f"process {pid} is running"
    if age > STALE_AFTER_S:
        return False, f"no heartbeat from host {host} for {age:.0f}s (> {STALE_AFTER_S:.0f}s)"
    return True, f"heartbeat from host {host} {age:.0f}s ago"


def is_live(cell_dir: Path) -> bool:
    """Whether the cell has a live claim."""
    info, mtime = read(cell_dir)
    return mtime is not None and judge(info, mtime)[0]


def describe(info: dict | None) -> str:
    """``host node12, pid 4711, since 2024-06-10 12:00:00 (SLURM job 800_3)`` for messages."""
    if not info:
        return "an unreadable claim"
    text = f"host {info.get('host', '?')}, pid {info.get('pid', '?')}"
    if isinstance(info.get("started"), (int, float)):
        text += ", since " + time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info["started"]))
    job = info.get("slurm_array") or info.get("slurm_job_id")
    return text + (f" (SLURM job {job})" if job else "")


def _write_new(path: Path, data: bytes) -> bool:
    """Create ``path`` with ``data`` unless it exists (see the module docstring); True if created."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # mode: 0666 less the umask
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
            return True
        except OSError as e:
            try:
                if os.stat(tmp).st_nlink == 2:  # NFS: the link was made, its reply was lost
                    return True
            except OSError:
                pass
            if isinstance(e, FileExistsError):
                return False
            if e.errno not in _NO_LINK:
                raise
        try:  # no hard links on this file system
            fd2 = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            return False
        with os.fdopen(fd2, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        return True
    finally:
        try:
            os.unlink(tmp)
        except OSError:
            pass


class Claim:
    """A held claim: its heartbeat thread runs until :meth:`release`."""

    def __init__(self, cell_dir: Path, info: dict, heartbeat_s: float = HEARTBEAT_S):
        self.path = Path(cell_dir) / NAME
        self.info = info
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, args=(heartbeat_s,), name=f"claim-heartbeat-{Path(cell_dir).name}",
                                        daemon=True)
        self._thread.start()

    def held(self) -> bool:
        """Whether the claim file is still this one (not taken over after a lapsed heartbeat)."""
        info, _ = read(self.path.parent)
        held = info is not None and info.get("token") == self.info["token"]
        if not held and not self.lost:
            self.lost = True
            now, _ = read(self.path.parent)
            log.error("cell %s: the claim of this process was taken over (now: %s)", self.path.parent.name, describe(now))
        return held

    def _beat(self, every: float) -> None:
        while not self._stop.wait(every):
            try:
                if not self.held():
                    return
                os.utime(self.path)
            except OSError as e:  # a transient file-system error: try again at the next beat
                log.warning("cell %s: claim heartbeat failed: %s", self.path.parent.name, e)

    def release(self) -> None:
        """Stop the heartbeat and remove the claim file if it is still this one."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        info, _ = read(self.path.parent)
        if info is not None and info.get("token") == self.info["token"]:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass

    def __enter__(self) -> "Claim":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _remove_stale(path: Path, judged: dict | None, mtime: float) -> bool:
    """Remove the claim judged stale (content ``judged``, file time ``mtime``) under the reclaim lock, if it is
    still exactly that claim (a stalled owner whose heartbeat came back changes the time); True if removed."""
    lock = path.with_name(path.name + ".reclaim")
    if not _write_new(lock, json.dumps(my_info()).encode()):
        try:
            if time.time() - lock.stat().st_mtime > RECLAIM_LOCK_STALE_S:
                lock.unlink()  # its owner died while reclaiming
        except OSError:
            pass
        return False
    try:
        info, now_mtime = read(path.parent)
        if now_mtime != mtime or info != judged:
            return False
        path.unlink()
        return True
    finally:
        try:
            lock.unlink()
        except OSError:
            pass


def acquire(cell_dir: Path, heartbeat_s: float = HEARTBEAT_S) -> Claim | None:
    """Claim the cell for this process; None when another live process holds it. A stale claim is taken over
    with a warning. The folder must exist."""
    cell_dir = Path(cell_dir)
    path = cell_dir / NAME
    for _ in range(5):
        info = my_info()
        if _write_new(path, json.dumps(info, indent=2).encode()):
            return Claim(cell_dir, info, heartbeat_s)
        held, mtime = read(cell_dir)
        if mtime is None:
            continue  # released meanwhile: try again
        live, why = judge(held, mtime)
        if live:
            return None
        if _remove_stale(path, held, mtime):
            log.warning("cell %s: taking over the stale claim of %s: %s", cell_dir.name, describe(held), why)
        else:
            time.sleep(0.05)  # someone else is reclaiming it, or it changed: look again
    return None
