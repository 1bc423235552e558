"""The batch as the objectives see it: checked, upcast, gathered under torch.distributed, labels on the host.

:func:`check_inputs` checks a call against the contract (shapes, levels, label forms); :func:`as_scalar` turns
``logit_scale`` / ``logit_bias`` into 0-dim tensors of the compute dtype; :class:`Batch` holds the features
(this rank's and, under torch.distributed, the gathered ones), the gathered labels **on the host** and the
targets built from them (``objectives/targets.py``), and gives the fast path its slot sums
(:meth:`Batch.sums`) and the reference implementations their dense logits (:meth:`Batch.logits`).
"""

from __future__ import annotations

import contextlib
import numbers
from collections.abc import Mapping

import torch
from torch import Tensor

from . import functional as fn
from .distributed import DistContext
from .errors import ObjectiveConfigError, ObjectiveInputError
from .plan import LevelRequest, Sums, level_sums
from .targets import LevelTargets, present_mask, to_device

__all__ = ["Batch", "as_scalar", "check_inputs", "no_autocast"]


def no_autocast(device: torch.device):
    """Autocast off on ``device`` (the objectives compute in fp32 or wider)."""
    try:
        if torch.is_autocast_enabled(device.type):
            return torch.autocast(device_type=device.type, enabled=False)
    except (TypeError, RuntimeError):  # pragma: no cover - older torch / exotic devices
        pass
    return contextlib.nullcontext()


def as_scalar(who: str, x: Tensor | float, dtype: torch.dtype, device: torch.device, what: str) -> Tensor:
    """A 0-dim tensor of ``dtype`` on ``device`` (a Python number is filled there: no host-to-device copy)."""
    if isinstance(x, Tensor):
        if x.numel() != 1:
            raise ObjectiveInputError(f"{who}: {what} must be a scalar, got shape {tuple(x.shape)}")
        return x.reshape(()).to(device=device, dtype=dtype, non_blocking=True)
    if isinstance(x, numbers.Real) and not isinstance(x, bool):
        return torch.full((), float(x), dtype=dtype, device=device)
    raise ObjectiveInputError(f"{who}: {what} must be a scalar tensor or a number, got {type(x).__name__}")


def check_inputs(objective, image: Tensor, texts: Mapping[str, Tensor], labels: dict, levels: list[str]) -> None:
    """Raise :class:`ObjectiveInputError` (or :class:`ObjectiveConfigError` for a level the options name
    and the batch lacks) for a call that does not fit the contract."""
    who = f"objective {objective.called_as!r}"
    if not isinstance(image, Tensor) or image.dim() != 2:
        raise ObjectiveInputError(f"{who}: image must be a [B, D] tensor, got {getattr(image, 'shape', type(image))}")
    if not image.dtype.is_floating_point:
        raise ObjectiveInputError(f"{who}: image features must be floating point, got {image.dtype}")
    b, d = image.shape
    for g in levels:
        if g not in texts:
            raise ObjectiveConfigError(objective.called_as, "levels", f"level {g!r} is not in the batch (it has "
                                       f"{list(texts)})", allowed=list(texts))
        t = texts[g]
        if not isinstance(t, Tensor) or tuple(t.shape) != (b, d):
            got = tuple(getattr(t, "shape", ()))
            raise ObjectiveInputError(f"{who}: texts[{g!r}] must be [{b}, {d}] like the image features, got {got}")
        if not t.dtype.is_floating_point:
            raise ObjectiveInputError(f"{who}: texts[{g!r}] must be floating point, got {t.dtype}")
        y = labels.get(g)
        if y is None:
            if objective.needs_labels(g):
                raise ObjectiveInputError(f"{who}: needs labels for level {g!r}")
            continue
        if not isinstance(y, Tensor) or y.dim() not in (1, 2) or y.shape[0] != b:
            got = tuple(getattr(y, "shape", ()))
            raise ObjectiveInputError(f"{who}: labels[{g!r}] must be ids [{b}] or multi-hot [{b}, C], got {got}")
        if objective.wants_multi_hot and y.dim() == 1:
            raise ObjectiveInputError(
                f"{who}: needs multi-hot labels [B, C] at level {g!r} (options {objective.opt}); got ids [B]. "
                "Give multi-hot labels (the training loop does when objective.wants_multi_hot is true)."
            )


class Batch:
    """A checked, upcast and (under torch.distributed) gathered batch.

    ``image``/``texts``: this rank's features; ``image_all``/``texts_all``: gathered (the same tensors in one
    process); ``labels``: gathered labels per used level, on the host (None when the caller gave none; labels
    given on a device are copied to the host here: one synchronisation, which the training loop avoids by
    handing them over on the host); ``scale``, ``bias``: 0-dim tensors in the compute dtype."""

    def __init__(self, objective, levels: list[str], image: Tensor, texts: dict[str, Tensor],
                 labels: dict[str, Tensor | None], scale: Tensor, bias: Tensor | None, dist: DistContext):
        self.objective = objective
        self.levels = levels
        self.image, self.texts = image, texts
        self.scale, self.bias = scale, bias
        self.dist = dist
        self.dtype, self.device = image.dtype, image.device
        self.image_all = dist.gather_features(image)
        self.texts_all = {g: dist.gather_features(t) for g, t in texts.items()}
        self.labels = {g: (dist.gather_labels(y).cpu() if y is not None else None) for g, y in labels.items()}
        self.n_total = self.image_all.shape[0]
        self._targets: dict[tuple, LevelTargets] = {}

    # -- the fast path ----------------------------------------------------------------------------------
    def targets(self, level: str, kind: str, normalise: bool = True) -> LevelTargets:
        """Targets of ``kind`` at ``level`` over the gathered batch (cached per call)."""
        key = (level, kind, normalise)
        if key not in self._targets:
            self._targets[key] = LevelTargets.build(kind, self.labels.get(level), self.n_total, normalise=normalise,
                                                    dtype=self.dtype, device=self.device)
        return self._targets[key]

    def sums(self, requests: dict[str, LevelRequest], *, use_bias: bool = False, cross: str | None = None,
             cross_levels: tuple[str, ...] = ()) -> Sums:
        """The engine's slot sums for ``requests`` (see ``objectives/plan.py``)."""
        return level_sums(self.image, self.texts, self.image_all, self.texts_all, requests, self.scale,
                          self.bias if use_bias else None, self.dist, chunk_size=self.objective.opt.chunk_size,
                          cross=cross, cross_levels=cross_levels)

    # -- the reference implementations ----------------------------------------------------------------------
    def present(self, *levels: str) -> Tensor | None:
        """Host indices of the samples whose texts are present at every one of ``levels`` (None: all)."""
        keep = torch.ones(self.n_total, dtype=torch.bool)
        for g in levels:
            y = self.labels.get(g)
            if y is not None:
                keep &= present_mask(y)
        return None if bool(keep.all()) else keep.nonzero().squeeze(1)

    def count(self, keep: Tensor | None) -> int:
        return self.n_total if keep is None else int(keep.shape[0])

    def take(self, x: Tensor, keep: Tensor | None) -> Tensor:
        """The rows ``keep`` of ``x`` (a device tensor or host labels), on the features' device."""
        x = x if keep is None else x.index_select(0, to_device(keep, x.device))
        return to_device(x, self.device)

    def logits(self, level: str, keep: Tensor | None = None, *, bias: bool = False) -> Tensor:
        """``S = s X (Y^level)^T (+ b)`` over the samples ``keep`` (rows and columns), gathered features."""
        return fn.logits(self.take(self.image_all, keep), self.take(self.texts_all[level], keep), self.scale,
                         self.bias if bias else None)

    def label_rows(self, level: str, keep: Tensor | None) -> Tensor:
        """The labels at ``level`` of the samples ``keep``, on the features' device."""
        return self.take(self.labels[level], keep)
