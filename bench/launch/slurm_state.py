"""SLURM job states: submitit's accounting watcher (``sacct``, through
``submitit.slurm.slurm.SlurmInfoWatcher``) for jobs that left the queue, and ``squeue`` for queued and
running ones -- the fallback clusters without accounting need."""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess

#: sacct states after which a job will not run again
TERMINAL = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE",
            "PREEMPTED", "REVOKED", "SPECIAL_EXIT")


def _run(cmd: list[str]) -> str | None:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout if out.returncode == 0 else None


def squeue_states() -> dict[str, str] | None:
    """Job id (``123`` or ``123_4``, one per array element) -> state, for the queued/running jobs of this
    user; None when squeue is unavailable or fails."""
    if shutil.which("squeue") is None:
        return None
    try:
        user = getpass.getuser()
    except Exception:  # pragma: no cover
        user = os.environ.get("USER", "")
    out = _run(["squeue", "-h", "-r", "-u", user, "-o", "%i|%T"])
    if out is None:
        return None
    states = {}
    for line in (out or "").splitlines():
        if "|" in line:
            jid, st = line.strip().split("|", 1)
            states[jid] = st
    return states


def sacct_states(job_ids: list[str]) -> dict[str, str]:
    """Job id -> sacct state (``COMPLETED``, ``CANCELLED by 0``, ...) for ``job_ids``, read by submitit's
    accounting watcher (one ``sacct`` call; array ranges expanded by ``submitit``'s ``read_job_id``); ids sacct
    does not know (or no accounting) are absent."""
    if not job_ids or shutil.which("sacct") is None:
        return {}
    from submitit.slurm.slurm import SlurmInfoWatcher

    watcher = SlurmInfoWatcher(delay_s=0)
    for j in job_ids:
        watcher.register_job(str(j))
    watcher.update()
    states = {j: watcher.get_info(str(j), mode="cache").get("State") for j in job_ids}
    return {j: st for j, st in states.items() if st}


def slurm_states(job_ids: list[str]) -> dict[str, str]:
    """Job id -> state: squeue's for queued/running jobs, else sacct's; ``GONE`` when squeue works and
    neither knows it; ``UNKNOWN`` when squeue does not answer and sacct does not know it."""
    sq = squeue_states()
    out = {j: sq[j] for j in job_ids if sq and j in sq}
    rest = [j for j in job_ids if j not in out]
    acct = sacct_states(rest)
    for j in rest:
        out[j] = acct.get(j, "GONE" if sq is not None else "UNKNOWN")
    return out


def is_active(state: str) -> bool:
    """Whether a state from :func:`slurm_states` means the job may still run."""
    return state not in ("GONE", "UNKNOWN") and not state.startswith(TERMINAL)
