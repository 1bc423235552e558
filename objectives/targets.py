"""Targets from labels: co-occurrence, soft and binary targets, and the masks of missing texts.

Labels of one level arrive as
- ids: an integer tensor [B]; equal ids mean identical texts;
- multi-hot: a tensor [B, C] (0/1, any dtype) over the level's label vocabulary.

Missing texts (project convention). In ``labels[level]`` an id with a negative value (``-1``) marks a sample
whose text at that level is missing; for multi-hot labels a row holding any negative value (e.g. all ``-1``)
marks it. The texts tensor still has a row for that sample; its content is ignored. See
:func:`present_mask` (in ``objectives/labels.py`` with the other label helpers; re-exported here).

Co-occurrence ``C`` (symmetric, B x B), over the present samples:
- ``identity``: ``C = I`` (instance discrimination; keys are the samples' global indices);
- ``exact``: ``C_ij = 1[id_i == id_j]`` (from multi-hot labels: identical rows);
- ``jaccard``: ``C_ij = |m_i AND m_j| / |m_i OR m_j|`` with ``0/0 := 1`` (two empty label sets match);
- ``medclip``: ``C_ij = exp(G_ij - g)`` with ``G = M M^T`` (label dot products) and ``g = max_i G_ii``, so
  that the row-normalised ``C`` is MedCLIP's ``softmax_row(M M^T)``.

Soft target ``W_ij = C_ij / sum_k C_ik`` (rows sum to 1), binary target ``Y_ij = 1[C_ij > 0]``. The plain
dense formulas are in ``objectives/functional.py`` (what the reference implementations use).

Where the work happens (no device-to-host synchronisation). Everything whose *shape* depends on the labels
(which samples are present, the counts of equal ids, the list of positive pairs, the number of distinct
label sets) is computed from the labels on the host, once per batch, before anything is copied to the device
(copies are ``non_blocking``); labels given on a device are copied to the host first (one synchronisation: the
training loop hands them over on the host). What only needs arithmetic on the device (Jaccard and MedCLIP
row sums, kernel blocks) is computed there. The objectives never build B x B target matrices: they ask a
:class:`LevelTargets` for :class:`Pairs` between the rows and the columns of one similarity matrix and
evaluate blocks of the kernel inside the loss computation (``objectives/engine.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from .errors import ObjectiveInputError
from .labels import ids_from_multi_hot, is_multi_hot, present_mask, to_device

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

#: element budget of one block when a kernel is evaluated on all pairs of label sets
_BLOCK_ELEMENTS = 1 << 22
#: exact/identity positives are handled as a list of (row, column) pairs when they fill at most this
#: fraction of the matrix, else as dense kernel blocks
SPARSE_FRACTION = 0.25
#: off the CPU the list is also copied to the device: at most this many positives per row on average
SPARSE_PER_ROW_DEVICE = 64


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


def _row_sums(kind: str, keys: Tensor, weight: Tensor, gmax: float) -> Tensor:
    """c_i = sum_j K(keys_i, keys_j) weight_j, in blocks of rows (shapes fixed: runs on any device)."""
    n = keys.shape[0]
    out = torch.empty(n, dtype=keys.dtype, device=keys.device)
    step = max(1, _BLOCK_ELEMENTS // max(n, 1))
    for r0 in range(0, n, step):
        out[r0 : r0 + step] = _kernel_dense(kind, keys[r0 : r0 + step], keys, keys.dtype, gmax) @ weight
    return out


def _row_sums_by_unique(kind: str, keys: Tensor, gmax: float) -> Tensor:
    """As :func:`_row_sums` with weight 1, evaluated on the distinct rows only (the host's way)."""
    uniq, inv, cnt = torch.unique(keys, dim=0, return_inverse=True, return_counts=True)
    return _row_sums(kind, uniq, cnt.to(keys.dtype), gmax)[inv]


def _exact_counts(ids: Tensor, dtype: torch.dtype) -> Tensor:
    """c_i = #{j : ids_j == ids_i}."""
    _, inv, cnt = torch.unique(ids, return_inverse=True, return_counts=True)
    return cnt.index_select(0, inv).to(dtype)


def positive_pairs(keys_row: Tensor, keys_col: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """All (i, j) with ``keys_row[i] == keys_col[j]``, sorted by i: (pi, pj, row_ptr) with the pairs of row
    i at ``row_ptr[i]:row_ptr[i+1]``. O(P + (R + K) log K) for P pairs (sort + searchsorted). Host tensors."""
    order = torch.argsort(keys_col, stable=True)
    ks = keys_col[order]
    lo = torch.searchsorted(ks, keys_row, right=False)
    cnt = torch.searchsorted(ks, keys_row, right=True) - lo
    row_ptr = torch.zeros(keys_row.shape[0] + 1, dtype=torch.long)
    torch.cumsum(cnt, 0, out=row_ptr[1:])
    p = int(row_ptr[-1])
    pi = torch.repeat_interleave(torch.arange(keys_row.shape[0]), cnt, output_size=p)
    within = torch.arange(p) - row_ptr[:-1].index_select(0, pi)
    pj = order.index_select(0, lo.index_select(0, pi) + within)
    return pi, pj, row_ptr


# ---------------------------------------------------------------------------------------------------------
# pairs between the rows and columns of one matrix, and per-level targets on the (gathered) batch
# ---------------------------------------------------------------------------------------------------------
@dataclass(eq=False)
class Pairs:
    """Targets between the rows and the columns of one similarity matrix S [R, K] (device tensors).

    Row-direction weights (softmax over columns): ``K_ij * r_row_i``; column-direction weights (softmax over
    rows): ``K_ij * r_col_j``; ``t_row`` / ``t_col`` are the total target mass of a row / column.

    Exact and identity kernels are 0/1; when their positives are few (``sparse``) they are kept as the list
    of positive pairs (``pi``, ``pj``; per-pair weights ``w_row = r_row[pi]``, ``w_col = r_col[pj]``; the
    pairs of rows r0..r1-1 are :meth:`span`, known on the host) and no block of K is ever built. Otherwise
    :meth:`kernel` evaluates K on blocks of rows (a comparison for ids, a matmul for multi-hot labels)."""

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
    w_row: Tensor | None = None
    w_col: Tensor | None = None
    #: host row pointers of the pairs (None with ``pi``: one pair per row, row i's at index i)
    row_ptr: list[int] | None = None

    @property
    def sparse(self) -> bool:
        return self.pi is not None

    def span(self, r0: int, r1: int) -> tuple[int, int]:
        """Index range of the positive pairs of rows r0..r1-1 (host arithmetic)."""
        if self.row_ptr is None:
            return r0, r1
        return self.row_ptr[r0], self.row_ptr[r1]

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

    Host: ``present`` (bool [N]), ``all_present``, ``n_present``, ``keys_host``. Device: ``keys``, ``counts``
    (``sum_j C_ij`` over present j), ``r`` (the row normaliser: ``1/counts`` for soft targets, 1 for
    unnormalised ones) and ``t`` (the target mass of a row: 1 for soft targets, ``counts`` otherwise); ``r``
    and ``t`` are 0 for missing samples."""

    kind: str
    normalise: bool
    present: Tensor
    keys_host: Tensor | None
    keys: Tensor | None
    counts: Tensor
    r: Tensor
    t: Tensor
    gmax: float = 0.0
    all_present: bool = True
    n_present: int = 0
    device: torch.device | None = None

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
        only ``identity`` works without labels). Labels on a device are copied to the host first."""
        if kind not in KINDS:
            raise ValueError(f"unknown target kind {kind!r}; known: {list(KINDS)}")
        device = torch.device(device)
        if labels is None:
            if kind != "identity":
                raise ObjectiveInputError(f"target {kind!r} needs labels")
            present = torch.ones(n, dtype=torch.bool)
        else:
            if labels.shape[0] != n:
                raise ObjectiveInputError(f"labels have {labels.shape[0]} rows, the batch has {n}")
            labels = labels.detach().cpu()
            present = present_mask(labels)
        n_present = int(present.sum())
        all_present = n_present == n
        keys_host: Tensor | None = None
        gmax = 0.0
        counts: Tensor
        if kind == "identity":
            counts = present.to(dtype)
        elif kind == "exact":
            keys_host = (ids_from_multi_hot(labels) if is_multi_hot(labels) else labels).to(torch.long)
            counts = torch.zeros(n, dtype=dtype)
            if n_present:
                counts[present] = _exact_counts(keys_host[present], dtype)
        else:
            if not is_multi_hot(labels):
                raise ObjectiveInputError(f"target {kind!r} needs multi-hot labels [B, C]; got ids [B]")
            keys_host = labels.to(dtype)
            if kind == "jaccard":
                keys_host = (keys_host > 0).to(dtype)
            else:
                keys_host = keys_host.clamp(min=0)  # missing rows (negative values) are never used
                kp = keys_host[present]
                gmax = float((kp * kp).sum(1).max()) if n_present else 0.0
            if device.type == "cpu":  # on the host: the kernel on the distinct label sets only
                counts = torch.zeros(n, dtype=dtype)
                if n_present:
                    counts[present] = _row_sums_by_unique(kind, keys_host[present], gmax)
            else:  # on the device, fixed shapes: the kernel against the present columns
                keys_dev = to_device(keys_host, device)
                mask_dev = to_device(present.to(dtype), device)
                counts = _row_sums(kind, keys_dev, mask_dev, gmax).mul_(mask_dev)
        mask = to_device(present.to(dtype), counts.device) if counts.device != present.device else present.to(dtype)
        if normalise:
            r = counts.reciprocal() if all_present else mask / counts.clamp(min=1e-30)
            t = mask
        else:
            r = mask
            t = counts
        return cls(kind, normalise, present, keys_host, to_device(keys_host, device), to_device(counts, device),
                   to_device(r, device), to_device(t, device), gmax, all_present, n_present, device)

    def pairs(self, ridx: Tensor | None, cidx: Tensor | None) -> Pairs:
        """Pairs between rows ``ridx`` and columns ``cidx`` (host tensors of global indices, increasing;
        None = all N)."""
        dev = self.device
        ridx_d, cidx_d = to_device(ridx, dev), to_device(cidx, dev)

        def take(x: Tensor | None, idx: Tensor | None) -> Tensor | None:
            return x if (x is None or idx is None) else x.index_select(0, idx)

        p = Pairs(
            self.kind,
            r_row=take(self.r, ridx_d),
            r_col=take(self.r, cidx_d),
            t_row=take(self.t, ridx_d),
            t_col=take(self.t, cidx_d),
            keys_row=take(self.keys, ridx_d),
            keys_col=take(self.keys, cidx_d),
            gmax=self.gmax,
        )
        n = self.present.shape[0]
        if self.kind == "identity":  # one positive per row: the row's own column
            if ridx is None and cidx is None:
                p.pi = p.pj = torch.arange(n, device=dev)
            else:
                rows = ridx if ridx is not None else torch.arange(n)
                cols = cidx if cidx is not None else torch.arange(n)
                p.pi = torch.arange(rows.shape[0], device=dev)
                p.pj = to_device(torch.searchsorted(cols, rows), dev)
        elif self.kind == "exact":
            kr = self.keys_host if ridx is None else self.keys_host.index_select(0, ridx)
            kc = self.keys_host if cidx is None else self.keys_host.index_select(0, cidx)
            r, k = kr.shape[0], kc.shape[0]
            pi, pj, row_ptr = positive_pairs(kr, kc)
            few = pi.shape[0] <= SPARSE_FRACTION * r * k
            if few and (dev.type == "cpu" or pi.shape[0] <= SPARSE_PER_ROW_DEVICE * max(r, 1)):
                p.pi, p.pj, p.row_ptr = to_device(pi, dev), to_device(pj, dev), row_ptr.tolist()
        elif self.kind == "jaccard":
            p.n_row = p.keys_row.sum(1)
            p.n_col = p.keys_col.sum(1)
        if p.sparse:
            p.w_row = p.r_row if (self.kind == "identity" and ridx is None and cidx is None) else p.r_row.index_select(0, p.pi)
            p.w_col = p.r_col.index_select(0, p.pj)
        return p

    def dense(self) -> Tensor:
        """C [N, N] (rows and columns of missing samples are 0). For tests and inspection."""
        n = self.present.shape[0]
        dtype = self.counts.dtype
        if self.kind == "identity":
            c = torch.eye(n, dtype=dtype, device=self.counts.device)
        else:
            c = _kernel_dense(self.kind, self.keys, self.keys, dtype, self.gmax)
        if self.all_present:
            return c
        m = to_device(self.present.to(dtype), c.device)
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
