"""The shared numerical core: partial sums of contrastive terms on similarity matrices, in row blocks.

Every objective reduces to a few *slots* (scalar sums) evaluated on one or more similarity matrices
``S = s * A B^T (+ b)`` (rows ``A`` [R, D], columns ``B`` [K, D], scale ``s``, optional bias ``b``), with the
targets of :class:`objectives.targets.Pairs` (kernel ``K``, row/column normalisers ``r``, target mass ``t``):

- ``row_ce``  = sum_i [ t_i lse_i - sum_j K_ij r_i S_ij ]       soft CE, softmax over columns (image -> text)
- ``col_ce``  = sum_j [ t'_j lse'_j - sum_i K_ij r'_j S_ij ]    soft CE, softmax over rows (text -> image)
- ``pw``      = sum_ij [ softplus(S_ij) - Y_ij S_ij ]           BCE with logits, Y = 1[K>0] or the soft K_ij r_i
- ``skl``     = sum_i sum_g KL(P^g_i || M_i), P^g_i = softmax_j(S^g_i.), M_i = mean_g P^g_i
- ``rawkl``   = sum_ij [ 2 xlogy(M, M) - M log A_ij - M log D_ij ], M = (A + D) / 2 on two raw logit matrices
                (the released MGLL code's KL; torch's ``kl_div`` convention, NaN whenever a logit is <= 0)

with ``lse_i = logsumexp_j S_ij`` and ``lse'_j = logsumexp_i S_ij``. The objectives divide the slots by
their normalisers (1/B, 1/(2B), 1/B^2, ...) outside; autograd carries those factors in.

Implementation (:class:`_SlotSums`, a custom autograd Function):

- logits in the inputs' dtype (the caller upcasts half to fp32, float64 stays); log-sum-exp and softplus
  forms only; the soft-CE terms never build log-softmax matrices:
  ``-sum_j T_ij log p_ij = t_i lse_i - sum_j T_ij S_ij``;
- one matrix product per similarity matrix; the column direction reuses the same matrix (column
  log-sum-exp accumulated online over row blocks, flash-attention style); the row log-sum-exp and
  ``exp(S - max)`` are shared by the soft CE and ``skl``;
- ``skl``: ``log M = log(sum_g P^g) - log G`` from the probabilities already at hand (clamped at the
  smallest normal number: where every ``P^g`` underflowed, its contributions ``P^g (...)`` are 0 anyway);
- target-linear parts ``sum W S`` / ``sum Y S``: for exact and identity targets from the list of positive
  pairs (O(P), no B x B kernel), else from kernel blocks;
- the backward is written out: ``dL/dS = g_row (t_i p_ij - W_ij) + g_col (t'_j q_ij - W'_ij)
  + g_pw (sigmoid(S_ij) - Y_ij) + g_skl P^g_ij (log P^g_ij - log M_ij - KL^g_i) + g_raw d(rawkl)/dS``,
  then ``dA = s dS B``, ``dB = s dS^T A``, ``ds = sum(dS * A B^T)``, ``db = sum(dS)``;
- ``chunk_size = 0``: S is computed by one product and kept for the backward, which overwrites it in place
  with dL/dS (no second B x B allocation; a second backward with ``retain_graph`` recomputes S); the
  element-wise work runs over row blocks with reused buffers (cheaper than fresh B x B temporaries);
  ``chunk_size = c > 0``: nothing of size R x K is stored; the forward and the backward compute S in
  blocks of ``c`` rows (the backward recomputes them), so the peak extra memory is a few ``c x K`` buffers;
- no host synchronisation: the incoming gradients stay 0-dim device tensors (the backward computes every
  slot the plan holds, whatever its gradient), the row spans of positive pairs are host numbers computed from
  the labels (``objectives/targets.py``); a raw-KL slot whose incoming gradient is exactly 0 (dropped because
  non-finite, as the released code does) contributes exactly 0 (``torch.where``, so its NaN never spreads).

The element-wise pieces on one row block live in ``objectives/blocks.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from .blocks import (
    Buffers,
    Grads,
    dot,
    linear_forward,
    raw_kl_grads,
    raw_kl_value,
    softplus,
    softplus_threshold,
    subtract_targets,
)
from .targets import Pairs

__all__ = ["Group", "Plan", "View", "slot_sums"]

#: element budget of one row block of the element-wise work when chunking is off, on the CPU (blocks that stay
#: in cache are fastest there)
ELEMENT_BLOCK = 1 << 19
#: the same off the CPU: on a GPU every element-wise operation is a kernel launch, so the fewer blocks the
#: better (one block up to B = K = 4096; the buffers are a few B x K matrices)
ELEMENT_BLOCK_DEVICE = 1 << 24
#: minimal rows of such a block
MIN_BLOCK_ROWS = 32


@dataclass(eq=False)
class View:
    """One similarity matrix ``S = s * feats[a] @ feats[b]^T (+ b)`` and the slots computed on it
    (output indices, -1 = not computed); ``pairs`` holds its targets (None for views that only take part in
    a cross-level slot)."""

    a: int
    b: int
    pairs: Pairs | None = None
    row_ce: int = -1
    col_ce: int = -1
    pw: int = -1
    pw_soft: bool = False
    needs_row_lse: bool = False

    @property
    def linear(self) -> bool:
        """True when a slot has a target-linear part (sum W S or sum Y S)."""
        return self.row_ce >= 0 or self.col_ce >= 0 or self.pw >= 0


@dataclass(eq=False)
class Group:
    """Views processed in lockstep over the same rows (needed by the cross-view slots ``skl``, ``rawkl``)."""

    views: list[View]
    skl: int = -1
    rawkl: int = -1


@dataclass(eq=False)
class Plan:
    groups: list[Group]
    n_slots: int
    chunk_size: int = 0


def slot_sums(plan: Plan, feats: list[Tensor], scale: Tensor, bias: Tensor | None) -> Tensor:
    """Evaluate ``plan`` on ``feats`` (all of one floating dtype) and return the slot sums [n_slots]."""
    for g in plan.groups:
        for v in g.views:
            v.needs_row_lse = v.row_ce >= 0 or g.skl >= 0
    return _SlotSums.apply(plan, scale, bias, *feats)


def _block_rows(plan: Plan, group: Group, feats: list[Tensor]) -> tuple[int, int]:
    rows = feats[group.views[0].a].shape[0]
    kmax = max(feats[v.b].shape[0] for v in group.views)
    if plan.chunk_size > 0:
        return rows, max(1, min(plan.chunk_size, rows))
    budget = ELEMENT_BLOCK if feats[0].device.type == "cpu" else ELEMENT_BLOCK_DEVICE
    return rows, max(1, min(rows, max(MIN_BLOCK_ROWS, budget // max(kmax, 1))))


class _SlotSums(torch.autograd.Function):
    @staticmethod
    def forward(ctx, plan: Plan, scale: Tensor, bias: Tensor | None, *feats: Tensor) -> Tensor:  # type: ignore[override]
        dtype, device = feats[0].dtype, feats[0].device
        parts: list[list[Tensor]] = [[] for _ in range(plan.n_slots)]
        scaled: dict[int, Tensor] = {}
        saved_s: dict[int, Tensor] = {}
        lse_row: dict[int, Tensor] = {}
        lse_col: dict[int, Tensor] = {}
        kl_row: dict[int, Tensor] = {}
        thr = softplus_threshold(dtype)
        tiny = torch.finfo(dtype).tiny
        chunked = plan.chunk_size > 0

        for group in plan.groups:
            views = group.views
            rows, blk = _block_rows(plan, group, feats)
            if rows == 0 or any(feats[v.b].shape[0] == 0 for v in views):
                continue
            for v in views:
                if v.a not in scaled:
                    scaled[v.a] = feats[v.a] * scale
            bufs = Buffers(blk, dtype, device)
            full: dict[int, Tensor] = {}
            if not chunked:
                for vi, v in enumerate(views):
                    s_full = torch.mm(scaled[v.a], feats[v.b].T)
                    if bias is not None:
                        s_full.add_(bias)
                    full[vi] = saved_s[id(v)] = s_full
            col_state: dict[int, list[Tensor]] = {}
            for vi, v in enumerate(views):
                k = feats[v.b].shape[0]
                if v.needs_row_lse:
                    lse_row[id(v)] = torch.empty(rows, dtype=dtype, device=device)
                if group.skl >= 0:
                    kl_row[id(v)] = torch.empty(rows, dtype=dtype, device=device)
                if v.col_ce >= 0:
                    col_state[vi] = [
                        torch.full((k,), -math.inf, dtype=dtype, device=device),
                        torch.zeros(k, dtype=dtype, device=device),
                        torch.zeros(k, dtype=dtype, device=device),  # sum_i K_ij S_ij (dense kernels)
                    ]

            for r0 in range(0, rows, blk):
                r1 = min(rows, r0 + blk)
                n = r1 - r0
                blocks: list[Tensor] = []
                sums_exp: dict[int, Tensor] = {}
                for vi, v in enumerate(views):
                    k = feats[v.b].shape[0]
                    if not chunked:
                        s_blk = full[vi][r0:r1]
                    else:
                        s_blk = torch.mm(scaled[v.a][r0:r1], feats[v.b].T, out=bufs.get(("S", vi), n, k))
                        if bias is not None:
                            s_blk.add_(bias)
                    blocks.append(s_blk)
                    t1 = bufs.get(("T1", vi), n, k)
                    t2 = bufs.get(("T2", vi), n, k)
                    # row log-sum-exp (shared by row_ce and skl); t1 keeps exp(S - m) for skl
                    if v.needs_row_lse:
                        m = s_blk.amax(dim=1)
                        torch.sub(s_blk, m[:, None], out=t1).exp_()
                        se = t1.sum(dim=1)
                        sums_exp[vi] = se
                        lse = torch.log(se).add_(m)
                        lse_row[id(v)][r0:r1] = lse
                        if v.row_ce >= 0:
                            parts[v.row_ce].append(dot(v.pairs.t_row[r0:r1], lse))
                    # column log-sum-exp, online over row blocks
                    if v.col_ce >= 0:
                        cmax, csum, _ = col_state[vi]
                        new_max = torch.maximum(cmax, s_blk.amax(dim=0))
                        csum.mul_(torch.exp(cmax - new_max))
                        torch.sub(s_blk, new_max[None, :], out=t2).exp_()
                        csum.add_(t2.sum(dim=0))
                        col_state[vi][0] = new_max
                    if v.pw >= 0:
                        parts[v.pw].append(softplus(s_blk, thr, t2).sum())
                    # target-linear parts: sum_ij W_ij S_ij (and sum_ij Y_ij S_ij)
                    if v.linear:
                        linear_forward(v, s_blk, t2, r0, r1, parts, col_state.get(vi), dtype)

                if group.skl >= 0:
                    # log M = log(sum_g P^g) - log G, with P^g = t1 / se (clamped: underflowed entries have P = 0)
                    k = feats[views[0].b].shape[0]
                    lm = bufs.get(("LM",), n, k)
                    for vi in range(len(views)):
                        t1 = bufs.get(("T1", vi), n, k)
                        inv = sums_exp[vi].reciprocal()[:, None]
                        if vi == 0:
                            torch.mul(t1, inv, out=lm)
                        else:
                            lm.addcmul_(t1, inv)
                    lm.clamp_(min=tiny).log_()
                    log_g = math.log(len(views))
                    for vi, v in enumerate(views):
                        t1, t2 = bufs.get(("T1", vi), n, k), bufs.get(("T2", vi), n, k)
                        # KL_i = sum_j P_ij (log P_ij - log M_ij) = sum_j t1_ij (S_ij - lse_i - lm_ij) / se_i + log G
                        torch.sub(blocks[vi], lse_row[id(v)][r0:r1, None], out=t2).sub_(lm).mul_(t1)
                        kl = t2.sum(dim=1).div_(sums_exp[vi]).add_(log_g)
                        kl_row[id(v)][r0:r1] = kl
                        parts[group.skl].append(kl.sum())
                if group.rawkl >= 0:
                    parts[group.rawkl].append(raw_kl_value(blocks[0], blocks[1]))

            for vi, v in enumerate(views):
                if v.col_ce >= 0:
                    cmax, csum, ecol = col_state[vi]
                    lse_c = torch.log(csum).add_(cmax)
                    lse_col[id(v)] = lse_c
                    parts[v.col_ce].append(dot(v.pairs.t_col, lse_c))
                    if not v.pairs.sparse:
                        parts[v.col_ce].append(-dot(v.pairs.r_col, ecol))

        zero = torch.zeros((), dtype=dtype, device=device)
        acc = torch.stack([torch.stack(p).sum() if p else zero for p in parts]) if parts else zero.new_zeros(0)
        ctx.plan = plan
        ctx.saved_s = saved_s
        ctx.consumed = False
        ctx.lse_row, ctx.lse_col, ctx.kl_row = lse_row, lse_col, kl_row
        ctx.has_bias = bias is not None
        ctx.save_for_backward(scale, bias if bias is not None else scale.new_zeros(()), *feats)
        return acc

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        plan: Plan = ctx.plan
        scale, bias, *feats = ctx.saved_tensors
        bias_t = bias if ctx.has_bias else None
        dtype, device = feats[0].dtype, feats[0].device
        tiny = torch.finfo(dtype).tiny
        need = ctx.needs_input_grad
        need_scale, need_bias = need[1], need[2] and ctx.has_bias
        grads = Grads(feats, [need[3 + i] for i in range(len(feats))], need_scale, need_bias, scale)
        # without chunking the stored S becomes dL/dS in place; a second backward (retain_graph) recomputes S
        recompute = plan.chunk_size > 0 or ctx.consumed

        def g_of(slot: int) -> Tensor | None:
            """The incoming gradient of a slot as a 0-dim device tensor (never read on the host)."""
            return grad[slot] if slot >= 0 else None

        for group in plan.groups:
            views = group.views
            rows, blk = _block_rows(plan, group, feats)
            if rows == 0 or any(feats[v.b].shape[0] == 0 for v in views):
                continue
            g_skl, g_raw = g_of(group.skl), g_of(group.rawkl)
            coeffs = [(g_of(v.row_ce), g_of(v.col_ce), g_of(v.pw)) for v in views]
            bufs = Buffers(blk, dtype, device)
            c_row = [(v.pairs.t_row * c[0]) if c[0] is not None else None for v, c in zip(views, coeffs)]
            c_col = [(v.pairs.t_col * c[1])[None, :] if c[1] is not None else None for v, c in zip(views, coeffs)]
            if g_raw is not None:
                raw_on = g_raw != 0  # a dropped (non-finite) raw KL gets exactly 0: its NaN never reaches dL/dS
            if g_skl is not None:
                log_g = math.log(len(views))
                shift = [ctx.lse_row[id(v)] + ctx.kl_row[id(v)] - log_g for v in views]
            for r0 in range(0, rows, blk):
                r1 = min(rows, r0 + blk)
                n = r1 - r0
                blocks, probs = [], []
                for vi, v in enumerate(views):
                    k = feats[v.b].shape[0]
                    if recompute:
                        s_blk = torch.mm(grads.scaled(v.a)[r0:r1], feats[v.b].T, out=bufs.get(("S", vi), n, k))
                        if bias_t is not None:
                            s_blk.add_(bias_t)
                    else:
                        s_blk = ctx.saved_s[id(v)][r0:r1]
                    blocks.append(s_blk)
                    probs.append(
                        torch.softmax(s_blk, dim=1, out=bufs.get(("P", vi), n, k))
                        if coeffs[vi][0] is not None or g_skl is not None
                        else None
                    )
                # every quantity that reads S, before S's storage is overwritten by dL/dS
                raw = raw_kl_grads(blocks[0], blocks[1]) if g_raw is not None else None
                skl_d = []
                if g_skl is not None:
                    k = feats[views[0].b].shape[0]
                    lm = bufs.get(("LM",), n, k)
                    torch.add(probs[0], probs[1], out=lm) if len(views) == 2 else torch.sum(
                        torch.stack(probs), 0, out=lm
                    )
                    lm.clamp_(min=tiny).log_()
                    for vi in range(len(views)):
                        # log P - log M - KL_i = S - (lse_i + KL_i - log G) - log(sum_g P^g)
                        d = torch.sub(blocks[vi], shift[vi][r0:r1, None], out=bufs.get(("D", vi), n, k)).sub_(lm)
                        skl_d.append(d.mul_(g_skl))
                for vi, v in enumerate(views):
                    s_blk = blocks[vi]
                    k = feats[v.b].shape[0]
                    g_row, g_col, g_pw = coeffs[vi]
                    q = sig = None
                    if g_col is not None:
                        q = torch.sub(s_blk, ctx.lse_col[id(v)][None, :], out=bufs.get(("Q", vi), n, k)).exp_()
                    if g_pw is not None:
                        sig = torch.sigmoid(s_blk, out=bufs.get(("SG", vi), n, k))
                    g = s_blk  # overwrite S with dL/dS
                    if g_row is not None:
                        torch.mul(probs[vi], c_row[vi][r0:r1, None], out=g)
                    else:
                        g.zero_()
                    if q is not None:
                        g.addcmul_(q, c_col[vi])
                    if sig is not None:
                        g.addcmul_(sig, g_pw)
                    if g_skl is not None:
                        g.addcmul_(probs[vi], skl_d[vi])
                    if raw is not None:
                        g.add_(torch.where(raw_on, raw[vi].mul_(g_raw), 0.0))
                    if v.linear:
                        subtract_targets(g, bufs.get(("T", vi), n, k), v, v.pairs, r0, r1, g_row, g_col, g_pw, dtype)
                    if recompute:
                        grads.consume(g, v, r0, r1)
            if not recompute:
                for v in views:
                    grads.consume(ctx.saved_s[id(v)], v, 0, rows)
        if plan.chunk_size <= 0:
            ctx.consumed = True
        d_feats = [
            (torch.zeros_like(f) if d is None else d) if n else None
            for f, d, n in zip(feats, grads.d_feats, grads.need)
        ]
        return (None, grads.d_scale if need_scale else None, grads.d_bias if need_bias else None, *d_feats)
