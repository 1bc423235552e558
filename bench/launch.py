"""Launchers: how a list of cells gets executed, chosen by ``launcher.name`` (keys under ``launcher.*``).

- ``inline`` (default): the cells one after the other in this process.
- ``local``: each cell in its own subprocess through submitit's ``LocalExecutor``, ``launcher.parallel`` at a
  time (submitit's local executor has no array parallelism: this module throttles), logs in
  ``<grid dir>/.submitit/<job id>/``.
- ``slurm``: one SLURM job array per grid through submitit (``cluster="slurm"`` passed explicitly: submitit's
  auto-detection picks SLURM whenever ``srun`` is on PATH), ``launcher.array_parallelism`` elements at a time,
  resources from a profile ``slurm/profiles/<launcher.profile>.yaml`` overridden by ``launcher.*`` keys.
  ``launcher.wait=false`` submits and returns (see ``python -m bench.status``).

Every launcher ends up calling :func:`bench.cell.execute` once per cell with the cell's resolved config and
folder, so the outcome is recorded the same way whatever runs it. On a scheduler the submitted callable is
:class:`CellJob`, which is checkpointable (submitit's protocol): on preemption or timeout the job is
requeued and the cell resumes from its last checkpoint; with ``launcher.tasks_per_node > 1`` it sets up
``torch.distributed`` (gloo on CPU, nccl on CUDA) and the cell trains data-parallel.

Preemption, step by step (SLURM sends ``USR2`` ``signal_delay_s`` before the time limit, or at preemption
when the cluster sets ``preempt_send_user_signal``; ``LocalExecutor`` sends it before its timeout):

1. submitit's handler for the signal is installed by submitit before the cell starts; :class:`CellJob`
   wraps it. A signal handler runs in the main thread between two bytecodes, possibly in the middle of an
   optimiser step or of a checkpoint write, so the wrapper does no work there: when a training loop is
   running it only sets a flag (``bench.train.PREEMPTION``);
2. the loop finishes its step, writes ``checkpoints/last.pt`` atomically (model, optimiser, scheduler, step,
   RNG states of that step) and calls submitit's handler, which calls :meth:`CellJob.checkpoint` (it writes
   nothing: the state is on disk, it resubmits the same arguments), runs ``scontrol requeue`` and exits;
3. outside the training loop (data loading, evaluation) the wrapper calls submitit's handler at once; the
   requeued cell then resumes from its latest checkpoint (at most ``train.checkpoint_every_steps`` steps
   old, or the last epoch end). A job killed without a signal (node failure, ``SIGKILL``) resumes the same
   way when it is rerun or requeued.

Failures: an exception in a cell is recorded by ``execute`` (``error.json``) and the job ends normally. A job
that ends without a verdict (cancelled, killed, out of memory, node failure) is found by the runner while
it waits, or later by ``python -m bench.status``, which write ``error.json`` for it (type ``Cancelled``,
``Timeout`` or ``JobFailed``), so such cells read as failed, never as running forever; a cell claimed by
another live process (a job that found it taken by an inline run) is left alone.

Claims (``bench.claim``): the runners read each cell's state again just before they start or submit it,
and ``execute`` claims the cell when the job starts, so a cell taken or finished by another run meanwhile
is not run twice; a requeued SLURM job takes its own cell's claim back (same job id, higher restart
count). The local launcher's runner stops its jobs (SIGINT; their cells release their claims and resume
later from their checkpoints) on Ctrl-C, SIGTERM or SIGHUP, and its jobs stop themselves when the runner is
gone, even after SIGKILL.
"""

from __future__ import annotations

import getpass
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Optional

import yaml
from omegaconf import DictConfig

from . import store
from .cell import execute
from . import options as _opts
from .config import ConfigError, to_container
from .errors import did_you_mean
from .yamlio import load as load_yaml
from .grid import Cell
from .interrupts import interrupt_on_terminate, runner_in_environment, watch_runner

log = logging.getLogger(__name__)

#: folder of the SLURM profiles (``launcher.profile=NAME`` -> ``PROFILES_DIR / NAME.yaml``); the environment
#: variable ``BENCH_SLURM_PROFILES`` points elsewhere
PROFILES_DIR = Path(__file__).resolve().parent.parent / "slurm" / "profiles"


class LauncherError(ConfigError):
    """A launcher configuration or submission problem (names the ``launcher.*`` key when there is one)."""


@dataclass
class LaunchResult:
    """What a launcher did: final states per cell id (when it waited), the scheduler job ids, a message."""

    states: dict[str, str] = field(default_factory=dict)
    waited: bool = True
    job_ids: list[str] = field(default_factory=list)
    message: str = ""


# ----------------------------------------------------------------------------------------------------------
# options
# ----------------------------------------------------------------------------------------------------------
def _mem(key: str, v: Any) -> Any:
    if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0:
        return v
    if isinstance(v, str) and re.fullmatch(r"\d+(\.\d+)?[KMGT]?B?", v.upper()) is not None:
        return v
    raise LauncherError(f"{key}={v!r} must be GB as a number, or a SLURM size string such as 16G", key=key, value=v)


@dataclass(frozen=True)
class Option:
    """One ``launcher.*`` option: default, type (checked with :mod:`bench.options`), help, check metadata."""

    default: Any
    type: Any
    help: str
    meta: dict = field(default_factory=dict)


_POS = {"min": 1}
_NONNEG = {"min": 0}
_POSNUM = {"min": 0, "min_open": True}

LOCAL_OPTIONS: dict[str, Option] = {
    "parallel": Option(1, int, "cells running at once", _POS),
    "timeout_min": Option(7 * 24 * 60, float, "per-cell time limit, minutes (USR2 `signal_delay_s` before it: checkpoint and restart)", _POSNUM),
    "signal_delay_s": Option(30, int, "seconds between the timeout signal and the kill", _NONNEG),
    "max_num_timeout": Option(3, int, "restarts after a timeout before giving up", _NONNEG),
    "tasks_per_node": Option(1, int, "processes per cell (torch.distributed when > 1)", _POS),
    "gpus": Option(0, int, "GPUs per cell; concurrent cells get disjoint GPUs (slot k uses GPUs k*gpus .. k*gpus+gpus-1)", _NONNEG),
    "setup": Option([], list[str], "shell lines run before each cell's process"),
    "poll_s": Option(1.0, float, "how often the runner checks its jobs, seconds", _POSNUM),
}

#: SLURM resources: the keys a profile may set (``launcher.<key>`` overrides the profile)
SLURM_RESOURCES: dict[str, Option] = {
    "partition": Option(None, Optional[str], "sbatch --partition"),
    "account": Option(None, Optional[str], "sbatch --account"),
    "qos": Option(None, Optional[str], "sbatch --qos"),
    "time": Option(60, int, "time limit per cell, minutes (sbatch --time)", _POS),
    "cpus": Option(1, int, "CPUs per task (sbatch --cpus-per-task)", _POS),
    "gpus": Option(0, int, "GPUs per cell (sbatch --gpus-per-node)", _NONNEG),
    "mem": Option(None, Any, "memory per cell: GB as a number, or a SLURM size string such as 16G (sbatch --mem)", {"check": _mem}),
    "constraint": Option(None, Optional[str], "sbatch --constraint"),
    "setup": Option([], list[str], "lines run in the sbatch script before srun"),
    "tasks_per_node": Option(1, int, "processes per cell (torch.distributed when > 1)", _POS),
    "array_parallelism": Option(256, int, "array elements running at once (%N)", _POS),
    "signal_delay_s": Option(90, int, "USR2 this many seconds before the time limit (checkpoint + requeue)", _NONNEG),
    "max_num_timeout": Option(3, int, "requeues after a timeout before giving up", _NONNEG),
    "additional": Option({}, dict, "extra sbatch options, e.g. {exclude: node1}"),
}

SLURM_OPTIONS: dict[str, Option] = {
    "profile": Option(None, Optional[str], "slurm/profiles/<profile>.yaml (or a YAML path): resources, overridden by launcher.* keys"),
    **SLURM_RESOURCES,
    "wait": Option(True, bool, "wait for the jobs (false: submit, print the job id, exit 0)"),
    "poll_s": Option(10.0, float, "how often the runner polls squeue/sacct, seconds", _POSNUM),
    "job_name": Option(None, Optional[str], "SLURM job name (default bench-<grid>)"),
}


def _check(name: str, given: dict, options: dict[str, Option], where: str = "launcher") -> dict:
    """``given`` merged over the defaults of ``options``; unknown keys and bad values raise, naming the key
    (:mod:`bench.options` rules)."""
    prefix = f"{where}." if where else ""
    owner = f"launcher.name={name}" if where else "a SLURM profile"
    _opts.check_known(given, list(options), prefix=prefix, owner=owner, error=LauncherError)
    out = {k: o.default for k, o in options.items()}
    for k, v in given.items():
        o = options[k]
        out[k] = None if v is None and o.default is None else _opts.coerce(f"{prefix}{k}", v, o.type, o.meta, error=LauncherError)
    return out


def list_profiles() -> list[str]:
    folder = Path(os.environ.get("BENCH_SLURM_PROFILES", PROFILES_DIR))
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def load_profile(name: str) -> tuple[Path, dict]:
    """``local`` -> ``slurm/profiles/local.yaml`` (or a path to a YAML file): its resources, validated."""
    folder = Path(os.environ.get("BENCH_SLURM_PROFILES", PROFILES_DIR))
    path = Path(name)
    if path.suffix not in (".yaml", ".yml"):
        path = folder / f"{name}.yaml"
    if not path.exists():
        raise LauncherError(f"launcher.profile={name!r}: no profile {path}; available in {folder}: {list_profiles()}")
    try:
        data = load_yaml(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise LauncherError(f"launcher.profile={name!r}: {path} is not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise LauncherError(f"launcher.profile={name!r}: {path} must be a mapping of SLURM resources")
    data.pop("description", None)
    try:
        return path, _check("slurm", data, SLURM_RESOURCES, where="")
    except LauncherError as e:
        raise LauncherError(f"profile {path}: {e} (a profile may also set description)", key=e.key) from None


# ----------------------------------------------------------------------------------------------------------
# the registry
# ----------------------------------------------------------------------------------------------------------
@dataclass
class Launcher:
    """A launcher: ``resolve(cfg)`` validates ``launcher.*`` into options; ``run(cells, root, options)``
    runs (or submits) the cells. Calling the launcher does both."""

    name: str
    run: Callable[[list[Cell], Path, dict], LaunchResult]
    options: dict[str, Option]
    summary: str
    resolve_fn: Callable[[dict], dict] | None = None

    def resolve(self, launcher_cfg: DictConfig | dict | None) -> dict:
        given = to_container(launcher_cfg) if isinstance(launcher_cfg, DictConfig) else dict(launcher_cfg or {})
        given.pop("name", None)
        if self.resolve_fn is not None:
            return self.resolve_fn(given)
        return _check(self.name, given, self.options)

    def describe(self, opts: dict) -> str:
        shown = {k: v for k, v in opts.items() if v not in (None, [], {})}
        return f"launcher {self.name}" + (": " + ", ".join(f"{k}={v}" for k, v in shown.items()) if shown else "")

    def __call__(self, cells: list[Cell], root: Path, launcher_cfg: DictConfig | dict | None) -> LaunchResult:
        return self.run(cells, Path(root), self.resolve(launcher_cfg))


LAUNCHERS: dict[str, Launcher] = {}


def register_launcher(name: str, options: dict[str, Option], summary: str, resolve: Callable[[dict], dict] | None = None):
    def deco(fn):
        LAUNCHERS[name] = Launcher(name, fn, options, summary, resolve)
        return fn

    return deco


def resolve(launcher_cfg: DictConfig | dict | None) -> tuple[Launcher, dict]:
    """The launcher named by ``launcher.name`` and its validated options (raises :class:`LauncherError`)."""
    cfg = to_container(launcher_cfg) if isinstance(launcher_cfg, DictConfig) else dict(launcher_cfg or {})
    name = cfg.get("name", "inline")
    if name not in LAUNCHERS:
        raise LauncherError(f"launcher.name={name!r} is unknown{did_you_mean(name, LAUNCHERS)}", key="launcher.name",
                            value=name, allowed=sorted(LAUNCHERS))
    launcher = LAUNCHERS[name]
    return launcher, launcher.resolve(cfg)


# ----------------------------------------------------------------------------------------------------------
# the job a scheduler runs
# ----------------------------------------------------------------------------------------------------------
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

    from .train import PREEMPTION

    sig = JobEnvironment._usr_sig()
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


def _prepare(cell: Cell, root: Path) -> Path | None:
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


def _settle_unfinished(cell_dir: Path, type_: str, message: str, log_err: str | None = None,
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


# ----------------------------------------------------------------------------------------------------------
# inline
# ----------------------------------------------------------------------------------------------------------
@register_launcher("inline", {}, "the cells one after the other in this process (default)")
def run_inline(cells: list[Cell], root: Path, opts: dict) -> LaunchResult:
    """Run the cells one after the other in this process."""
    states = {}
    for i, cell in enumerate(cells, 1):
        log.info("[%d/%d] cell %s: %s", i, len(cells), cell.id, cell.label)
        states[cell.id] = execute(cell.config, root / cell.id)  # claims the cell: state read again, run once
        log.info("[%d/%d] cell %s: %s", i, len(cells), cell.id, states[cell.id])
    return LaunchResult(states)


# ----------------------------------------------------------------------------------------------------------
# local (submitit LocalExecutor, throttled)
# ----------------------------------------------------------------------------------------------------------
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
                cell_dir = _prepare(cell, root)
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
                    _settle_unfinished(cell_dir, "JobFailed", f"local job {job.job_id} ended without finishing the "
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


# ----------------------------------------------------------------------------------------------------------
# slurm
# ----------------------------------------------------------------------------------------------------------
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
    prepared = [(c, _prepare(c, root)) for c in cells]
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


#: sacct states after which a job will not run again
TERMINAL = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE",
            "PREEMPTED", "REVOKED", "SPECIAL_EXIT")


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
        _settle_unfinished(cell_dir, "Cancelled", f"SLURM job {job_id} was cancelled ({state}) before the cell "
                           f"finished{hint}", job.get("log_err"), job_id=job_id)
    elif state.startswith("TIMEOUT"):
        _settle_unfinished(cell_dir, "Timeout", f"SLURM job {job_id} hit its time limit and was not requeued "
                           f"(launcher.time, launcher.max_num_timeout){hint}", job.get("log_err"), job_id=job_id)
    else:
        _settle_unfinished(cell_dir, "JobFailed", f"SLURM job {job_id} ended {state} without finishing the cell{hint}",
                           job.get("log_err"), job_id=job_id)


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


def _expand(jid: str) -> list[str]:
    """``12_[1-3,5%2]`` -> ``12_1, 12_2, 12_3, 12_5``; other ids unchanged."""
    m = re.fullmatch(r"(\d+)_\[([^\]]+)\]", jid)
    if not m:
        return [jid]
    base, spec = m.group(1), m.group(2).split("%")[0]
    out = []
    for part in spec.split(","):
        if "-" in part:
            a, b = part.split("-", 1)
            out.extend(f"{base}_{i}" for i in range(int(a), int(b) + 1))
        elif part:
            out.append(f"{base}_{part}")
    return out


def sacct_states(job_ids: list[str]) -> dict[str, str]:
    """Job id -> sacct state (``COMPLETED``, ``CANCELLED by 0``, ...) for ``job_ids``; ids sacct does not
    know (or no accounting) are absent."""
    if not job_ids or shutil.which("sacct") is None:
        return {}
    bases = sorted({j.split("_")[0] for j in job_ids})
    out = _run(["sacct", "-n", "-P", "-X", "-o", "JobID,State", "-j", ",".join(bases)])
    states: dict[str, str] = {}
    for line in (out or "").splitlines():
        if "|" not in line:
            continue
        jid, st = line.strip().split("|", 1)
        for j in _expand(jid):
            states[j] = st
    return {j: states[j] for j in job_ids if j in states}


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
