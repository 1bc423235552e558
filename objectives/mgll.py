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
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import Tensor

from .base import Batch, CommonOptions, Objective, check_choice, check_levels, register, safe_div, weighted
from .errors import ObjectiveConfigError
from .plan import LevelRequest

__all__ = ["MGLL", "TERMS"]

TERMS = ("sclip", "pointwise", "skl")


@dataclass(frozen=True)
class MGLLOptions(CommonOptions):
    terms: tuple[str, ...] = TERMS
    weights: tuple[float, ...] = (0.5, 1.0, 1.0)
    soft_labels: bool = True
    levels: tuple[str, ...] | None = None
    target: str = "exact"
    pointwise_target: str = "binary"

    def check(self, objective: str) -> None:
        if not self.terms:
            raise ObjectiveConfigError(objective, "terms", "must not be empty", allowed=list(TERMS))
        unknown = [t for t in self.terms if t not in TERMS]
        if unknown:
            raise ObjectiveConfigError(objective, "terms", f"unknown term(s) {unknown}", allowed=list(TERMS))
        if len(set(self.terms)) != len(self.terms):
            raise ObjectiveConfigError(objective, "terms", f"repeats a term: {list(self.terms)}", allowed=list(TERMS))
        if len(self.weights) != 3 or not all(math.isfinite(w) for w in self.weights):
            raise ObjectiveConfigError(
                objective,
                "weights",
                f"needs three finite numbers (a1, a2, a3), got {list(self.weights)}",
                allowed="[a1, a2, a3] for sclip, pointwise, skl",
            )
        check_choice(objective, "target", self.target, ("exact", "jaccard"))
        check_choice(objective, "pointwise_target", self.pointwise_target, ("binary", "soft"))
        check_levels(objective, "levels", self.levels)
        if "skl" in self.terms and self.levels is not None and len(self.levels) < 2:
            raise ObjectiveConfigError(
                objective,
                "terms",
                f"'skl' compares levels and needs at least two, but levels={list(self.levels)}",
                allowed="drop 'skl' from terms, or give two or more levels",
            )


@register("mgll")
class MGLL(Objective):
    """The paper's objective (see the module docstring)."""

    Options = MGLLOptions

    @property
    def _uses_targets(self) -> bool:
        return self.opt.soft_labels and ("sclip" in self.opt.terms or "pointwise" in self.opt.terms)

    @property
    def wants_multi_hot(self) -> bool:
        return self._uses_targets and self.opt.target == "jaccard"

    def levels_used(self, available_levels) -> list[str]:
        return list(self.opt.levels) if self.opt.levels is not None else list(available_levels)

    def needs_labels(self, level: str) -> bool:
        return self._uses_targets

    def compute(self, batch: Batch) -> dict[str, Tensor]:
        o = self.opt
        levels = batch.levels
        if "skl" in o.terms and len(levels) < 2:
            raise ObjectiveConfigError(
                self.label,
                "terms",
                f"'skl' needs at least two levels; the batch gives {levels}",
                allowed="drop 'skl' from terms, or train with two or more levels",
            )
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
        a1, a2, a3 = self.opt.weights
        w = {}
        for k in terms:
            w[k] = a1 if k.startswith("sclip/") else a2 if k.startswith("pointwise/") else a3
        return weighted(terms, w)
