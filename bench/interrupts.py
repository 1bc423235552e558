"""Signals and process lifetimes of a run: interruptions that release claims, and local jobs that stop when
their runner is gone.

- :func:`interrupt_on_terminate`: while ``bench.run`` runs cells, SIGTERM and SIGHUP raise
  :class:`Terminated` (a ``KeyboardInterrupt``) like Ctrl-C does, so cells release their claims and the local
  launcher stops its jobs; the exit status is then 128 + the signal.
- :func:`noting_interruptions`: an interruption raised inside a callback of C++ code (``torch.save`` writing
  to a file object) comes out as a ``RuntimeError``; ``bench.cell.execute`` notes the signal so that such a
  cell is interrupted (resumable), never recorded as failed.
- :func:`runner_in_environment` / :func:`watch_runner`: the local launcher names its runner in its jobs'
  environment; each job watches it and interrupts its cell when the runner is gone, even killed with SIGKILL.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time

from .claim import _pid_alive, _proc_start

log = logging.getLogger(__name__)


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, turned into an interruption so that the runner stops its jobs and releases its
    claims (``signum``: the signal; see :func:`interrupt_on_terminate`)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextlib.contextmanager
def noting_interruptions():
    """Note the signal whose Python handler raises (Ctrl-C, SIGTERM under ``bench.run``) while a cell runs.
    Raised inside a callback of C++ code (``torch.save`` writing to a file object), the interruption comes out
    as a ``RuntimeError``: the cell is then interrupted (resumable), not failed."""
    note: dict[str, int | None] = {"signum": None}
    if threading.current_thread() is not threading.main_thread():
        yield note
        return
    old = {}
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        handler = signal.getsignal(sig)
        if callable(handler):
            def noting(signum, frame, _handler=handler):
                try:
                    _handler(signum, frame)
                except BaseException:
                    note["signum"] = signum
                    raise

            old[sig] = signal.signal(sig, noting)
    try:
        yield note
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def interruption(note: dict) -> KeyboardInterrupt:
    signum = note["signum"]
    return KeyboardInterrupt() if signum == signal.SIGINT else Terminated(signum)


@contextlib.contextmanager
def interrupt_on_terminate():
    """While inside: SIGTERM and SIGHUP (where they have their default action) raise :class:`Terminated` in
    the main thread, like Ctrl-C raises KeyboardInterrupt. No-op outside the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Terminated(signum)

    old = {}
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) == signal.SIG_DFL:
            old[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)


#: ``<pid>:<process start time>`` of a local launcher's runner, in the environment of its jobs
RUNNER_ENV = "BENCH_LOCAL_RUNNER"


@contextlib.contextmanager
def runner_in_environment():
    """While submitting local jobs: name this process in their environment (see :func:`watch_runner`)."""
    old = os.environ.get(RUNNER_ENV)
    os.environ[RUNNER_ENV] = f"{os.getpid()}:{_proc_start(os.getpid())}"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(RUNNER_ENV, None)
        else:
            os.environ[RUNNER_ENV] = old


def watch_runner(every_s: float = 1.0) -> None:
    """In a job of the local launcher: a daemon thread that interrupts the cell (SIGINT: its claim is
    released, it resumes later from its checkpoint) when the runner that started the job is gone, even
    killed with SIGKILL. No-op in other jobs."""
    value = os.environ.get(RUNNER_ENV, "")
    if os.environ.get("SUBMITIT_EXECUTOR") != "local" or ":" not in value:
        return
    pid_text, start = value.split(":", 1)
    try:
        pid = int(pid_text)
    except ValueError:
        return

    def gone() -> bool:
        return not _pid_alive(pid) or (start != "None" and str(_proc_start(pid)) != start)

    def watch() -> None:
        while not gone():
            time.sleep(every_s)
        log.warning("the local runner (pid %d) is gone: stopping this cell (it resumes from its last checkpoint)", pid)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=watch, name="runner-watch", daemon=True).start()
