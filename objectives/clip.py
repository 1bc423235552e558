"""Instance-level and multi-positive CLIP.

``clip`` (open_clip's ``ClipLoss``), on one level ``g`` (option ``level``, default the batch's first level):

    S = s X Y^T,   L = 1/2 [CE(S, I) + CE(S^T, I)],   CE(S, T) = -(1/B) sum_i sum_j T_ij log softmax_j(S_i.)

Labels are optional: when given, a negative id (or a multi-hot row with a negative entry) marks a missing
text and the sample takes no part (B = number of present samples).

``clip_multipositive`` (the released MGLL ``CLIPBaseline``): the same with the UNnormalised co-occurrence
``C`` (``target`` ``exact`` (default) or ``jaccard``) as target, ``L = 1/2 [CE(S, C) + CE(S^T, C)]``, so a
row with c positives weighs c times ``-mean log p`` of its positives.

``reference`` is the formula above in plain torch; ``compute`` (the default, ``impl=fast``) asks the engine
for the same two sums from one matrix product (the text -> image direction reads the same matrix by columns).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

from . import functional as fn
from .base import Batch, CommonOptions, Objective, register, safe_div
from .options import LEVEL_HELP, TARGET_HELP
from .plan import LevelRequest

__all__ = ["Clip", "ClipMultiPositive"]


@dataclass(frozen=True)
class ClipOptions(CommonOptions):
    level: str | None = field(default=None, metadata=LEVEL_HELP)


class _OneLevel(Objective):
    def levels_used(self, available_levels) -> list[str]:
        return [self.opt.level] if self.opt.level is not None else super().levels_used(available_levels)


@register("clip")
class Clip(_OneLevel):
    """``L = 1/2 [CE(S, I) + CE(S^T, I)]`` on one level. Output: ``"clip/<level>"``."""

    Options = ClipOptions

    def needs_labels(self, level: str) -> bool:
        return False

    def reference(self, batch: Batch) -> dict[str, Tensor]:
        g = batch.levels[0]
        keep = batch.present(g)
        S = batch.logits(g, keep)
        I = torch.eye(S.shape[0], dtype=S.dtype, device=S.device)
        return {f"clip/{g}": 0.5 * (fn.soft_ce(S, I) + fn.soft_ce(S.T, I))}

    def compute(self, batch: Batch) -> dict[str, Tensor]:
        g = batch.levels[0]
        sums = batch.sums({g: LevelRequest(batch.targets(g, "identity"), row_ce=True, col_ce=True)})
        return {f"clip/{g}": safe_div(sums.get((g, "row_ce")) + sums.get((g, "col_ce")), 2 * sums.n[g])}


@dataclass(frozen=True)
class MultiPositiveOptions(CommonOptions):
    level: str | None = field(default=None, metadata=LEVEL_HELP)
    target: Literal["exact", "jaccard"] = field(default="exact", metadata=TARGET_HELP)


@register("clip_multipositive")
class ClipMultiPositive(_OneLevel):
    """``L = 1/2 [CE(S, C) + CE(S^T, C)]`` with the unnormalised co-occurrence C. Output:
    ``"clip_multipositive/<level>"``."""

    Options = MultiPositiveOptions

    @property
    def wants_multi_hot(self) -> bool:
        return self.opt.target == "jaccard"

    def reference(self, batch: Batch) -> dict[str, Tensor]:
        g = batch.levels[0]
        keep = batch.present(g)
        S = batch.logits(g, keep)
        C = fn.cooccurrence(batch.label_rows(g, keep), self.opt.target, S.dtype)
        return {f"clip_multipositive/{g}": 0.5 * (fn.soft_ce(S, C) + fn.soft_ce(S.T, C))}

    def compute(self, batch: Batch) -> dict[str, Tensor]:
        g = batch.levels[0]
        t = batch.targets(g, self.opt.target, normalise=False)
        sums = batch.sums({g: LevelRequest(t, row_ce=True, col_ce=True)})
        return {f"clip_multipositive/{g}": safe_div(sums.get((g, "row_ce")) + sums.get((g, "col_ce")), 2 * sums.n[g])}
