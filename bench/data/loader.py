"""The one data pipeline of pretraining, feature extraction and fine-tuning: a ``torch.utils.data.DataLoader``
whose workers decode each sample (:mod:`bench.data.images`), augment it (:mod:`bench.data.transforms`) and
resize it to the tower's input size; batches are uint8 ``[B, R, R, 3]`` plus the int64 sample indices, in
the order of the batch sampler (:mod:`bench.data.sampler`). Normalisation is the model's
(``TwoTower.preprocess``, on the device: a uint8 batch is a quarter of the bytes to copy).

- ``data.workers`` (:func:`configure`, set by ``build_dataset``): worker processes; ``None`` = a share of the
  CPUs this process may use (:func:`default_workers`), 0 = decode in the main process. One iterator spans the
  whole run (the sampler covers every step), so workers live exactly as long as one pass over a
  :class:`Batches`: they stop when it ends, is closed or is dropped, never later (workers ignore SIGTERM, so
  a worker left to the interpreter's exit would block it: ``multiprocessing`` joins its children after
  terminating them with SIGTERM). They prefetch ``PREFETCH`` batches each, and use one torch thread each.
- Workers ignore the job-control signals (preemption, termination, interrupt): the main process acts on
  them and the workers end with it.
- On CUDA the batches are pinned and copied with ``non_blocking=True``; elsewhere nothing is pinned.
- A sample that cannot be read while loading is a :class:`~bench.data.problems.DataValidationError` naming
  the file and the sample id; with ``data.on_bad_sample=skip`` it is dropped from its batch and counted
  (:attr:`Batches.skipped`), except under torch.distributed (every rank must keep the same batch size) and
  in feature extraction (its output is one row per sample, in order).
"""

from __future__ import annotations

import logging
import os
import signal
import time
from typing import Any, Iterator

import numpy as np
import torch

from .images import ImageSource
from .problems import DataValidationError, Problem
from .sampler import GlobalBatchSampler, SequentialBatches
from .transforms import Preset, get_preset, sample_generator

log = logging.getLogger(__name__)

#: batches each worker prepares ahead
PREFETCH = 4
#: at most this many workers by default
MAX_DEFAULT_WORKERS = 8

_SETTINGS: dict[str, Any] = {"workers": None, "on_bad_sample": "error"}


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def default_workers() -> int:
    """All but one of the CPUs this process may use, at most :data:`MAX_DEFAULT_WORKERS` (0 on one CPU).
    Under torch.distributed each rank has its own CPUs from the scheduler's affinity mask."""
    return max(0, min(MAX_DEFAULT_WORKERS, available_cpus() - 1))


def configure(workers: int | None = None, on_bad_sample: str | None = None) -> None:
    """Set this process's loader settings (``data.workers``, ``data.on_bad_sample``; ``None`` = default)."""
    _SETTINGS["workers"] = None if workers is None else int(workers)
    _SETTINGS["on_bad_sample"] = on_bad_sample or "error"


def resolve_workers(workers: int | None = None) -> int:
    w = _SETTINGS["workers"] if workers is None else workers
    return default_workers() if w is None else max(0, int(w))


class ImageDataset(torch.utils.data.Dataset):
    """Item ``(epoch, i)`` -> ``(i, uint8 [R, R, 3])``, or ``(i, message)`` when the image cannot be read."""

    def __init__(self, source: ImageSource, size: int, preset: Preset, seed: int = 0):
        self.source, self.size, self.preset, self.seed = source, int(size), preset, int(seed)

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, key: tuple[int, int]) -> tuple[int, Any]:
        epoch, i = key
        try:
            image = self.source.read(i, self.size)
            if image.ndim != 3 or image.shape[2] != 3 or image.size == 0:
                raise ValueError(f"decoded to shape {image.shape}")
        except Exception as e:  # noqa: BLE001 - any decoder error: the file is bad, report which
            return i, f"cannot read image ({type(e).__name__}: {e})"
        g = sample_generator(self.seed, epoch, i) if self.preset.random else None
        return i, self.preset(image, self.size, g)


#: signals a worker ignores: the main process handles them (preemption checkpoint, requeue, shutdown) and
#: the workers exit with it; a worker running submitit's handler would requeue the job from the wrong process
WORKER_IGNORED_SIGNALS = tuple(getattr(signal, n) for n in ("SIGUSR1", "SIGUSR2", "SIGTERM", "SIGHUP", "SIGINT")
                               if hasattr(signal, n))


_EXIT_GUARD: list[bool] = []


def _kill_daemonic_children() -> None:
    """At interpreter exit, before ``multiprocessing``'s own exit hook: kill the daemonic children (loader
    workers of a pass still referenced at exit), which that hook would try to stop with SIGTERM, ignored by
    our workers, and then wait for forever."""
    import multiprocessing

    children = [p for p in multiprocessing.active_children() if p.daemon]
    for p in children:
        p.kill()
    for p in children:
        try:
            p.join(5)
        except RuntimeError:  # torch's SIGCHLD handler reports the killed worker: expected here
            pass


def _install_exit_guard() -> None:
    if not _EXIT_GUARD:  # registered after multiprocessing's exit hook, so it runs before it
        import atexit

        atexit.register(_kill_daemonic_children)
        _EXIT_GUARD.append(True)


def _worker_init(_worker_id: int) -> None:
    for sig in WORKER_IGNORED_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


def _collate(items: list[tuple[int, Any]]) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, str]]]:
    good = [(i, x) for i, x in items if isinstance(x, torch.Tensor)]
    bad = [(i, x) for i, x in items if not isinstance(x, torch.Tensor)]
    idx = torch.tensor([i for i, _ in good], dtype=torch.int64)
    images = torch.stack([x for _, x in good]) if good else torch.zeros(0, 0, 0, 3, dtype=torch.uint8)
    return idx, images, bad


class Batches:
    """Iterate ``(indices int64 [b], images uint8 [b, R, R, 3])`` of a batch sampler over ``data``.

    ``skip_bad``: drop unreadable samples (counted in :attr:`skipped`) instead of raising.
    :attr:`wait_s` accumulates the time the caller spent waiting for a batch."""

    def __init__(self, data: Any, size: int, sampler: Any, preset: Preset, seed: int = 0,
                 device: torch.device | str = "cpu", workers: int | None = None, skip_bad: bool = False):
        self.source = ImageSource(data)
        self.workers = resolve_workers(workers)
        self.skip_bad = skip_bad
        self.skipped = 0
        self.wait_s = 0.0
        device = torch.device(device)
        w = self.workers
        if w > 0:
            _install_exit_guard()
        self.loader = torch.utils.data.DataLoader(
            ImageDataset(self.source, size, preset, seed), batch_sampler=sampler, num_workers=w,
            collate_fn=_collate, pin_memory=device.type == "cuda", persistent_workers=False,
            worker_init_fn=_worker_init if w > 0 else None,
            prefetch_factor=PREFETCH if w > 0 else None)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        it = iter(self.loader)
        try:
            while True:
                t0 = time.perf_counter()
                try:
                    idx, images, bad = next(it)
                except StopIteration:
                    return
                self.wait_s += time.perf_counter() - t0
                if bad:
                    self._bad(bad)
                yield idx, images
        finally:
            del it  # the workers stop here (end, error, close or garbage collection of this pass)

    def _bad(self, bad: list[tuple[int, str]]) -> None:
        problems = [Problem(self.source.where(i), "image", f"sample {self.source.sample_id(i)!r} (index {i}): {msg}",
                            sample=self.source.sample_id(i)) for i, msg in bad]
        if not self.skip_bad:
            raise DataValidationError(problems)
        self.skipped += len(bad)
        for p in problems:
            log.warning("data: skipping a bad sample found while loading (data.on_bad_sample=skip): %s", p)


def train_batches(data: Any, size: int, preset: str | Preset, seed: int, batch_size: int, total_steps: int,
                  start_step: int = 0, rank: int = 0, world: int = 1, device: torch.device | str = "cpu",
                  workers: int | None = None) -> Batches:
    """This rank's batches of pretraining steps ``start_step .. total_steps - 1`` (see :mod:`.sampler`)."""
    preset = get_preset(preset) if isinstance(preset, str) else preset
    sampler = GlobalBatchSampler(len(data), batch_size, seed, total_steps, start_step, rank, world)
    skip = _SETTINGS["on_bad_sample"] == "skip" and world == 1
    out = Batches(data, size, sampler, preset, seed, device, workers, skip_bad=skip)
    log.info("data: %d samples, %d worker(s), augment=%s, %d rows per step on this rank", len(data), out.workers,
             preset.name, sampler.local)
    return out


def eval_batches(data: Any, size: int, batch_size: int, device: torch.device | str = "cpu",
                 workers: int | None = None, preset: str | Preset = "none", seed: int = 0) -> Batches:
    """Every sample once, in order, in blocks of ``batch_size``; unreadable images always raise."""
    preset = get_preset(preset) if isinstance(preset, str) else preset
    n = len(data)
    w = resolve_workers(workers)
    if n <= batch_size:  # one batch: starting workers would cost more than they save
        w = 0
    return Batches(data, size, SequentialBatches(n, batch_size), preset, seed, device, w)


def epoch_batches(data: Any, size: int, order: np.ndarray, blocks: list[np.ndarray], preset: str | Preset,
                  seed: int, epoch: int, device: torch.device | str = "cpu", workers: int | None = None) -> Batches:
    """The batches ``order[block]`` for each block, augmented with ``epoch``'s draws (fine-tuning)."""
    preset = get_preset(preset) if isinstance(preset, str) else preset
    sampler = [[(epoch, int(i)) for i in order[b]] for b in blocks]
    w = resolve_workers(workers) if len(sampler) > 1 else 0
    return Batches(data, size, sampler, preset, seed, device, w)
