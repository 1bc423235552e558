"""MGLL, Multi-Granular Language Learning (paper Eqs. 1-7), the harness's binding reading.

For the levels G taking part (option ``levels``, default every level of the batch), with
``S^g = s X (Y^g)^T``, soft target ``W^g`` (row-normalised co-occurrence, ``target`` ``exact`` or
``jaccard``) and binary target ``Y^g = 1[C^g > 0]``:

    sCLIP_g = 1/2 [CE(S^g, W^g) + CE(S^g^T, W^g)]                        soft multi-label alignment
    P_g     = (1/B^2) sum_ij [softplus(S^g_ij) - Y^g_ij S^g_ij]           point-wise BCE with logits
    sKL     = (1/B) sum_i sum_g KL(P^g_i || M_i),  P^g_i = softmax_j(S^g_i.),  M_i = (1/|G|) sum_g P^g_i
    L       = a1 sum_g sCLIP_g + a2 sum_g P_g + a3 sKL                     defaults a = (0.5, 1, 1)

``log M`` is ``logsumexp_g log P^g - log |G|`` (stable). Ablations are options:

- ``soft_labels`` (true): false replaces W and Y by the identity (instance targets);
- ``terms``: any non-empty subset of ``sclip``, ``pointwise``, ``skl``;
- ``levels``: which granularities take part (``skl`` needs at least two);
- ``weights``: (a1, a2, a3);
- ``target``: ``exact`` or ``jaccard`` (multi-hot labels);
- ``pointwise_target``: ``binary`` (paper) or ``soft`` (W, as the released code).

Outputs: ``"sclip/<level>"``, ``"pointwise/<level>"`` (unweighted, per level) and ``"skl"``; ``"loss"`` is the
weighted total. With one level and ``terms=[sclip]`` the loss is ``a1 * soft_clip``.

Missing texts: each level's terms use the samples present at that level (B = their count); ``skl`` uses
the samples present at every level taking part, as rows and as the support of the distributions.

:meth:`MGLL.reference` is these equations in plain torch; :meth:`MGLL.compute` (the default, ``impl=fast``)
asks the engine for the same sums from one matrix product per level, without B x B temporaries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

from . import functional as fn
from .base import Batch, CommonOptions, Objective, register, safe_div, weighted
from .errors import ObjectiveConfigError
from .options import LEVELS_HELP, TARGET_HELP
from .plan import LevelRequest

__all__ = ["MGLL", "TERMS"]

TERMS = ("sclip", "pointwise", "skl")


@dataclass(frozen=True)
class MGLLOptions(CommonOptions):
    terms: tuple[str, ...] = field(default=TERMS, metadata={"choices": TERMS, "min_len": 1, "help": (
        "the terms of L taking part (any non-empty subset; the paper's Table 3 ablation)")})
    weights: tuple[float, float, float] = field(default=(0.5, 1.0, 1.0), metadata={"min": 0.0, "help": (
        "(a1, a2, a3): the weights of sum_g sCLIP_g, sum_g P_g and sKL (>= 0)")})
    soft_labels: bool = field(default=True, metadata={"help": (
        "false: the identity replaces W and Y (single-label, instance targets)")})
    levels: tuple[str, ...] | None = field(default=None, metadata=LEVELS_HELP)
    target: Literal["exact", "jaccard"] = field(default="exact", metadata=TARGET_HELP)
    pointwise_target: Literal["binary", "soft"] = field(default="binary", metadata={"help": (
        "the point-wise target: binary Y (paper) or the soft W (the released code)")})

    def check(self) -> None:
        super().check()
        self.check_distinct("terms", self.terms, allowed=list(TERMS))
        self.check_levels("levels", self.levels)
        if "skl" in self.terms and self.levels is not None and len(self.levels) < 2:
            raise self.fail("terms", f"'skl' compares levels and needs at least two, but levels={list(self.levels)}",
                            allowed="drop 'skl' from terms, or give two or more levels")


@register("mgll")
class MGLL(Objective):
    """``L = a1 sum_g sCLIP_g + a2 sum_g P_g + a3 sKL`` (the paper's Eqs. 1-7; see the module docstring).
    Outputs: ``"sclip/<level>"``, ``"pointwise/<level>"``, ``"skl"``."""

    Options = MGLLOptions

    @property
    def _uses_targets(self) -> bool:
        return self.opt.soft_labels and ("sclip" in self.opt.terms or "pointwise" in self.opt.terms)

    @property
    def wants_multi_hot(self) -> bool:
        return self._uses_targets and self.opt.target == "jaccard"

    def levels_used(self, available_levels) -> list[str]:
        return list(self.opt.levels) if self.opt.levels is not None else list(available_levels)

    def terms_used(self) -> list[str]:
        return list(self.opt.terms)

    def needs_labels(self, level: str) -> bool:
        return self._uses_targets

    def _check_levels(self, levels: list[str]) -> None:
        if "skl" in self.opt.terms and len(levels) < 2:
            raise ObjectiveConfigError(
                self.label,
                "terms",
                f"'skl' needs at least two levels; the batch gives {levels}",
                allowed="drop 'skl' from terms, or train with two or more levels",
            )

    def reference(self, batch: Batch) -> dict[str, Tensor]:
        o = self.opt
        self._check_levels(batch.levels)
        out: dict[str, Tensor] = {}
        for g in batch.levels:
            keep = batch.present(g)
            S = batch.logits(g, keep)  # S^g = s X (Y^g)^T over the samples present at g
            if o.soft_labels:
                C = fn.cooccurrence(batch.label_rows(g, keep), o.target, S.dtype)
                W, Y = fn.row_normalise(C), fn.binary(C)
            else:
                W = Y = torch.eye(S.shape[0], dtype=S.dtype, device=S.device)
            if o.pointwise_target == "soft":
                Y = W
            if "sclip" in o.terms:
                out[f"sclip/{g}"] = 0.5 * (fn.soft_ce(S, W) + fn.soft_ce(S.T, W))  # Eq. 3, both directions
            if "pointwise" in o.terms:
                out[f"pointwise/{g}"] = fn.bce_mean(S, Y)  # Eq. 4, mean over the B^2 entries
        if "skl" in o.terms:
            keep = batch.present(*batch.levels)  # the samples present at every level
            out["skl"] = fn.smooth_kl([batch.logits(g, keep) for g in batch.levels])  # Eqs. 5-6
        return out

    def compute(self, batch: Batch) -> dict[str, Tensor]:
        o = self.opt
        levels = batch.levels
        self._check_levels(levels)
        kind = o.target if self._uses_targets else "identity"
        sclip, pw = "sclip" in o.terms, "pointwise" in o.terms
        requests = {
            g: LevelRequest(
                batch.targets(g, kind),
                row_ce=sclip,
                col_ce=sclip,
                pointwise=pw,
                pointwise_soft=o.pointwise_target == "soft",
            )
            for g in levels
        }
        skl = "skl" in o.terms
        sums = batch.sums(requests, cross="skl" if skl else None, cross_levels=tuple(levels) if skl else ())
        out: dict[str, Tensor] = {}
        for g in levels:
            n = sums.n[g]
            if sclip:
                out[f"sclip/{g}"] = safe_div(sums.get((g, "row_ce")) + sums.get((g, "col_ce")), 2 * n)
            if pw:
                out[f"pointwise/{g}"] = safe_div(sums.get((g, "pw")), n * n)
        if skl:
            out["skl"] = safe_div(sums.get("skl"), sums.n_joint)
        return out

    def combine(self, terms: dict[str, Tensor], batch: Batch) -> Tensor:
        """L = a1 sum_g sCLIP_g + a2 sum_g P_g + a3 sKL (Eq. 7)."""
        a1, a2, a3 = self.opt.weights
        w = {}
        for k in terms:
            w[k] = a1 if k.startswith("sclip/") else a2 if k.startswith("pointwise/") else a3
        return weighted(terms, w)
