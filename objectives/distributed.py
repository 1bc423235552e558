"""Gathering features and labels under ``torch.distributed``.

Every objective calls :meth:`DistContext.current` once per forward. Outside an initialised process group (or
with one process) the context is the identity and nothing is communicated.

Under an initialised group of ``W`` processes (equal local batches of ``B`` rows on every rank):

- features are all-gathered along the batch dimension. With ``gather_with_grad=True`` (default) through
  ``torch.distributed.nn.functional.all_gather``, whose backward sums the incoming gradients over ranks
  (reduce-scatter), so every rank's features receive the gradient of every rank's loss. With
  ``gather_with_grad=False`` the gather is a plain ``all_gather`` and, unless ``local_loss`` is set, the
  rank's own slot is replaced by the live local tensor (open_clip's behaviour): the value is unchanged, the
  gradient only holds the local partial derivative;
- labels are all-gathered without gradient, where they are: labels on the host (how the training loop hands
  them over) through a host (gloo) group, so that gathering them never waits for the device (with an NCCL
  default group, a gloo group over the same ranks is made once, at the first gather); labels on a device
  through the default group;
- the rows of rank ``r`` are the global rows ``r * B .. r * B + B - 1`` (:attr:`DistContext.offset`), which
  is how targets find a rank's positives among the gathered columns (the offset bug of solo-learn #206 cannot
  happen because targets are always computed from gathered labels and global indices).

What is guaranteed (tested with two gloo processes in ``tests/objectives/test_distributed.py``):

- every returned value (``loss`` and each term) equals, on every rank, the single-process value on the
  concatenated batch (rank 0's rows first), with and without ``local_loss``;
- with ``gather_with_grad=True`` the gradient reaching rank ``r``'s local features is ``W`` times the
  single-process gradient of those rows, and the gradient of a replicated parameter such as ``logit_scale``
  averaged over ranks equals the single-process gradient. Since DDP averages parameter gradients over ranks,
  parameter gradients after DDP's averaging equal the single-process ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

__all__ = ["DistContext"]


def _all_gather_with_grad(x: Tensor, group: Any) -> Tensor:
    """All-gather along dim 0 with a backward that sums the gradients over ranks (reduce-scatter).

    Uses the functional collectives (``all_gather_single_autograd``) when this torch has them, else the
    older ``torch.distributed.nn.functional.all_gather``."""
    try:
        from torch.distributed import _functional_collectives as fc

        gather = getattr(fc, "all_gather_single_autograd", None) or fc.all_gather_tensor_autograd
    except (ImportError, AttributeError):  # pragma: no cover - old torch
        gather = None
    if gather is not None:
        out = gather(x, 0, group)
        wait = getattr(out, "wait", None)
        return wait() if callable(wait) else out
    from torch.distributed.nn.functional import all_gather  # pragma: no cover - old torch

    return torch.cat(list(all_gather(x, group=group)), dim=0)  # pragma: no cover


def _dist_ready() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


_HOST_GROUPS: dict = {}


def _host_group(group: Any) -> Any:
    """A process group that gathers host tensors: ``group`` itself when its backend does, else a gloo group
    over the same ranks (made once; every rank reaches the first gather at the same call)."""
    backend = str(torch.distributed.get_backend(group)).lower()
    if "gloo" in backend:
        return group
    key = id(group) if group is not None else None
    if key not in _HOST_GROUPS:
        ranks = None if group is None else torch.distributed.get_process_group_ranks(group)
        _HOST_GROUPS[key] = torch.distributed.new_group(ranks=ranks, backend="gloo")
    return _HOST_GROUPS[key]


@dataclass
class DistContext:
    """Where this process sits in the group, and how to gather (see the module docstring)."""

    world_size: int = 1
    rank: int = 0
    local_loss: bool = False
    gather_with_grad: bool = True
    group: Any = None

    @classmethod
    def current(cls, local_loss: bool = False, gather_with_grad: bool = True, group: Any = None) -> DistContext:
        if not _dist_ready():
            return cls(local_loss=local_loss, gather_with_grad=gather_with_grad)
        world = torch.distributed.get_world_size(group)
        rank = torch.distributed.get_rank(group)
        return cls(world, rank, local_loss and world > 1, gather_with_grad, group)

    @property
    def active(self) -> bool:
        """True when there is more than one process to gather from."""
        return self.world_size > 1

    @property
    def local(self) -> bool:
        """True when each rank computes only its own rows against the gathered columns."""
        return self.active and self.local_loss

    def offset(self, local_batch: int) -> int:
        """Global index of this rank's first row."""
        return self.rank * local_batch

    def gather_features(self, x: Tensor) -> Tensor:
        """All-gather ``x`` [B, D] into [W*B, D] along the batch (see the module docstring for gradients)."""
        if not self.active:
            return x
        x = x.contiguous()
        if self.gather_with_grad:
            return _all_gather_with_grad(x, self.group if self.group is not None else torch.distributed.group.WORLD)
        parts = [torch.empty_like(x) for _ in range(self.world_size)]
        torch.distributed.all_gather(parts, x.detach(), group=self.group)
        if not self.local_loss:
            parts[self.rank] = x
        return torch.cat(parts, dim=0)

    def gather_labels(self, y: Tensor) -> Tensor:
        """All-gather labels (ids [B] or multi-hot [B, C]) without gradient."""
        if not self.active:
            return y
        send = y.detach().contiguous()
        if send.dtype == torch.bool:
            send = send.to(torch.uint8)
        parts = [torch.empty_like(send) for _ in range(self.world_size)]
        group = _host_group(self.group) if send.device.type == "cpu" else self.group
        torch.distributed.all_gather(parts, send, group=group)
        out = torch.cat(parts, dim=0)
        return out.to(y.dtype) if out.dtype != y.dtype else out

    def all_reduce_sum(self, x: Tensor) -> Tensor:
        """Sum of a (detached) tensor over ranks."""
        out = x.detach().clone()
        if self.active:
            torch.distributed.all_reduce(out, op=torch.distributed.ReduceOp.SUM, group=self.group)
        return out

    def globalise(self, terms: dict[str, Tensor]) -> dict[str, Tensor]:
        """Local-loss mode: turn per-rank partial sums (each already divided by the global normaliser, so that
        they add up over ranks to the global value) into terms whose value is the global value on every rank
        and whose gradient is ``world_size`` times the partial's gradient (open_clip's per-rank local mean
        has the same gradient). One all-reduce of the stacked terms."""
        if not self.local or not terms:
            return terms
        names = list(terms)
        stacked = torch.stack([terms[k].reshape(()) for k in names])
        total = self.all_reduce_sum(stacked)
        w = float(self.world_size)
        out = {}
        for i, k in enumerate(names):
            scaled = terms[k] * w
            out[k] = scaled + (total[i] - scaled.detach())
        return out
