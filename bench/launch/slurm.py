"""``launcher.name=slurm``: one SLURM job array per grid through submitit (``cluster="slurm"`` passed
explicitly: submitit's auto-detection picks SLURM whenever ``srun`` is on PATH), resources from a profile
overridden by ``launcher.*`` keys; waiting for the array and settling cells whose job ended without a
verdict."""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any

from .. import store
from ..config import to_container
from ..grid import Cell
from .errors import LauncherError, LaunchResult
from .job import CellJob, prepare, settle_unfinished
from .options import SLURM_OPTIONS, _check, load_profile
from .registry import register_launcher
from .slurm_state import is_active, sacct_states, squeue_states

log = logging.getLogger("bench.launch")


def _resolve_slurm(given: dict) -> dict:
    given = dict(given)
    for k in ("setup",):
        if isinstance(given.get(k), str):
            given[k] = [given[k]]
    opts = _check("slurm", given, SLURM_OPTIONS)
    merged = {k: o.default for k, o in SLURM_OPTIONS.items()}
    if opts["profile"] is not None:
        path, prof = load_profile(opts["profile"])
        merged.update({k: v for k, v in prof.items()})
        merged["profile"] = opts["profile"]
    merged.update({k: opts[k] for k in given})  # launcher.* keys (checked) win over the profile
    return merged


def _executor_parameters(opts: dict, grid: str) -> dict:
    params: dict[str, Any] = {
        "timeout_min": int(opts["time"]),
        "nodes": 1,
        "tasks_per_node": int(opts["tasks_per_node"]),
        "cpus_per_task": int(opts["cpus"]),
        "name": opts["job_name"] or f"bench-{grid}",
        "slurm_signal_delay_s": int(opts["signal_delay_s"]),
        "slurm_array_parallelism": int(opts["array_parallelism"]),
    }
    if opts["gpus"]:
        params["gpus_per_node"] = int(opts["gpus"])
    mem = opts["mem"]
    if isinstance(mem, (int, float)):
        params["mem_gb"] = float(mem)
    elif isinstance(mem, str):
        params["slurm_mem"] = mem
    for key in ("partition", "account", "qos", "constraint"):
        if opts[key]:
            params[f"slurm_{key}"] = opts[key]
    if opts["setup"]:
        params["slurm_setup"] = list(opts["setup"])
    if opts["additional"]:
        params["slurm_additional_parameters"] = dict(opts["additional"])
    return params


@register_launcher("slurm", SLURM_OPTIONS, "one SLURM job array per grid (submitit), requeue on preemption", _resolve_slurm)
def run_slurm(cells: list[Cell], root: Path, opts: dict) -> LaunchResult:
    import submitit
    from submitit.core.utils import FailedJobError

    if shutil.which("sbatch") is None:
        raise LauncherError("launcher.name=slurm: sbatch is not on PATH (no SLURM client here); "
                            "bring up the local cluster with `bash slurm/local/up.sh`, or use launcher.name=local")
    grid = str(cells[0].config.grid or root.name)
    folder = root / ".submitit" / "%j"
    executor = submitit.AutoExecutor(folder=folder, cluster="slurm", slurm_max_num_timeout=int(opts["max_num_timeout"]))
    try:
        executor.update_parameters(**_executor_parameters(opts, grid))
    except ValueError as e:
        raise LauncherError(f"launcher.name=slurm: {e}") from e
    prepared = [(c, prepare(c, root)) for c in cells]
    skipped = {c.id: store.cell_state(root / c.id) for c, d in prepared if d is None}
    cells = [c for c, d in prepared if d is not None]
    dirs = [d for _, d in prepared if d is not None]
    if not cells:
        return LaunchResult(skipped, message="nothing to submit: every cell is done or held by another process")
    try:
        jobs = executor.map_array(CellJob(), [to_container(c.config) for c in cells], [str(d) for d in dirs])
    except FailedJobError as e:  # sbatch refused (bad partition, GRES, size...)
        raise LauncherError(f"launcher.name=slurm: sbatch refused the job array: {e}") from e
    for cell, d, job in zip(cells, dirs, jobs):
        store.write_job(d, {"launcher": "slurm", "job_id": str(job.job_id), "log_err": str(job.paths.stderr),
                            "log_out": str(job.paths.stdout)})
    array = str(jobs[0].job_id).split("_")[0]
    where = f"partition {opts['partition']}" if opts["partition"] else "default partition"
    log.info("submitted %d cell(s) as SLURM job %s (%s, %s min, %d cpu(s), %d gpu(s), at most %d at once); logs in %s",
             len(jobs), array, where, opts["time"], opts["cpus"], opts["gpus"], opts["array_parallelism"], root / ".submitit")
    ids = [str(j.job_id) for j in jobs]
    if not opts["wait"]:
        msg = (f"submitted {len(jobs)} cell(s) as SLURM job {array} ({where}); not waiting (launcher.wait=false)\n"
               f"  progress: python -m bench.status {root}\n"
               f"  queue:    squeue -j {array}\n"
               f"  cancel:   scancel {array}\n"
               f"  results:  python -m bench.report {root}   (when every cell is done)")
        return LaunchResult({}, waited=False, job_ids=ids, message=msg)
    return LaunchResult({**skipped, **wait_slurm(dict(zip(ids, dirs)), poll_s=float(opts["poll_s"]))}, job_ids=ids)


def wait_slurm(jobs: dict[str, Path], poll_s: float = 10.0) -> dict[str, str]:
    """Wait until every job (id -> cell folder) has ended; settle the cells whose job ended without a
    verdict. Returns cell id -> state."""
    pending = dict(jobs)
    states: dict[str, str] = {}
    unknown: dict[str, int] = {}
    last_report = 0.0
    try:
        while pending:
            sq = squeue_states()
            if sq is None:
                log.warning("squeue failed; retrying in %.0f s", poll_s)
                time.sleep(poll_s)
                continue
            ended = [j for j in pending if j not in sq]
            acct = sacct_states(ended) if ended else {}
            for job_id in ended:
                st = acct.get(job_id)
                if st is not None and is_active(st):
                    continue  # accounting lags behind squeue
                if st is None:  # neither squeue nor sacct knows it: make sure over a few polls
                    unknown[job_id] = unknown.get(job_id, 0) + 1
                    if unknown[job_id] < 3:
                        continue
                cell_dir = pending.pop(job_id)
                settle_slurm_job(cell_dir, job_id, acct.get(job_id))
                states[cell_dir.name] = store.cell_state(cell_dir)
                log.info("cell %s: %s (SLURM job %s: %s)", cell_dir.name, states[cell_dir.name], job_id,
                         acct.get(job_id, "gone"))
            if pending and time.monotonic() - last_report > 60:
                last_report = time.monotonic()
                counts: dict[str, int] = {}
                for j in pending:
                    counts[sq.get(j, "ENDING")] = counts.get(sq.get(j, "ENDING"), 0) + 1
                log.info("waiting for %d job(s): %s", len(pending), ", ".join(f"{v} {k}" for k, v in sorted(counts.items())))
            if pending:
                time.sleep(poll_s)
    except KeyboardInterrupt:
        log.warning("stopped waiting; the %d job(s) keep running (python -m bench.status <grid dir>; scancel <job id>)",
                    len(pending))
        raise
    return states


def settle_slurm_job(cell_dir: Path, job_id: str, state: str | None) -> None:
    """The SLURM job of a cell has left the queue with ``state`` (sacct; None when unknown): if the cell
    recorded no verdict, write ``error.json`` saying how the job ended."""
    cell_dir = Path(cell_dir)
    if store.cell_state(cell_dir) in (store.DONE, store.FAILED, store.CORRUPT):
        return
    state = state or "UNKNOWN (not in squeue, not in sacct)"
    job = store.read_job(cell_dir) or {}
    hint = "; rerun the grid with rerun_failed=true to resume it from its last checkpoint"
    if state.startswith("CANCELLED"):
        settle_unfinished(cell_dir, "Cancelled", f"SLURM job {job_id} was cancelled ({state}) before the cell "
                           f"finished{hint}", job.get("log_err"), job_id=job_id)
    elif state.startswith("TIMEOUT"):
        settle_unfinished(cell_dir, "Timeout", f"SLURM job {job_id} hit its time limit and was not requeued "
                           f"(launcher.time, launcher.max_num_timeout){hint}", job.get("log_err"), job_id=job_id)
    else:
        settle_unfinished(cell_dir, "JobFailed", f"SLURM job {job_id} ended {state} without finishing the cell{hint}",
                           job.get("log_err"), job_id=job_id)
