"""The element-wise pieces of the engine (``objectives/engine.py``) on one row block of a similarity matrix.

- :class:`Buffers`: reusable ``[rows, K]`` work buffers;
- :func:`linear_forward`: the target-linear parts ``-sum W S`` / ``-sum Y S`` of a block (from the list of
  positive pairs, or from kernel blocks);
- :func:`subtract_targets`: ``dL/dS -= g_row W_row + g_col W_col + g_pw Y`` on a block, with the incoming
  gradients as 0-dim device tensors (never read on the host);
- :class:`Grads`: accumulates ``dA = s dS B``, ``dB = s dS^T A``, ``ds``, ``db`` from blocks of ``dL/dS``;
- :func:`raw_kl_value` / :func:`raw_kl_grads`: the released MGLL code's KL on raw logits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import torch
from torch import Tensor

if TYPE_CHECKING:  # pragma: no cover
    from .engine import View
    from .targets import Pairs

__all__ = ["Buffers", "Grads", "dot", "linear_forward", "raw_kl_grads", "raw_kl_value", "softplus",
           "softplus_threshold", "subtract_targets"]

#: an incoming gradient of one slot (0-dim tensor), None when the slot is not computed
Coef = Optional[Tensor]


class Buffers:
    """Reusable [rows, K] work buffers, keyed by name."""

    def __init__(self, rows: int, dtype: torch.dtype, device: torch.device):
        self.rows, self.dtype, self.device = rows, dtype, device
        self._store: dict[tuple, Tensor] = {}

    def get(self, key: tuple, n: int, k: int) -> Tensor:
        t = self._store.get((key, k))
        if t is None:
            t = torch.empty(self.rows, k, dtype=self.dtype, device=self.device)
            self._store[(key, k)] = t
        return t[:n]


def softplus_threshold(dtype: torch.dtype) -> float:
    return 20.0 if dtype != torch.float64 else 40.0


def softplus(x: Tensor, threshold: float, out: Tensor) -> Tensor:
    """softplus(x) into ``out`` (log(1 + e^x); x itself above ``threshold``)."""
    try:
        return torch._C._nn.softplus(x, 1.0, threshold, out=out)
    except (AttributeError, TypeError, RuntimeError):  # pragma: no cover - other torch builds
        return out.copy_(torch.nn.functional.softplus(x, 1.0, threshold))


def dot(a: Tensor, b: Tensor) -> Tensor:
    return torch.dot(a, b) if a.numel() else a.new_zeros(())


class Grads:
    """Accumulates the gradients of the features, the scale and the bias from blocks of dL/dS."""

    def __init__(self, feats: list[Tensor], need: list[bool], need_scale: bool, need_bias: bool, scale: Tensor):
        self.feats, self.need, self.scale = feats, need, scale
        self.need_scale, self.need_bias = need_scale, need_bias
        self.d_feats: list[Tensor | None] = [None] * len(feats)
        self.d_scale = torch.zeros((), dtype=feats[0].dtype, device=feats[0].device)
        self.d_bias = torch.zeros((), dtype=feats[0].dtype, device=feats[0].device)
        self._scaled: dict[int, Tensor] = {}

    def scaled(self, i: int) -> Tensor:
        if i not in self._scaled:
            self._scaled[i] = self.feats[i] * self.scale
        return self._scaled[i]

    def _add(self, i: int, r0: int, r1: int, value: Tensor) -> None:
        if self.d_feats[i] is None:
            if r0 == 0 and r1 == self.feats[i].shape[0]:
                self.d_feats[i] = value
                return
            self.d_feats[i] = torch.zeros_like(self.feats[i])
        self.d_feats[i][r0:r1].add_(value)

    def consume(self, g: Tensor, v: View, r0: int, r1: int) -> None:
        """dL/dS for rows r0..r1-1 of view v -> dA = s dS B, dB = s dS^T A, ds = sum(dS * A B^T), db = sum(dS)."""
        a_blk = self.feats[v.a][r0:r1]
        if self.need[v.a] or self.need_scale:
            u = g @ self.feats[v.b]
            if self.need_scale:
                self.d_scale.add_(torch.dot(u.reshape(-1), a_blk.reshape(-1)))
            if self.need[v.a]:
                self._add(v.a, r0, r1, u.mul_(self.scale))
        if self.need[v.b]:
            if self.d_feats[v.b] is None:
                self.d_feats[v.b] = torch.mm(g.T, self.scaled(v.a)[r0:r1])
            else:
                self.d_feats[v.b].addmm_(g.T, self.scaled(v.a)[r0:r1])
        if self.need_bias:
            self.d_bias.add_(g.sum())


def linear_forward(
    v: View, s_blk: Tensor, t: Tensor, r0: int, r1: int, parts: list[list[Tensor]], col_state, dtype
) -> None:
    """Forward target-linear parts on rows r0..r1-1: -sum W_row S, -sum W_col S, -sum Y S."""
    pairs = v.pairs
    if pairs.sparse:
        a, b = pairs.span(r0, r1)
        flat = (pairs.pi[a:b] - r0) * s_blk.shape[1] + pairs.pj[a:b]
        vals = s_blk.reshape(-1).index_select(0, flat)
        w_row = pairs.w_row[a:b]
        if v.row_ce >= 0:
            parts[v.row_ce].append(-dot(w_row, vals))
        if v.col_ce >= 0:
            parts[v.col_ce].append(-dot(pairs.w_col[a:b], vals))
        if v.pw >= 0:
            parts[v.pw].append(-(dot(w_row, vals) if v.pw_soft else vals.sum()))
        return
    kb = pairs.kernel(r0, r1, dtype)
    e = torch.mul(s_blk, kb, out=t)
    e_row = e.sum(dim=1)
    if v.col_ce >= 0:
        col_state[2].add_(e.sum(dim=0))
    if v.row_ce >= 0:
        parts[v.row_ce].append(-dot(pairs.r_row[r0:r1], e_row))
    if v.pw >= 0:
        if v.pw_soft:
            parts[v.pw].append(-dot(pairs.r_row[r0:r1], e_row))
        elif pairs.binary_is_kernel:
            parts[v.pw].append(-e_row.sum())
        else:
            parts[v.pw].append(-torch.mul(s_blk, kb > 0, out=t).sum())


def subtract_targets(
    g: Tensor, t: Tensor, v: View, pairs: Pairs, r0: int, r1: int, g_row: Coef, g_col: Coef, g_pw: Coef, dtype
) -> None:
    """g -= g_row W_row + g_col W_col + g_pw Y on rows r0..r1-1 (coefficients: 0-dim tensors, None = absent)."""
    if pairs.sparse:
        a, b = pairs.span(r0, r1)
        flat = (pairs.pi[a:b] - r0) * g.shape[1] + pairs.pj[a:b]
        w_row = pairs.w_row[a:b]
        coef = w_row * g_row if g_row is not None else torch.zeros_like(w_row)
        if g_col is not None:
            coef.addcmul_(pairs.w_col[a:b], g_col)
        if g_pw is not None:
            if v.pw_soft:
                coef.addcmul_(w_row, g_pw)
            else:
                coef.add_(g_pw)
        g.view(-1).index_add_(0, flat, coef, alpha=-1)
        return
    r_row = pairs.r_row[r0:r1]
    alpha = r_row * g_row if g_row is not None else torch.zeros_like(r_row)
    if g_pw is not None:
        if v.pw_soft:
            alpha.addcmul_(r_row, g_pw)
        elif pairs.binary_is_kernel:
            alpha.add_(g_pw)
    kb = pairs.kernel(r0, r1, dtype)
    if g_col is not None:
        torch.add(alpha[:, None], pairs.r_col[None, :] * g_col, out=t).mul_(kb)
    else:
        torch.mul(kb, alpha[:, None], out=t)
    g.sub_(t)
    if g_pw is not None and not v.pw_soft and not pairs.binary_is_kernel:
        g.addcmul_((kb > 0).to(dtype), g_pw, value=-1)


def raw_kl_value(a: Tensor, d: Tensor) -> Tensor:
    """sum_ij [kl_div(log a, m) + kl_div(log d, m)] elements, m = (a + d) / 2, torch's convention
    kl_div(input, target) = xlogy(target, target) - target * input (NaN where a or d <= 0)."""
    m = (a + d).mul_(0.5)
    val = torch.xlogy(m, m).mul_(2.0)
    val.sub_(m * torch.log(a)).sub_(m * torch.log(d))
    return val.sum()


def raw_kl_grads(a: Tensor, d: Tensor) -> tuple[Tensor, Tensor]:
    """Derivatives of the elements of :func:`raw_kl_value` with respect to a and d (where finite)."""
    m = (a + d).mul_(0.5)
    la, ld = torch.log(a), torch.log(d)
    common = torch.log(m).add_(1.0).sub_(la, alpha=0.5).sub_(ld, alpha=0.5)
    da = common - m / a
    dd = common.sub_(m / d)
    return da, dd
