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
drops over the module's life (the drop is decided on the device, ``torch.where``: reading
``kl_dropped_count`` synchronises, a call does not). ``"loss"`` is always finite (a non-finite level term raises
``ObjectiveNumericsError`` as everywhere else). Other outputs: ``"softce/<level>"`` (the 1/4 [CE + CE^T]
part) and ``"bce/<level>"``.

Missing texts follow the project convention (the released code has none): a level's terms use the samples
present at that level, the KL the samples present at both.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch
from torch import Tensor

from . import functional as fn
from .base import Batch, CommonOptions, Objective, register, safe_div
from .errors import ObjectiveConfigError
from .plan import LevelRequest

__all__ = ["MGLLReleased"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MGLLReleasedOptions(CommonOptions):
    levels: tuple[str, ...] | None = field(default=None, metadata={"min_len": 1, "help": (
        "(keyword level, description level); null: the batch's levels, which must be two")})

    def check(self) -> None:
        super().check()
        self.check_levels("levels", self.levels, exact=2)


@register("mgll_released")
class MGLLReleased(Objective):
    """Per level ``1/4 [CE(S, W) + CE(S^T, W)] + BCE(S, W)``, plus ``0.5 k`` when the raw-logit KL ``k`` is
    finite (the released code; see the module docstring). Outputs: ``"softce/<level>"``, ``"bce/<level>"``,
    ``"kl_raw"``, ``"kl_dropped"``."""

    Options = MGLLReleasedOptions
    unchecked_terms = ("kl_raw", "kl_dropped")

    def __init__(self, _name: str | None = None, **options):
        super().__init__(_name, **options)
        self.kl_calls = 0
        self._kl_dropped: Tensor | None = None  # device counter

    @property
    def kl_dropped_count(self) -> int:
        """Calls whose raw KL was non-finite and dropped (reads a device counter: a synchronisation)."""
        return 0 if self._kl_dropped is None else int(self._kl_dropped)

    def terms_used(self) -> list[str]:
        return ["softce", "bce", "kl_raw"]

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

    def reference(self, batch: Batch) -> dict[str, Tensor]:
        kw, desc = batch.levels
        out: dict[str, Tensor] = {}
        for g in (kw, desc):
            keep = batch.present(g)
            S = batch.logits(g, keep)
            W = fn.row_normalise(fn.cooccurrence(batch.label_rows(g, keep), "exact", S.dtype))
            out[f"softce/{g}"] = 0.25 * (fn.soft_ce(S, W) + fn.soft_ce(S.T, W))
            out[f"bce/{g}"] = fn.bce_mean(S, W)  # the soft W as target, mean over B^2
        keep = batch.present(kw, desc)
        A, D = batch.logits(kw, keep), batch.logits(desc, keep)
        # k is finite iff every raw logit is > 0; a dropped k must not send log(<= 0)'s NaN into the gradient
        ok = (A > 0).all() & (D > 0).all()
        k = fn.raw_kl(torch.where(ok, A, 1.0), torch.where(ok, D, 1.0))
        out["kl_raw"] = torch.where(ok, k, fn.raw_kl(A.detach(), D.detach()))
        return out

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
        """L = L_kw + L_desc + (0.5 k if k is finite), decided on the device."""
        kw, desc = batch.levels
        loss = terms[f"softce/{kw}"] + terms[f"bce/{kw}"] + terms[f"softce/{desc}"] + terms[f"bce/{desc}"]
        kl = terms["kl_raw"]
        dropped = ~torch.isfinite(kl.detach())
        loss = loss + torch.where(dropped, torch.zeros_like(kl), 0.5 * kl)
        self.kl_calls += 1
        n = dropped.to(torch.int64)
        self._kl_dropped = n if self._kl_dropped is None or self._kl_dropped.device != n.device else self._kl_dropped + n
        if self.check_finite and self.kl_dropped_count == 1 and bool(dropped):  # direct calls only: reads values
            log.info(
                "%s: the raw-logit KL is not finite (%s) and is dropped, as in the released code; "
                "see outputs 'kl_dropped' and 'kl_raw'",
                self.label,
                float(kl.detach()),
            )
        terms["kl_dropped"] = dropped.to(loss.dtype)
        return loss
