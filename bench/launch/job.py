"""The job a scheduler (submitit, local or SLURM) runs for one cell: :class:`CellJob` (logging, the runner
watch, ``torch.distributed`` set-up, the preemption hook around submitit's handler, then
:func:`bench.cell.execute`), and what the runners do around it: :func:`prepare` a cell before submitting it,
:func:`settle_unfinished` when its job ended without a verdict."""

from __future__ import annotations

import logging
import re
import signal
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from .. import store
from ..cell import execute
from ..config import to_container
from ..grid import Cell
from ..interrupts import watch_runner

log = logging.getLogger("bench.launch")


def _job_logging() -> None:
    root = logging.getLogger()
    if not any(getattr(h, "_bench_job", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler._bench_job = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)


def _init_distributed(cfg: dict) -> bool:
    """With several tasks in the job: export submitit's rank/world/master into the environment and
    initialise torch.distributed (nccl when the cell trains on CUDA, else gloo). Returns True if done."""
    import submitit
    import torch

    env = submitit.JobEnvironment()
    if env.num_tasks <= 1 or torch.distributed.is_initialized():
        return False
    dist_env = submitit.helpers.TorchDistributedEnvironment()
    if env.cluster == "local":  # one machine: the loopback address always works for gloo/nccl rendezvous
        dist_env.master_addr = "127.0.0.1"
    # do not let submitit rewrite CUDA_VISIBLE_DEVICES (SLURM already restricts it): pick cuda:LOCAL_RANK
    dist_env.export(set_cuda_visible_devices=False, overwrite=True)
    device = str((cfg.get("train") or {}).get("device", "auto"))
    use_cuda = torch.cuda.is_available() and not device.startswith("cpu")
    if use_cuda:
        torch.cuda.set_device(dist_env.local_rank % max(1, torch.cuda.device_count()))
    backend = "nccl" if use_cuda else "gloo"
    torch.distributed.init_process_group(backend=backend, init_method="env://", timeout=timedelta(minutes=30))
    log.info("torch.distributed: rank %d/%d (local rank %d), backend %s, master %s:%s", dist_env.rank,
             dist_env.world_size, dist_env.local_rank, backend, dist_env.master_addr, dist_env.master_port)
    return True


def _install_preemption_hook() -> None:
    """Route submitit's preemption/timeout signal through ``bench.train.PREEMPTION`` (see the module
    docstring). No-op outside a submitit job (no handler installed)."""
    from submitit import JobEnvironment

    from ..train import PREEMPTION

    sig = getattr(signal, "SIG" + JobEnvironment.USR_SIG)  # the signal submitit handles (SUBMITIT_PREEMPT_SIGNAL)
    previous = signal.getsignal(sig)
    if not callable(previous):
        PREEMPTION.install(None)
        return

    def on_signal(signum, frame):  # runs between two bytecodes of the main thread: only set a flag
        if PREEMPTION.request():
            return
        previous(signum, frame)

    PREEMPTION.install(lambda: previous(sig, None))
    signal.signal(sig, on_signal)


try:  # submitit is a dependency, but keep `import bench.launch` working without it
    from submitit.helpers import Checkpointable as _Checkpointable
    from submitit.helpers import DelayedSubmission as _DelayedSubmission
except ImportError:  # pragma: no cover
    _Checkpointable = object  # type: ignore[assignment,misc]
    _DelayedSubmission = None  # type: ignore[assignment]


class CellJob(_Checkpointable):  # type: ignore[misc,valid-type]
    """The callable submitted for one cell: ``CellJob()(config_dict, cell_dir)`` -> ``"done"`` | ``"failed"``.

    Arguments are plain data (the resolved config as a dict, the folder as a string), so the pickle is small
    and refers to no live object. Checkpointable: :meth:`checkpoint` resubmits the same arguments (the cell's
    state is its checkpoint on disk), so a preempted or timed-out job is requeued and resumes."""

    def __call__(self, cfg: dict, cell_dir: str) -> str:
        import torch

        _job_logging()
        watch_runner()
        started_dist = _init_distributed(cfg)
        _install_preemption_hook()
        try:
            return execute(cfg, cell_dir)
        finally:
            if started_dist and torch.distributed.is_initialized():
                torch.distributed.destroy_process_group()

    def checkpoint(self, cfg: dict, cell_dir: str) -> Any:
        """Called by submitit on preemption/timeout (from the training loop at a step boundary, or from the
        signal handler outside it). Writes nothing: the training loop has just saved ``last.pt``, or the cell
        resumes from its latest periodic checkpoint."""
        log.warning("cell %s: preempted or timed out; requeueing (resumes from its last checkpoint)", Path(cell_dir).name)
        return _DelayedSubmission(self, cfg, cell_dir)


def prepare(cell: Cell, root: Path) -> Path | None:
    """Before handing a cell to a scheduler: its state read again (None when it is no longer to run: done,
    or held by another process, meanwhile), a corrupt cell repaired (``rerun_corrupt=true``), its folder and
    config written (so ``bench.status`` knows it while it is queued), a previous failure set aside. The job
    claims the cell when it starts (``bench.cell.execute``), so a cell taken meanwhile is not run twice."""
    cell_dir = root / cell.id
    cfg = cell.config
    flags = {"rerun_failed": cfg.get("rerun_failed", False) is True, "rerun_corrupt": cfg.get("rerun_corrupt", False) is True}
    info = store.inspect(cell_dir)
    if not store.runnable(info.state, **flags):
        log.info("cell %s (%s) is %s now; not submitted", cell.id, cell.label, info.state)
        return None
    cell_dir.mkdir(parents=True, exist_ok=True)
    if info.state == store.CORRUPT:
        for line in store.repair(cell_dir, to_container(cfg)):
            log.warning("cell %s: repair: %s", cell.id, line)
    store.write_yaml(cell_dir / "config.yaml", to_container(cfg))
    store.set_aside_error(cell_dir)
    return cell_dir


_PROGRESS = re.compile(r"^[^|]*\d+%\|")  # a tqdm progress line


def _log_tail(path: Path | str | None, n: int = 40) -> str:
    """The last ``n`` lines of a job log, progress bars left out."""
    if not path:
        return ""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return ""
    lines = [ln for ln in re.split(r"[\r\n]+", text) if ln.strip() and not _PROGRESS.match(ln)]
    return "\n".join(lines[-n:])


def _claim_of_job(claim: dict | None, job_id: str | None) -> bool:
    """Whether a claim was taken by the SLURM job ``job_id`` (an array element ``12_3`` or a job ``15``)."""
    if not claim or not job_id:
        return False
    return str(job_id) in (str(claim.get("slurm_array")), str(claim.get("slurm_job_id")))


def settle_unfinished(cell_dir: Path, type_: str, message: str, log_err: str | None = None,
                       job_id: str | None = None) -> None:
    """A job ended without the cell recording a verdict: write ``error.json``, unless the cell has a verdict
    (done, failed, corrupt) or another process holds it (e.g. a job that found the cell claimed by an inline
    run and left it alone). A claim left by the ended job ``job_id`` itself is removed."""
    info = store.inspect(cell_dir)
    if info.state in (store.DONE, store.FAILED, store.CORRUPT):
        return
    if info.state == store.RUNNING and not _claim_of_job(info.claim, job_id):
        return
    tail = _log_tail(log_err)
    try:
        store.mark_failed(cell_dir, type_, message, traceback=(f"last lines of {log_err}:\n{tail}" if tail else ""))
    except OSError as e:
        log.error("cell %s: %s (and error.json cannot be written: %s)", cell_dir.name, message, e)
        return
    log.error("cell %s: %s", cell_dir.name, message)
