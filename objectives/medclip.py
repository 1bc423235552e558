"""MedCLIP's semantic matching loss.

On one level g (option ``level``, default the batch's first), from multi-hot labels M [B, C]:

    T = softmax_row(M M^T),   L = 1/2 [CE(S, T) + CE(S^T, T)]

(``T`` is the row softmax of the label dot products, temperature 1; ``CE(S^T, T)`` gives text j the target
row ``T_j.``). Needs multi-hot labels; MedCLIP's uncertain ``-1`` entries must be mapped to 0 or 1 first,
because a negative entry marks a missing text in this project. ``reference`` is the formula; ``compute``
(``impl=fast``) the engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor

from . import functional as fn
from .base import Batch, CommonOptions, Objective, register, safe_div
from .options import LEVEL_HELP
from .plan import LevelRequest

__all__ = ["MedClip"]


@dataclass(frozen=True)
class MedClipOptions(CommonOptions):
    level: str | None = field(default=None, metadata=LEVEL_HELP)


@register("medclip")
class MedClip(Objective):
    """``L = 1/2 [CE(S, T) + CE(S^T, T)]``, ``T = softmax_row(M M^T)``. Output: ``"medclip/<level>"``."""

    Options = MedClipOptions

    @property
    def wants_multi_hot(self) -> bool:
        return True

    def levels_used(self, available_levels) -> list[str]:
        return [self.opt.level] if self.opt.level is not None else super().levels_used(available_levels)

    def reference(self, batch: Batch) -> dict[str, Tensor]:
        g = batch.levels[0]
        keep = batch.present(g)
        S = batch.logits(g, keep)
        T = fn.medclip_target(batch.label_rows(g, keep), S.dtype)
        return {f"medclip/{g}": 0.5 * (fn.soft_ce(S, T) + fn.soft_ce(S.T, T))}

    def compute(self, batch: Batch) -> dict[str, Tensor]:
        g = batch.levels[0]
        sums = batch.sums({g: LevelRequest(batch.targets(g, "medclip"), row_ce=True, col_ce=True)})
        return {f"medclip/{g}": safe_div(sums.get((g, "row_ce")) + sums.get((g, "col_ce")), 2 * sums.n[g])}
