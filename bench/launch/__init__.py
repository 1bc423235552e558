"""Launchers: how a list of cells gets executed, chosen by ``launcher.name`` (keys under ``launcher.*``).

- ``inline`` (default): the cells one after the other in this process.
- ``local``: each cell in its own subprocess through submitit's ``LocalExecutor``, ``launcher.parallel`` at a
  time (submitit's local executor has no array parallelism: this module throttles), logs in
  ``<grid dir>/.submitit/<job id>/``.
- ``slurm``: one SLURM job array per grid through submitit (``cluster="slurm"`` passed explicitly: submitit's
  auto-detection picks SLURM whenever ``srun`` is on PATH), ``launcher.array_parallelism`` elements at a time,
  resources from a profile ``slurm/profiles/<launcher.profile>.yaml`` overridden by ``launcher.*`` keys.
  ``launcher.wait=false`` submits and returns (see ``python -m bench.status``).

The package: ``registry`` (``@register_launcher``, :func:`resolve`), ``options`` (the ``launcher.*`` tables,
SLURM profiles), ``job`` (:class:`CellJob`, what the runners do around a job), one module per launcher
(``inline``, ``local``, ``slurm``) and ``slurm_state`` (``squeue`` / ``sacct`` states). A new launcher is one
module with a ``@register_launcher`` function, imported below.

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

from .errors import LauncherError, LaunchResult
from .job import CellJob
from .options import LOCAL_OPTIONS, PROFILES_DIR, SLURM_OPTIONS, SLURM_RESOURCES, Option, list_profiles, load_profile
from .registry import LAUNCHERS, Launcher, register_launcher, resolve
from .slurm_state import TERMINAL, is_active, sacct_states, slurm_states, squeue_states

# the launchers (each registers itself)
from . import inline, local, slurm  # noqa: E402  (isort: keep after the registry)

#: the modules that register the built-in launchers (imported above for that)
LAUNCHER_MODULES = (inline, local, slurm)
from .slurm import settle_slurm_job, wait_slurm  # noqa: E402

__all__ = [
    "LAUNCHERS",
    "LOCAL_OPTIONS",
    "PROFILES_DIR",
    "SLURM_OPTIONS",
    "SLURM_RESOURCES",
    "TERMINAL",
    "CellJob",
    "LaunchResult",
    "Launcher",
    "LauncherError",
    "Option",
    "is_active",
    "list_profiles",
    "load_profile",
    "register_launcher",
    "resolve",
    "sacct_states",
    "settle_slurm_job",
    "slurm_states",
    "squeue_states",
    "wait_slurm",
]
