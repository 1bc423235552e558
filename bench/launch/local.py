"""``launcher.name=local``: each cell in its own subprocess through submitit's ``LocalExecutor``,
``launcher.parallel`` at a time (submitit's local executor has no array parallelism: this module throttles),
concurrent cells on disjoint GPUs; logs in ``<grid dir>/.submitit/``."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from .. import store
from ..config import to_container
from ..grid import Cell
from ..interrupts import interrupt_on_terminate, runner_in_environment
from .errors import LauncherError, LaunchResult
from .job import CellJob, prepare, settle_unfinished
from .options import LOCAL_OPTIONS, _check
from .registry import register_launcher

log = logging.getLogger("bench.launch")


def _resolve_local(given: dict) -> dict:
    opts = _check("local", given, LOCAL_OPTIONS)
    if opts["gpus"]:
        import torch

        need, have = opts["gpus"] * opts["parallel"], torch.cuda.device_count()
        if need > have:
            raise LauncherError(f"launcher.gpus={opts['gpus']} x launcher.parallel={opts['parallel']} needs {need} "
                                f"GPU(s); {have} visible")
    return opts


def _job_result(job) -> tuple[str | None, BaseException | None]:
    try:
        return job.result(), None
    except Exception as e:  # FailedJobError (exception outside execute), UncompletedJobError (killed)
        return None, e


@register_launcher("local", LOCAL_OPTIONS, "each cell in a subprocess (submitit LocalExecutor), launcher.parallel at once",
                   _resolve_local)
def run_local(cells: list[Cell], root: Path, opts: dict) -> LaunchResult:
    """Run the cells as local jobs; SIGTERM/SIGHUP/Ctrl-C stop the jobs (they resume from their checkpoints)."""
    with interrupt_on_terminate():
        return _run_local(cells, root, opts)


def _run_local(cells: list[Cell], root: Path, opts: dict) -> LaunchResult:
    import submitit

    folder = root / ".submitit"  # (a %j in the path would make submitit's local controller create a literal %j folder)
    executor = submitit.LocalExecutor(folder=folder, max_num_timeout=opts["max_num_timeout"])
    queue = list(cells)
    free = list(range(opts["parallel"]))
    running: dict[Any, tuple[Cell, int]] = {}
    states: dict[str, str] = {}
    job_ids: list[str] = []
    last_report = 0.0
    try:
        while queue or running:
            while queue and free:
                cell = queue.pop(0)
                cell_dir = prepare(cell, root)
                if cell_dir is None:  # done or taken by another process meanwhile
                    states[cell.id] = store.cell_state(root / cell.id)
                    continue
                slot = free.pop(0)
                params: dict[str, Any] = {
                    "timeout_min": opts["timeout_min"],
                    "tasks_per_node": opts["tasks_per_node"],
                    "signal_delay_s": opts["signal_delay_s"],
                    "setup": list(opts["setup"]),
                }
                if opts["gpus"]:
                    g = opts["gpus"]
                    params.update(gpus_per_node=g, visible_gpus=tuple(range(slot * g, slot * g + g)))
                executor.update_parameters(**params)
                with runner_in_environment():
                    job = executor.submit(CellJob(), to_container(cell.config), str(cell_dir))
                store.write_job(cell_dir, {"launcher": "local", "job_id": str(job.job_id),
                                           "log_err": str(job.paths.stderr), "log_out": str(job.paths.stdout)})
                job_ids.append(str(job.job_id))
                running[job] = (cell, slot)
                log.info("cell %s (%s): started, local job %s (slot %d)", cell.id, cell.label, job.job_id, slot)
            for job in [j for j in running if j.done()]:
                cell, slot = running.pop(job)
                free.append(slot)
                free.sort()
                state, error = _job_result(job)
                cell_dir = root / cell.id
                if error is not None:
                    settle_unfinished(cell_dir, "JobFailed", f"local job {job.job_id} ended without finishing the "
                                       f"cell ({job.state}): {type(error).__name__}: {str(error)[-2000:]}",
                                       str(job.paths.stderr))
                states[cell.id] = store.cell_state(cell_dir)
                log.info("cell %s (%s): %s", cell.id, cell.label, states[cell.id])
            if running and time.monotonic() - last_report > 60:
                last_report = time.monotonic()
                log.info("%d cell(s) running, %d queued, %d finished", len(running), len(queue), len(states))
            if running:
                time.sleep(opts["poll_s"])
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM / SIGHUP (interrupt_on_terminate)
        log.warning("interrupted: stopping %d local job(s) (their cells resume from their checkpoints)", len(running))
        for job in running:
            job.cancel(check=False)  # SIGINT to the job: its cell releases its claim; SIGKILL 1 s later
        deadline = time.monotonic() + 15
        while any(not j.done() for j in running) and time.monotonic() < deadline:
            time.sleep(0.1)
        raise
    return LaunchResult(states, job_ids=job_ids)
