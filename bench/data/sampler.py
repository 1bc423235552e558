"""Which samples each rank reads at each optimiser step.

Pretraining (:class:`GlobalBatchSampler`): epoch ``e`` visits the training samples in the order
``torch.randperm(n)`` drawn from ``seed * 1000003 + e``, cut into global batches of ``batch_size`` (the last
incomplete batch is dropped). Global step ``s`` is batch ``s mod steps_per_epoch`` of epoch
``s div steps_per_epoch``; rank ``r`` of ``W`` takes rows ``r * B/W .. (r+1) * B/W - 1`` of it. The position
in the data is therefore a function of the step alone: a run resumed at step ``s`` continues with exactly
the samples an uninterrupted run would have seen next, on every rank. Each item is ``(epoch, index)``: the
epoch seeds the sample's augmentation (:func:`bench.data.transforms.sample_seed`).

Evaluation (:class:`SequentialBatches`): ``0..n-1`` in order, in blocks of ``batch_size``.
"""

from __future__ import annotations

from typing import Iterator

import torch


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The global order of epoch ``epoch`` (int64 ``[n]``)."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1000003 + epoch))


def data_position(step: int, steps_per_epoch: int, batch_size: int) -> dict[str, int]:
    """Where global step ``step`` starts in the data (saved in checkpoints; derived from the step)."""
    epoch, batch = divmod(int(step), max(1, int(steps_per_epoch)))
    return {"epoch": epoch, "batch": batch, "samples_seen": int(step) * int(batch_size)}


class GlobalBatchSampler:
    """This rank's rows of global batches ``start_step .. total_steps - 1`` (a batch sampler for
    ``torch.utils.data.DataLoader``; see the module docstring)."""

    def __init__(self, n: int, batch_size: int, seed: int, total_steps: int, start_step: int = 0,
                 rank: int = 0, world: int = 1):
        if batch_size % world:
            raise ValueError(f"batch size {batch_size} must be divisible by the number of processes ({world})")
        if n < batch_size:
            raise ValueError(f"batch size {batch_size} is larger than the dataset ({n} samples)")
        self.n, self.batch_size, self.seed = int(n), int(batch_size), int(seed)
        self.rank, self.world = int(rank), int(world)
        self.local = self.batch_size // self.world
        self.steps_per_epoch = self.n // self.batch_size
        self.start, self.total = int(start_step), int(total_steps)

    def __len__(self) -> int:
        return max(0, self.total - self.start)

    def global_batch(self, step: int) -> torch.Tensor:
        epoch, b = divmod(step, self.steps_per_epoch)
        return epoch_order(self.n, self.seed, epoch)[b * self.batch_size:(b + 1) * self.batch_size]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        order, order_epoch = None, -1
        lo, hi = self.rank * self.local, (self.rank + 1) * self.local
        for step in range(self.start, self.total):
            epoch, b = divmod(step, self.steps_per_epoch)
            if epoch != order_epoch:
                order, order_epoch = epoch_order(self.n, self.seed, epoch), epoch
            rows = order[b * self.batch_size:(b + 1) * self.batch_size][lo:hi]
            yield [(epoch, i) for i in rows.tolist()]


class SequentialBatches:
    """``[0, b), [b, 2b), ...`` over ``range(n)`` as ``(0, index)`` items (no augmentation epoch)."""

    def __init__(self, n: int, batch_size: int):
        self.n, self.batch_size = int(n), max(1, int(batch_size))

    def __len__(self) -> int:
        return (self.n + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for start in range(0, self.n, self.batch_size):
            yield [(0, i) for i in range(start, min(start + self.batch_size, self.n))]
