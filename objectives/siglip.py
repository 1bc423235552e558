"""SigLIP: point-wise sigmoid loss.

    S = s X Y^T + b,   L = -(1/B) sum_ij log sigmoid(z_ij S_ij),   z = 2Y - 1

with ``Y = I`` (open_clip's ``SigLipLoss``), or with ``use_labels=true`` the binary co-occurrence
``Y = 1[C > 0]`` (``target`` ``exact`` or ``jaccard``). The model provides the bias ``b``
(``needs_logit_bias``; init s = 10, b = -10); ``logit_bias=None`` computes without a bias.

``reference`` is the formula; ``compute`` (``impl=fast``) asks the engine for
``sum_ij [softplus(S_ij) - Y_ij S_ij]`` (the same sum).
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

__all__ = ["SigLip"]


@dataclass(frozen=True)
class SigLipOptions(CommonOptions):
    level: str | None = field(default=None, metadata=LEVEL_HELP)
    use_labels: bool = field(default=False, metadata={"help": (
        "positives from labels (equal texts / overlapping label sets) instead of the diagonal")})
    target: Literal["exact", "jaccard"] = field(default="exact", metadata=TARGET_HELP)


@register("siglip")
class SigLip(Objective):
    """``L = -(1/B) sum_ij log sigmoid(z_ij S_ij)``. Output: ``"siglip/<level>"``."""

    Options = SigLipOptions
    needs_logit_bias = True
    init_logit_scale = 10.0
    init_logit_bias = -10.0

    @property
    def wants_multi_hot(self) -> bool:
        return self.opt.use_labels and self.opt.target == "jaccard"

    def levels_used(self, available_levels) -> list[str]:
        return [self.opt.level] if self.opt.level is not None else super().levels_used(available_levels)

    def needs_labels(self, level: str) -> bool:
        return self.opt.use_labels

    def reference(self, batch: Batch) -> dict[str, Tensor]:
        g = batch.levels[0]
        keep = batch.present(g)
        S = batch.logits(g, keep, bias=True)
        if self.opt.use_labels:
            Y = fn.binary(fn.cooccurrence(batch.label_rows(g, keep), self.opt.target, S.dtype))
        else:
            Y = torch.eye(S.shape[0], dtype=S.dtype, device=S.device)
        return {f"siglip/{g}": fn.sigmoid_loss(S, Y)}

    def compute(self, batch: Batch) -> dict[str, Tensor]:
        g = batch.levels[0]
        kind = self.opt.target if self.opt.use_labels else "identity"
        sums = batch.sums({g: LevelRequest(batch.targets(g, kind), pointwise=True)}, use_bias=True)
        return {f"siglip/{g}": safe_div(sums.get((g, "pw")), sums.n[g])}
