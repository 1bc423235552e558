"""Soft-target CLIP (UniCL / FLAIR / SupCon-style "mean over positives").

Per level g (option ``levels``, default every level of the batch), with the row-normalised co-occurrence
``W`` (``target`` ``exact`` (default) or ``jaccard``):

    L_g = 1/2 [CE(S^g, W^g) + CE(S^g^T, W^g)],   L = sum_g L_g

``CE(S^T, W)`` gives text j the target row ``W_j.`` over the images (``W`` is symmetric for exact targets,
not for Jaccard ones). With all ids distinct, ``W = I`` and this is ``clip``.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from .base import Batch, CommonOptions, Objective, check_choice, check_levels, register, safe_div
from .plan import LevelRequest

__all__ = ["SoftClip"]


@dataclass(frozen=True)
class SoftClipOptions(CommonOptions):
    #: levels taking part (None: every level of the batch)
    levels: tuple[str, ...] | None = None
    target: str = "exact"

    def check(self, objective: str) -> None:
        check_choice(objective, "target", self.target, ("exact", "jaccard"))
        check_levels(objective, "levels", self.levels)


@register("soft_clip", "unicl", "flair")
class SoftClip(Objective):
    """``L = sum_g 1/2 [CE(S^g, W^g) + CE(S^g^T, W^g)]``. Outputs: ``"soft_clip/<level>"``."""

    Options = SoftClipOptions

    @property
    def wants_multi_hot(self) -> bool:
        return self.opt.target == "jaccard"

    def levels_used(self, available_levels) -> list[str]:
        return list(self.opt.levels) if self.opt.levels is not None else list(available_levels)

    def compute(self, batch: Batch) -> dict[str, Tensor]:
        req = {g: LevelRequest(batch.targets(g, self.opt.target), row_ce=True, col_ce=True) for g in batch.levels}
        sums = batch.sums(req)
        return {
            f"soft_clip/{g}": safe_div(sums.get((g, "row_ce")) + sums.get((g, "col_ce")), 2 * sums.n[g])
            for g in batch.levels
        }
