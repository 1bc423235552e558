"""MGLL as released (HUANGLIZI/MGLL ``models/pretrain.py``, ``MultiGranularModule``, commit faa2631).

For side-by-side reproduction only. Exactly two levels, in the order given (option ``levels``, default the
batch's two levels): the first plays the released code's *keyword* role, the second its *description* role.
``W`` is the row-normalised exact co-occurrence (equal ids), logits ``S^g = s X (Y^g)^T`` from the features
as given (no bias):

    L_g  = 1/4 [CE(S^g, W^g) + CE(S^g^T, W^g)] + (1/B^2) sum_ij BCEwithLogits(S^g_ij, W^g_ij)
    k    = 1/2 kl_div(log A, Mr, batchmean) + 1/2 kl_div(log D, Mr, batchmean)
         = (1/(2B)) sum_ij [2 Mr log Mr - Mr log A - Mr log D],   A = S^kw, D = S^desc, Mr = (A + D) / 2
    L    = L_kw + L_desc + (0.5 k  if k is finite, else nothing)

The KL acts on the RAW logits (``log`` of a logit), so it is NaN as soon as one logit is <= 0 (almost always
with cosine logits) and the released code then silently skips it. Here the drop is reported instead of
hidden: outputs ``"kl_raw"`` (k itself, may be NaN) and ``"kl_dropped"`` (1.0 if k was non-finite and left
out of this call's loss, else 0.0); the attributes ``kl_calls`` and ``kl_dropped_count`` count calls and
drops over the module's life. ``"loss"`` is always finite (a non-finite level term raises
``ObjectiveNumericsError`` as everywhere else). Other outputs: ``"softce/<level>"`` (the 1/4 [CE + CE^T]
part) and ``"bce/<level>"``.

Missing texts follow the project convention (the released code has none): a level's terms use the samples
present at that level, the KL the samples present at both.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import Tensor

from .base import Batch, CommonOptions, Objective, check_levels, register, safe_div
from .errors import ObjectiveConfigError
from .plan import LevelRequest

__all__ = ["MGLLReleased"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MGLLReleasedOptions(CommonOptions):
    #: (keyword level, description level); None: the batch's levels, which must be two
    levels: tuple[str, ...] | None = None

    def check(self, objective: str) -> None:
        check_levels(objective, "levels", self.levels, exact=2)


@register("mgll_released")
class MGLLReleased(Objective):
    """The released code's loss (see the module docstring)."""

    Options = MGLLReleasedOptions
    unchecked_terms = ("kl_raw", "kl_dropped")

    def __init__(self, _name: str | None = None, **options):
        super().__init__(_name, **options)
        self.kl_calls = 0
        self.kl_dropped_count = 0

    def levels_used(self, available_levels) -> list[str]:
        levels = list(self.opt.levels) if self.opt.levels is not None else list(available_levels)
        if len(levels) != 2:
            raise ObjectiveConfigError(
                self.label,
                "levels",
                f"needs exactly two levels (keyword, description); the batch gives {levels}",
                allowed="two level names, e.g. [disease, description]",
            )
        return levels

    def compute(self, batch: Batch) -> dict[str, Tensor]:
        kw, desc = batch.levels
        req = {
            g: LevelRequest(batch.targets(g, "exact"), row_ce=True, col_ce=True, pointwise=True, pointwise_soft=True)
            for g in (kw, desc)
        }
        sums = batch.sums(req, cross="rawkl", cross_levels=(kw, desc))
        out: dict[str, Tensor] = {}
        for g in (kw, desc):
            n = sums.n[g]
            out[f"softce/{g}"] = safe_div(sums.get((g, "row_ce")) + sums.get((g, "col_ce")), 4 * n)
            out[f"bce/{g}"] = safe_div(sums.get((g, "pw")), n * n)
        out["kl_raw"] = safe_div(sums.get("rawkl"), 2 * sums.n_joint)
        return out

    def combine(self, terms: dict[str, Tensor], batch: Batch) -> Tensor:
        kw, desc = batch.levels
        loss = terms[f"softce/{kw}"] + terms[f"bce/{kw}"] + terms[f"softce/{desc}"] + terms[f"bce/{desc}"]
        kl = terms["kl_raw"]
        finite = bool(torch.isfinite(kl))
        self.kl_calls += 1
        if finite:
            loss = loss + 0.5 * kl
        else:
            self.kl_dropped_count += 1
            if self.kl_dropped_count == 1:
                log.info(
                    "%s: the raw-logit KL is not finite (%s) and is dropped, as in the released code; "
                    "see outputs 'kl_dropped' and 'kl_raw'",
                    self.label,
                    float(kl.detach()),
                )
        terms["kl_dropped"] = torch.tensor(0.0 if finite else 1.0, dtype=loss.dtype, device=loss.device)
        return loss
