"""Soft-target CLIP (UniCL / FLAIR / SupCon-style "mean over positives").

Per level g (option ``levels``, default every level of the batch), with the row-normalised co-occurrence
``W`` (``target`` ``exact`` (default) or ``jaccard``):

    L_g = 1/2 [CE(S^g, W^g) + CE(S^g^T, W^g)],   L = sum_g L_g

``CE(S^T, W)`` gives text j the target row ``W_j.`` over the images (``W`` is symmetric for exact targets,
not for Jaccard ones). With all ids distinct, ``W = I`` and this is ``clip``. ``reference`` is the formula;
``compute`` (``impl=fast``) the engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from torch import Tensor

from . import functional as fn
from .base import Batch, CommonOptions, Objective, register, safe_div
from .options import LEVELS_HELP, TARGET_HELP
from .plan import LevelRequest

__all__ = ["SoftClip"]


@dataclass(frozen=True)
class SoftClipOptions(CommonOptions):
    levels: tuple[str, ...] | None = field(default=None, metadata=LEVELS_HELP)
    target: Literal["exact", "jaccard"] = field(default="exact", metadata=TARGET_HELP)

    def check(self) -> None:
        super().check()
        self.check_levels("levels", self.levels)


@register("soft_clip", "unicl", "flair")
class SoftClip(Objective):
    """``L = sum_g 1/2 [CE(S^g, W^g) + CE(S^g^T, W^g)]``. Outputs: ``"soft_clip/<level>"``."""

    Options = SoftClipOptions

    @property
    def wants_multi_hot(self) -> bool:
        return self.opt.target == "jaccard"

    def levels_used(self, available_levels) -> list[str]:
        return list(self.opt.levels) if self.opt.levels is not None else list(available_levels)

    def reference(self, batch: Batch) -> dict[str, Tensor]:
        out = {}
        for g in batch.levels:
            keep = batch.present(g)
            S = batch.logits(g, keep)
            W = fn.row_normalise(fn.cooccurrence(batch.label_rows(g, keep), self.opt.target, S.dtype))
            out[f"soft_clip/{g}"] = 0.5 * (fn.soft_ce(S, W) + fn.soft_ce(S.T, W))
        return out

    def compute(self, batch: Batch) -> dict[str, Tensor]:
        req = {g: LevelRequest(batch.targets(g, self.opt.target), row_ce=True, col_ce=True) for g in batch.levels}
        sums = batch.sums(req)
        return {
            f"soft_clip/{g}": safe_div(sums.get((g, "row_ce")) + sums.get((g, "col_ce")), 2 * sums.n[g])
            for g in batch.levels
        }
