"""Label forms and the missing-text mask: ids [B] or multi-hot [B, C]; a negative id (or a row holding a
negative value) marks a sample whose text at that level is missing (see ``objectives/targets.py``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .errors import ObjectiveInputError

__all__ = ["ids_from_multi_hot", "is_multi_hot", "present_mask", "to_device"]


def is_multi_hot(labels: Tensor) -> bool:
    """True for multi-hot labels [B, C], False for ids [B]."""
    if labels.dim() == 2:
        return True
    if labels.dim() == 1:
        return False
    raise ObjectiveInputError(f"labels must be ids [B] or multi-hot [B, C]; got shape {tuple(labels.shape)}")


def present_mask(labels: Tensor | None, batch: int | None = None) -> Tensor:
    """Bool [B]: True where the sample has a text at this level.

    ids: ``id >= 0``; multi-hot: no negative entry in the row. ``labels=None`` means every text is present
    (then ``batch`` gives B)."""
    if labels is None:
        if batch is None:
            raise ValueError("present_mask(None) needs the batch size")
        return torch.ones(batch, dtype=torch.bool)
    if is_multi_hot(labels):
        if labels.dtype == torch.bool or not (labels.dtype.is_floating_point or labels.dtype.is_signed):
            return torch.ones(labels.shape[0], dtype=torch.bool, device=labels.device)
        return ~(labels < 0).any(dim=1)
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise ObjectiveInputError(f"ids must be an integer tensor [B]; got dtype {labels.dtype}")
    return labels >= 0


def ids_from_multi_hot(labels: Tensor) -> Tensor:
    """int64 [B]: equal ids iff equal multi-hot rows; -1 for missing rows (:func:`present_mask`)."""
    present = present_mask(labels)
    ids = torch.full((labels.shape[0],), -1, dtype=torch.long, device=labels.device)
    if bool(present.any()):
        _, inv = torch.unique(labels[present], dim=0, return_inverse=True)
        ids[present] = inv
    return ids


def to_device(x: Tensor | None, device: torch.device) -> Tensor | None:
    """A host tensor on ``device`` without a host synchronisation (``non_blocking``)."""
    return x if x is None or x.device == device else x.to(device, non_blocking=True)
