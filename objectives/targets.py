"""Targets from labels: co-occurrence, soft and binary targets, and the masks of missing texts.

Labels of one level arrive as
- ids: an integer tensor [B]; equal ids mean identical texts;
- multi-hot: a tensor [B, C] (0/1, any dtype) over the level's label vocabulary.

Missing texts (project convention). In ``labels[level]`` an id with a negative value (``-1``) marks a sample
whose text at that level is missing; for multi-hot labels a row holding any negative value (e.g. all ``-1``)
marks it. The texts tensor still has a row for that sample; its content is ignored. See
:func:`present_mask`.

Co-occurrence ``C`` (symmetric, B x B), over the present samples:
- ``identity``: ``C = I`` (instance discrimination; keys are the samples' global indices);
- ``exact``: ``C_ij = 1[id_i == id_j]`` (from multi-hot labels: identical rows);
- ``jaccard``: ``C_ij = |m_i AND m_j| / |m_i OR m_j|`` with ``0/0 := 1`` (two empty label sets match);
- ``medclip``: ``C_ij = exp(G_ij - g)`` with ``G = M M^T`` (label dot products) and ``g = max_i G_ii``, so
  that the row-normalised ``C`` is MedCLIP's ``softmax_row(M M^T)``.

Soft target ``W_ij = C_ij / sum_k C_ik`` (rows sum to 1), binary target ``Y_ij = 1[C_ij > 0]``.

Everything is tensor operations: one comparison (ids) or one matmul (multi-hot) per block, ``torch.unique``
for the row sums (``c_i = sum_k C_ik`` is computed on the distinct label sets only). The dense helpers
(:func:`cooccurrence`, :func:`soft_targets`, :func:`binary_targets`, :func:`medclip_targets`) build full B x B
matrices for tests and inspection; the objectives never do: they ask a :class:`LevelTargets` for
:class:`Pairs` between the rows and the columns of one similarity matrix, and evaluate blocks of the kernel
inside the loss computation (``objectives/engine.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from .errors import ObjectiveInputError

__all__ = [
    "KINDS",
    "LevelTargets",
    "Pairs",
    "binary_targets",
    "cooccurrence",
    "ids_from_multi_hot",
    "is_multi_hot",
    "medclip_targets",
    "present_mask",
    "soft_targets",
]

Kind = Literal["identity", "exact", "jaccard", "medclip"]
KINDS: tuple[str, ...] = ("identity", "exact", "jaccard", "medclip")

#: element budget of one block when a kernel is evaluated on all pairs of distinct label sets
_BLOCK_ELEMENTS = 1 << 22


# ---------------------------------------------------------------------------------------------------------
# label forms and the missing-text mask
# ---------------------------------------------------------------------------------------------------------
def is_multi_hot(labels: Tensor) -> bool:
    """True for multi-hot labels [B, C], False for ids [B]."""
    if labels.dim() == 2:
        return True
    if labels.dim() == 1:
        return False
    raise ObjectiveInputError(f"labels must be ids [B] or multi-hot [B, C]; got shape {tuple(labels.shape)}")


def present_mask(labels: Tensor | None, batch: int | None = None) -> Tensor:
    """Bool [B]: True where the sample has a text at this level.

    ids: ``id >= 0``; multi-hot: no negative entry in the row. ``labels=None`` means every text is present
    (then ``batch`` gives B)."""
    if labels is None:
        if batch is None:
            raise ValueError("present_mask(None) needs the batch size")
        return torch.ones(batch, dtype=torch.bool)
    if is_multi_hot(labels):
        if labels.dtype == torch.bool or not (labels.dtype.is_floating_point or labels.dtype.is_signed):
            return torch.ones(labels.shape[0], dtype=torch.bool, device=labels.device)
        return ~(labels < 0).any(dim=1)
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise ObjectiveInputError(f"ids must be an integer tensor [B]; got dtype {labels.dtype}")
    return labels >= 0


def ids_from_multi_hot(labels: Tensor) -> Tensor:
    """int64 [B]: equal ids iff equal multi-hot rows; -1 for missing rows (:func:`present_mask`)."""
    present = present_mask(labels)
    ids = torch.full((labels.shape[0],), -1, dtype=torch.long, device=labels.device)
    if bool(present.any()):
        _, inv = torch.unique(labels[present], dim=0, return_inverse=True)
        ids[present] = inv
    return ids


# ---------------------------------------------------------------------------------------------------------
# kernels on blocks
# ---------------------------------------------------------------------------------------------------------
def _jaccard_block(m_r: Tensor, m_c: Tensor, n_r: Tensor, n_c: Tensor) -> Tensor:
    """|a AND b| / |a OR b| for 0/1 rows, 0/0 := 1."""
    inter = m_r @ m_c.T
    union = (n_r[:, None] + n_c[None, :]).sub_(inter)
    empty = union <= 0
    out = inter.div_(union.clamp_(min=1.0))
    return out.masked_fill_(empty, 1.0)


def _medclip_block(m_r: Tensor, m_c: Tensor, gmax: float) -> Tensor:
    return (m_r @ m_c.T).sub_(gmax).exp_()


def _kernel_dense(kind: str, keys_r: Tensor, keys_c: Tensor, dtype: torch.dtype, gmax: float = 0.0) -> Tensor:
    if kind in ("identity", "exact"):
        return (keys_r[:, None] == keys_c[None, :]).to(dtype)
    if kind == "jaccard":
        return _jaccard_block(keys_r, keys_c, keys_r.sum(1), keys_c.sum(1))
    if kind == "medclip":
        return _medclip_block(keys_r, keys_c, gmax)
    raise ValueError(f"unknown target kind {kind!r}; known: {list(KINDS)}")


def _row_sums_by_unique(kind: str, keys: Tensor, gmax: float) -> Tensor:
    """c_i = sum_j K(keys_i, keys_j) over all rows of ``keys``, evaluated on the distinct rows only."""
    uniq, inv, cnt = torch.unique(keys, dim=0, return_inverse=True, return_counts=True)
    cnt = cnt.to(keys.dtype)
    u = uniq.shape[0]
    out = torch.empty(u, dtype=keys.dtype, device=keys.device)
    step = max(1, _BLOCK_ELEMENTS // max(u, 1))
    for r0 in range(0, u, step):
        out[r0 : r0 + step] = _kernel_dense(kind, uniq[r0 : r0 + step], uniq, keys.dtype, gmax) @ cnt
    return out[inv]


def _exact_counts(ids: Tensor, dtype: torch.dtype) -> Tensor:
    """c_i = #{j : ids_j == ids_i}."""
    _, inv, cnt = torch.unique(ids, return_inverse=True, return_counts=True)
    return cnt.index_select(0, inv).to(dtype)


def _on_present(fn, keys: Tensor, present: Tensor, all_present: bool, dtype: torch.dtype) -> Tensor:
    """``fn(keys of the present samples)`` scattered to [N], 0 for the missing samples."""
    if all_present:
        return fn(keys)
    out = torch.zeros(present.shape[0], dtype=dtype, device=present.device)
    kp = keys[present]
    if kp.shape[0]:
        out[present] = fn(kp)
    return out


# ---------------------------------------------------------------------------------------------------------
# per-level targets on the (gathered) batch, and pairs between the rows and columns of one matrix
# ---------------------------------------------------------------------------------------------------------
#: exact/identity positives are handled as a list of (row, column) pairs when they fill at most this
#: fraction of the matrix, else as dense kernel blocks
SPARSE_FRACTION = 0.25


def positive_pairs(keys_row: Tensor, keys_col: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """All (i, j) with ``keys_row[i] == keys_col[j]``, sorted by i: (pi, pj, row_ptr) with the pairs of row
    i at ``row_ptr[i]:row_ptr[i+1]``. O(P + (R + K) log K) for P pairs (sort + searchsorted)."""
    order = torch.argsort(keys_col, stable=True)
    ks = keys_col[order]
    lo = torch.searchsorted(ks, keys_row, right=False)
    cnt = torch.searchsorted(ks, keys_row, right=True) - lo
    row_ptr = torch.zeros(keys_row.shape[0] + 1, dtype=torch.long, device=keys_row.device)
    torch.cumsum(cnt, 0, out=row_ptr[1:])
    p = int(row_ptr[-1])
    pi = torch.repeat_interleave(torch.arange(keys_row.shape[0], device=keys_row.device), cnt, output_size=p)
    within = torch.arange(p, device=keys_row.device) - row_ptr[:-1].index_select(0, pi)
    pj = order.index_select(0, lo.index_select(0, pi) + within)
    return pi, pj, row_ptr


@dataclass(eq=False)
class Pairs:
    """Targets between the rows and the columns of one similarity matrix S [R, K].

    Row-direction weights (softmax over columns): ``K_ij * r_row_i``; column-direction weights (softmax over
    rows): ``K_ij * r_col_j``; ``t_row`` / ``t_col`` are the total target mass of a row / column.

    Exact and identity kernels are 0/1; when their positives are few (``sparse``) they are kept as the list
    of positive pairs (``pi``, ``pj``, ``row_ptr``; per-pair weights ``w_row = r_row[pi]``,
    ``w_col = r_col[pj]``) and no block of K is ever built. Otherwise :meth:`kernel` evaluates K on blocks of
    rows (a comparison for ids, a matmul for multi-hot labels)."""

    kind: str
    r_row: Tensor
    r_col: Tensor
    t_row: Tensor
    t_col: Tensor
    keys_row: Tensor | None = None
    keys_col: Tensor | None = None
    n_row: Tensor | None = None
    n_col: Tensor | None = None
    gmax: float = 0.0
    pi: Tensor | None = None
    pj: Tensor | None = None
    row_ptr: Tensor | None = None
    w_row: Tensor | None = None
    w_col: Tensor | None = None

    _ptr: list[int] | None = None

    @property
    def sparse(self) -> bool:
        return self.pi is not None

    def span(self, r0: int, r1: int) -> tuple[int, int]:
        """Index range of the positive pairs of rows r0..r1-1 (one host sync per Pairs)."""
        if self._ptr is None:
            self._ptr = self.row_ptr.tolist()
        return self._ptr[r0], self._ptr[r1]

    @property
    def binary_is_kernel(self) -> bool:
        """True when ``1[K > 0]`` equals ``K`` (identity and exact targets)."""
        return self.kind in ("identity", "exact")

    def kernel(self, r0: int, r1: int, dtype: torch.dtype) -> Tensor:
        """K for rows r0..r1-1 against all columns (bool for exact, float otherwise)."""
        if self.kind in ("exact", "identity"):
            return self.keys_row[r0:r1, None] == self.keys_col[None, :]
        if self.kind == "jaccard":
            return _jaccard_block(self.keys_row[r0:r1], self.keys_col, self.n_row[r0:r1], self.n_col)
        if self.kind == "medclip":
            return _medclip_block(self.keys_row[r0:r1], self.keys_col, self.gmax)
        raise RuntimeError(f"unknown kind {self.kind!r}")


@dataclass(eq=False)
class LevelTargets:
    """Targets of one level over the whole (gathered) batch of N samples.

    ``counts[i] = sum_j C_ij`` over present j; ``r`` is the row normaliser (``1/counts`` for soft targets, 1
    for unnormalised ones) and ``t`` the target mass of a row (1 for soft targets, ``counts`` otherwise);
    both are 0 for missing samples."""

    kind: str
    normalise: bool
    present: Tensor
    keys: Tensor | None
    counts: Tensor
    r: Tensor
    t: Tensor
    gmax: float = 0.0
    all_present: bool = True

    @classmethod
    def build(
        cls,
        kind: str,
        labels: Tensor | None,
        n: int,
        *,
        normalise: bool = True,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> LevelTargets:
        """Targets of kind ``kind`` for ``n`` samples with ``labels`` (None: no labels, every text present;
        only ``identity`` works without labels)."""
        if kind not in KINDS:
            raise ValueError(f"unknown target kind {kind!r}; known: {list(KINDS)}")
        if labels is None:
            if kind != "identity":
                raise ObjectiveInputError(f"target {kind!r} needs labels")
            present = torch.ones(n, dtype=torch.bool, device=device)
        else:
            if labels.shape[0] != n:
                raise ObjectiveInputError(f"labels have {labels.shape[0]} rows, the batch has {n}")
            present = present_mask(labels).to(device)
        all_present = bool(present.all())
        keys: Tensor | None = None
        gmax = 0.0
        if kind == "identity":
            keys = torch.arange(n, device=device)
            counts = present.to(dtype)
        elif kind == "exact":
            keys = ids_from_multi_hot(labels) if is_multi_hot(labels) else labels
            keys = keys.to(device=device, dtype=torch.long)
            counts = _on_present(lambda kp: _exact_counts(kp, dtype), keys, present, all_present, dtype)
        else:
            if not is_multi_hot(labels):
                raise ObjectiveInputError(f"target {kind!r} needs multi-hot labels [B, C]; got ids [B]")
            keys = labels.to(device=device, dtype=dtype)
            if kind == "jaccard":
                keys = (keys > 0).to(dtype)
            else:
                keys = keys.clamp(min=0)  # missing rows (negative values) are never used
                kp = keys if all_present else keys[present]
                gmax = float((kp * kp).sum(1).max()) if kp.shape[0] else 0.0
            counts = _on_present(lambda kp: _row_sums_by_unique(kind, kp, gmax), keys, present, all_present, dtype)
        mask = present.to(dtype)
        if normalise:
            r = counts.reciprocal() if all_present else mask / counts.clamp(min=1e-30)
            t = mask
        else:
            r = mask
            t = counts
        return cls(kind, normalise, present, keys, counts, r, t, gmax, all_present)

    def pairs(self, ridx: Tensor | None, cidx: Tensor | None) -> Pairs:
        """Pairs between rows ``ridx`` and columns ``cidx`` (global indices, increasing; None = all N)."""

        def take(x: Tensor | None, idx: Tensor | None) -> Tensor | None:
            return x if (x is None or idx is None) else x.index_select(0, idx)

        p = Pairs(
            self.kind,
            r_row=take(self.r, ridx),
            r_col=take(self.r, cidx),
            t_row=take(self.t, ridx),
            t_col=take(self.t, cidx),
            keys_row=take(self.keys, ridx),
            keys_col=take(self.keys, cidx),
            gmax=self.gmax,
        )
        if self.kind == "identity":
            n = self.present.shape[0]
            rows = ridx if ridx is not None else torch.arange(n, device=self.present.device)
            cols = cidx if cidx is not None else torch.arange(n, device=self.present.device)
            if ridx is None and cidx is None:
                p.pi = p.pj = rows
            else:
                p.pi = torch.arange(rows.shape[0], device=rows.device)
                p.pj = torch.searchsorted(cols, rows)
            p.row_ptr = torch.arange(rows.shape[0] + 1, device=rows.device)
        elif self.kind == "exact":
            r, k = p.keys_row.shape[0], p.keys_col.shape[0]
            pi, pj, row_ptr = positive_pairs(p.keys_row, p.keys_col)
            if pi.shape[0] <= SPARSE_FRACTION * r * k:
                p.pi, p.pj, p.row_ptr = pi, pj, row_ptr
        elif self.kind == "jaccard":
            p.n_row = p.keys_row.sum(1)
            p.n_col = p.keys_col.sum(1)
        if p.sparse:
            p.w_row = p.r_row.index_select(0, p.pi)
            p.w_col = p.r_col.index_select(0, p.pj)
        return p

    def dense(self) -> Tensor:
        """C [N, N] (rows and columns of missing samples are 0). For tests and inspection."""
        n = self.present.shape[0]
        dtype = self.counts.dtype
        if self.kind == "identity":
            c = torch.eye(n, dtype=dtype, device=self.present.device)
        else:
            c = _kernel_dense(self.kind, self.keys, self.keys, dtype, self.gmax)
        if self.all_present:
            return c
        m = self.present.to(dtype)
        return c.mul_(m[:, None]).mul_(m[None, :])


# ---------------------------------------------------------------------------------------------------------
# dense helpers (tests, inspection, the benchmark)
# ---------------------------------------------------------------------------------------------------------
def cooccurrence(labels: Tensor, mode: str = "exact", dtype: torch.dtype = torch.float32) -> Tensor:
    """Co-occurrence C [B, B] from ids or multi-hot labels (``mode`` ``exact`` or ``jaccard``; also
    ``identity`` and ``medclip``). Rows and columns of missing samples are 0."""
    return LevelTargets.build(mode, labels, labels.shape[0], normalise=True, dtype=dtype, device=labels.device).dense()


def soft_targets(c: Tensor) -> Tensor:
    """W = C row-normalised (rows sum to 1; all-zero rows, i.e. missing samples, stay 0)."""
    return c / c.sum(dim=1, keepdim=True).clamp(min=torch.finfo(c.dtype).tiny)


def binary_targets(c: Tensor) -> Tensor:
    """Y = 1[C > 0]."""
    return (c > 0).to(c.dtype)


def medclip_targets(multi_hot: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """MedCLIP's semantic target softmax_row(M M^T) (no missing-sample handling; for reference)."""
    m = multi_hot.to(dtype)
    return torch.softmax(m @ m.T, dim=1)
