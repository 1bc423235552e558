"""Contrastive pretraining: AdamW + linear warmup + cosine decay, per-step schedule, resumable, distributed.

Each epoch visits the training samples in an order drawn from ``seed + epoch`` (so a resumed run sees the
same order), in batches of ``train.batch_size`` (the last incomplete batch is dropped, as in the MGLL code).
The images stream through :mod:`bench.data.loader` (a DataLoader over ``data.workers`` processes that decode,
augment with the ``train.augment`` preset and resize each sample; :mod:`bench.data.sampler` says which rows
each rank reads at each step). The position in the data is a function of the step (saved in checkpoints as
``data_position`` for reference), and every augmentation draw a function of (seed, epoch, sample index), so
neither depends on the number of workers or on where a run resumed.

Checkpoints (``checkpoints/last.pt``: model, optimiser, scheduler, step, RNG states, logged history) are
written atomically at the end of every epoch, every ``train.checkpoint_every_steps`` optimiser steps (0 =
off), and when a preemption/timeout signal was deferred to the loop (see :data:`PREEMPTION`). The RNG states
are those at the step the checkpoint is taken (dropout and the objectives continue exactly); resuming
mid-epoch starts the loader at the step's batch of the epoch's order. An interrupted then resumed run
therefore ends with the same parameters and metrics as an uninterrupted one, with any number of loader
workers (checked bit for bit on CPU by ``tests/bench/test_resume.py``). They are read back safely
(``weights_only=True``) by :mod:`bench.resume`.

Under an initialised ``torch.distributed`` group of W processes, every rank draws the same global order,
reads (decodes and augments) only its rows ``r * B/W .. (r+1) * B/W - 1`` of each global batch of
B = ``train.batch_size``, runs the model wrapped in ``DistributedDataParallel``; the objectives gather
features and labels across ranks, so the loss is that of the global batch. Only rank 0 writes checkpoints and ``history.csv``.

The step itself (``bench.train_step.TrainStep``: autocast, objective, scaler, clipping, optimiser, logit-scale
clamp, device-side finiteness flags, objective timing) queues work on the device without a host
synchronisation; the loop reads device values only at logging steps (``train.log_every``, the last step of
every epoch and of the run): the logged metrics, the finiteness check (a non-finite loss term or gradient norm
fails the cell naming it, and is also checked before every checkpoint), the objective's timing and, under
torch.distributed, the preemption flag (one all-reduce). Labels stay on the host (the objectives build their
targets there).
"""

from __future__ import annotations

import logging
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from .data.loader import train_batches
from .data.dataset import MultiGranularDataset
from .data.sampler import data_position
from .models import TwoTower
from .resume import resume
from .store import atomic_write, write_text
from .token_cache import expand, token_table
from .train_step import TrainStep, make_optimizer

log = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    """``auto`` = cuda if available, else cpu. Under torch.distributed a bare ``cuda`` becomes this rank's
    GPU (``cuda:$LOCAL_RANK``)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and device.index is None and dist_info()[1] > 1:
        # one GPU per rank: cuda:LOCAL_RANK, or cuda:0 when the scheduler shows each rank only its own GPU
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)) % max(1, torch.cuda.device_count()))
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class LevelBatching:
    """Per level: a token table of the unique texts, and the labels the objective wants."""

    token_ids: torch.Tensor  # [N] index into ``tokens`` (0 for a missing text: its row is ignored)
    tokens: torch.Tensor  # [U, L'] compact (bench.token_cache.compact: int32, trailing zero positions cut)
    labels: torch.Tensor  # [N] ids (-1 missing) or [N, C] multi-hot (-1 rows missing)
    length: int = 0  # the tower's token positions L (``tokens`` is padded back to it per batch)
    dtype: torch.dtype = torch.int64  # the tower's token dtype

    def batch_tokens(self, idx: torch.Tensor) -> torch.Tensor:
        """The tower's input ``[B, L]`` for the samples ``idx`` (a host op, no device sync)."""
        return expand(self.tokens, self.token_ids[idx], self.length or self.tokens.shape[-1], self.dtype)


def prepare_levels(model: TwoTower, data: MultiGranularDataset, levels: list[str], multi_hot: bool) -> dict[str, LevelBatching]:
    out = {}
    for g in levels:
        ids = data.text_ids(g)
        texts = data.texts(g)
        unique: dict[int, str] = {}
        for i, t in zip(ids.tolist(), texts):
            if i >= 0 and i not in unique:
                unique[i] = t
        table = [unique[k] for k in range(len(unique))] or [""]
        tokens, row, dtype = token_table(table, model.tokenize, owner=model.text)
        token_ids = torch.as_tensor(np.where(ids >= 0, ids, 0))
        if multi_hot:
            mh = torch.as_tensor(data.multi_hot(g).astype(np.int64))
            mh[torch.as_tensor(ids < 0)] = -1
            labels = mh
        else:
            labels = torch.as_tensor(ids)
        out[g] = LevelBatching(token_ids, tokens, labels, row[-1], dtype)
    return out


def load_images(data: MultiGranularDataset, desc: str = "loading images") -> torch.Tensor:
    """All images of ``data`` as one uint8 tensor ``[N, H, W, 3]`` (they must share a size). Only for the
    bare-loop comparison of ``bench.perf train``; pretraining streams through :mod:`bench.data.loader`."""
    it = range(len(data))
    if len(data) > 2000:
        it = tqdm(it, desc=desc, leave=False)
    arrays = [data.image(i) for i in it]
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise ValueError(f"{data.name}: images differ in size {sorted(shapes)[:3]}...; resize them to one size first")
    return torch.from_numpy(np.stack(arrays)) if arrays else torch.zeros(0, 1, 1, 3, dtype=torch.uint8)


def _augment_name(value: Any) -> str:
    """``train.augment``: a preset name; ``true`` / ``false`` (older configs) mean ``flip`` / ``none``."""
    if value is True:
        return "flip"
    if value is False or value is None:
        return "none"
    return str(value)


def make_schedule(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int):
    def factor(step: int) -> float:
        if warmup_steps > 0 and step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def save_checkpoint(path: Path, **state: Any) -> None:
    atomic_write(path, lambda f: torch.save(state, f), mode="wb")


class PreemptionHook:
    """Defers a preemption/timeout signal to the next step boundary of the training loop.

    The launcher (``bench.launch.CellJob``) installs submitit's handler with :meth:`install` and routes the
    signal to :meth:`request`. A signal handler runs in the main thread between two bytecodes, possibly in
    the middle of a step or of a checkpoint write, so it only sets a flag while a training loop is running;
    the loop finishes its step, saves ``last.pt`` (with the RNG states of that step), and calls the installed
    handler, which requeues the job and exits. Outside the loop (data loading, evaluation) :meth:`request`
    returns False and the caller runs the handler at once: the job then resumes from the last checkpoint.
    """

    def __init__(self) -> None:
        self.handler: Callable[[], None] | None = None
        self.requested = False
        self.active = False

    def install(self, handler: Callable[[], None] | None) -> None:
        self.handler, self.requested = handler, False

    def request(self) -> bool:
        """From a signal handler: True when a training loop will act on it after its current step."""
        if not self.active:
            return False
        self.requested = True
        return True

    def fire(self) -> None:
        """Run the installed handler (requeue + exit on rank 0); then make sure this process stops."""
        self.requested = False
        handler = self.handler
        if handler is not None:
            handler()  # submitit's: requeues and raises SystemExit on rank 0 (or raises if it cannot requeue)
        raise SystemExit(-1)


#: between two checkpoints, ``history.csv`` is rewritten at a logged step at most this often (seconds)
HISTORY_WRITE_S = 30.0

#: the process-wide hook (one training loop per process)
PREEMPTION = PreemptionHook()


def dist_info() -> tuple[int, int]:
    """(rank, world size) of the initialised ``torch.distributed`` group, else (0, 1)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _any_rank(flag: bool, device: torch.device, world: int) -> bool:
    if world == 1:
        return flag
    t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=device)
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return bool(t.item())


def pretrain(
    model: TwoTower,
    objective: torch.nn.Module,
    data: MultiGranularDataset,
    cfg: Any,
    cell_dir: Path,
    seed: int,
    device: torch.device,
    on_bad_checkpoint: str = "fail",
) -> dict[str, float]:
    """Train ``model`` with ``objective`` on ``data``; returns summary metrics (prefixed ``train/``).
    ``on_bad_checkpoint``: what to do with a ``last.pt`` that cannot be loaded safely (see :func:`resume`)."""
    cell_dir = Path(cell_dir)
    ckpt_path = cell_dir / "checkpoints" / "last.pt"
    rank, world = dist_info()
    writer = rank == 0
    levels = list(objective.levels_used(list(data.levels)))
    batching = prepare_levels(model, data, levels, bool(getattr(objective, "wants_multi_hot", False)))
    n = len(data)
    bs = int(cfg.batch_size)
    if n < bs:
        raise ValueError(f"train.batch_size={bs} is larger than the training set ({n} samples)")
    if bs % world:
        raise ValueError(f"train.batch_size={bs} must be divisible by the number of processes ({world}): each rank "
                         f"takes batch_size / world_size rows of every global batch")
    local_bs = bs // world
    every = int(cfg.get("checkpoint_every_steps", 0) or 0)
    if every < 0:
        raise ValueError(f"train.checkpoint_every_steps={every} must be >= 0 (0: only at epoch ends)")
    steps_per_epoch = n // bs
    total = steps_per_epoch * int(cfg.epochs)
    warmup = int(round(float(cfg.warmup_epochs) * steps_per_epoch))

    model.to(device)
    optimizer = make_optimizer(model, cfg)
    scheduler = make_schedule(optimizer, warmup, total)
    if total < 0:
        raise ValueError(f"train.epochs={cfg.epochs} plans {total} optimiser steps; a cell is done only when it ran "
                         f"the steps it planned (train.epochs >= 1)")
    step, history, elapsed = 0, [], 0.0
    if ckpt_path.exists():
        resumed = resume(ckpt_path, device, total, model, optimizer, scheduler, on_bad_checkpoint)
        if resumed is not None:
            step, history, elapsed = resumed
            log.info("resumed from %s at step %d/%d", ckpt_path, step, total)

    net: torch.nn.Module = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        log.info("distributed: rank %d of %d, %d rows of every global batch of %d", rank, world, local_bs, bs)

    stepper = TrainStep(model, net, objective, optimizer, scheduler, grad_clip=float(cfg.grad_clip or 0.0),
                        device=device, world=world)
    stepper.start_at(step)
    t0 = time.perf_counter()

    def save(reason: str) -> None:
        stepper.check(step)  # never checkpoint non-finite weights (all ranks take part under torch.distributed)
        if not writer:
            return
        save_checkpoint(
            ckpt_path,
            model=model.state_dict(),
            optimizer=optimizer.state_dict(),
            scheduler=scheduler.state_dict(),
            step=step,
            history=history,
            elapsed=elapsed + time.perf_counter() - t0,
            rng=_rng_state(),
            data_position=data_position(step, steps_per_epoch, bs),
        )
        _write_history(cell_dir / "history.csv", history)
        log.debug("checkpoint at step %d (%s)", step, reason)

    model.train()
    log_every = max(1, int(cfg.log_every))
    bar = tqdm(total=total, initial=step, desc="pretrain", leave=False, dynamic_ncols=True, disable=True if not writer else None)
    last_out: dict[str, float] = {}
    last_history_write = time.perf_counter()
    batches = train_batches(data, model.resolution, _augment_name(cfg.get("augment", "flip")), seed, bs, total,
                            start_step=step, rank=rank, world=world, device=device)
    feed = iter(batches)
    PREEMPTION.active = True
    try:
        while step < total:
            epoch, within = divmod(step, steps_per_epoch)
            for b in range(within, steps_per_epoch):
                idx, x = next(feed)  # this rank's rows of the global batch, decoded and augmented by the workers
                pixels = model.preprocess(x.to(device, non_blocking=True))
                tokens = {g: batching[g].batch_tokens(idx).to(device, non_blocking=True)
                          for g in levels}
                labels = {g: batching[g].labels[idx] for g in levels}  # on the host: targets are built there
                log_now = (step + 1) % log_every == 0 or step + 1 == total or b == steps_per_epoch - 1
                out = stepper(pixels, tokens, labels, timed=log_now)
                step += 1
                bar.update(1)
                if log_now:  # the only place the host reads device values
                    stepper.check(step)  # a non-finite loss term / gradient norm fails the cell, naming it
                    last_out = {k: float(v.detach()) for k, v in out.items() if torch.is_tensor(v) and v.numel() == 1}
                    row = {"step": step, "epoch": epoch + (b + 1) / steps_per_epoch, "lr": scheduler.get_last_lr()[0],
                           "logit_scale": float(model.logit_scale().detach()), **last_out}
                    history.append(row)
                    bar.set_postfix(loss=f"{last_out['loss']:.4f}")
                    if writer and time.perf_counter() - last_history_write > HISTORY_WRITE_S:
                        _write_history(cell_dir / "history.csv", history)  # progress for bench.status
                        last_history_write = time.perf_counter()
                # under torch.distributed the flag is agreed by an all-reduce: only at logging steps
                stop = _any_rank(PREEMPTION.requested, device, world) if (world == 1 or log_now) else False
                if stop:
                    save("preemption")
                    log.warning("preemption/timeout signal: checkpoint saved at step %d/%d; requeueing", step, total)
                    if world > 1:
                        torch.distributed.barrier()
                    PREEMPTION.active = False
                    PREEMPTION.fire()
                if b == steps_per_epoch - 1:
                    break  # the epoch-end checkpoint below
                if every and step % every == 0:
                    save("every %d steps" % every)
            save("epoch end")
            log.info("epoch %d/%d done: step %d, loss %.4f, %.1fs", epoch + 1, int(cfg.epochs), step,
                     last_out.get("loss", float("nan")), elapsed + time.perf_counter() - t0)
    finally:
        PREEMPTION.active = False
        bar.close()
        del feed  # stops the loader's workers
    if _any_rank(PREEMPTION.requested, device, world):  # a signal that came after the last step's check
        PREEMPTION.fire()
    stepper.check(step)
    if step != total:  # a cell is done only when it ran the steps it planned
        raise RuntimeError(f"training stopped at step {step} of the {total} planned; the cell is not done")
    obj_s, obj_n = stepper.objective_seconds()
    wall = elapsed + time.perf_counter() - t0
    seen = total * bs
    summary = {
        "train/steps": step,
        "train/epochs": int(cfg.epochs),
        "train/wall_time_s": wall,
        "train/images_per_s": seen / wall if wall > 0 else float("nan"),
        "train/seconds_per_epoch": wall / max(1, int(cfg.epochs)),
        "train/final_logit_scale": float(model.logit_scale().detach()),
        # the objective's forward, timed (CUDA events on a GPU) on the logging steps of this process
        "train/objective_forward_s_per_step": obj_s / obj_n if obj_n else float("nan"),
        # host time this process spent waiting for the loader (the rest of the wall time is the steps)
        "train/data_wait_s": batches.wait_s,
        "train/data_workers": batches.workers,
    }
    if batches.skipped:
        summary["train/bad_images_skipped"] = batches.skipped
    if history:
        summary.update({f"train/final_{k}": v for k, v in history[-1].items() if k not in ("step", "epoch", "lr", "logit_scale")})
    return summary


def _write_history(path: Path, rows: list[dict]) -> None:
    import pandas as pd

    write_text(path, pd.DataFrame(rows).to_csv(index=False))
