"""Label fractions: a stratified, deterministic subsample of a training split.

Strata: the class (multi-class), or, for multi-label targets, the sample's *rarest* positive label (rarest
by its count in the split; ties -> lower label index; samples with no positive label form their own
stratum). Allocation: ``n = round(fraction * N)`` samples split across strata in proportion to their size
(largest-remainder rounding), with at least one sample per stratum -- so ``n = max(round(fraction * N),
number of strata)``. Within a stratum the samples are taken in the order of a permutation seeded by ``(seed, stratum)``,
so a stratum's pick does not depend on the other strata, and with a fixed seed a smaller fraction usually
picks a subset of a larger one. Multi-label: every label that has a positive in the split gets at least one
positive in the subsample (one positive sample is added per label that would otherwise have none, drawn
from a permutation seeded by ``(seed, label)``), which can add at most ``C`` samples to ``n``.
"""

from __future__ import annotations

import logging
import math

import numpy as np

log = logging.getLogger(__name__)


def stratify_key(targets: np.ndarray, kind: str) -> np.ndarray:
    """int64 ``[N]``: the class (multi-class) or the rarest positive label, ``-1`` for none (multi-label)."""
    t = np.asarray(targets)
    if kind == "multiclass":
        return t.astype(np.int64).reshape(-1)
    counts = t.sum(axis=0).astype(np.float64)
    # rank labels by (count, index); a sample's key is its positive label with the smallest rank
    rank = np.empty(len(counts), dtype=np.int64)
    rank[np.lexsort((np.arange(len(counts)), counts))] = np.arange(len(counts))
    masked = np.where(t.astype(bool), rank[None, :], len(counts))
    best = masked.min(axis=1)
    inverse = np.argsort(rank)  # rank -> label
    return np.where(best < len(counts), inverse[np.minimum(best, len(counts) - 1)], -1).astype(np.int64)


def _allocate(sizes: np.ndarray, total: int) -> np.ndarray:
    """Largest-remainder allocation of ``total`` over strata of ``sizes``, at least 1 each, at most the size."""
    quota = total * sizes / sizes.sum()
    take = np.minimum(np.maximum(np.floor(quota).astype(np.int64), 1), sizes)
    left = total - int(take.sum())
    while left < 0:  # the minimum of one per stratum overshot: trim where the surplus over the quota is largest
        surplus = np.where(take > 1, take - quota, -np.inf)
        j = int(np.argmax(surplus))
        if not np.isfinite(surplus[j]):
            break
        take[j] -= 1
        left += 1
    if left > 0:
        frac = quota - np.floor(quota)
        # largest fractional part first; ties -> larger stratum, then stratum order
        for j in np.lexsort((np.arange(len(sizes)), -sizes, -frac)):
            if left == 0:
                break
            if take[j] < sizes[j]:
                take[j] += 1
                left -= 1
    return take


def label_fraction_indices(targets: np.ndarray, kind: str, fraction: float, seed: int = 0) -> np.ndarray:
    """Sorted indices of the stratified subsample holding about ``fraction`` of the samples (see module doc).

    ``fraction`` in ``(0, 1]``; ``1`` returns every index.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    t = np.asarray(targets)
    n = len(t)
    if fraction >= 1.0 or n == 0:
        return np.arange(n)
    key = stratify_key(t, kind)
    strata, inverse = np.unique(key, return_inverse=True)
    sizes = np.bincount(inverse, minlength=len(strata))
    total = max(1, int(math.floor(fraction * n + 0.5)))
    take = _allocate(sizes, total)
    chosen: list[np.ndarray] = []
    for j, k in enumerate(strata):
        members = np.flatnonzero(inverse == j)
        perm = np.random.default_rng([int(seed), int(k) + 1]).permutation(len(members))
        chosen.append(members[perm[: take[j]]])
    picked = np.concatenate(chosen)
    if kind == "multilabel":
        picked = _ensure_positives(t, picked, seed)
    if len(picked) > total:
        log.info("label fraction %.4g: %d samples instead of %d, to keep every stratum/label", fraction, len(picked), total)
    return np.sort(picked)


def _ensure_positives(t: np.ndarray, picked: np.ndarray, seed: int) -> np.ndarray:
    has = np.zeros(len(t), dtype=bool)
    has[picked] = True
    extra: list[int] = []
    for label in range(t.shape[1]):
        pos = np.flatnonzero(t[:, label] == 1)
        if len(pos) == 0 or has[pos].any():
            continue
        pos = pos[np.random.default_rng([int(seed), 1_000_003, label]).permutation(len(pos))]
        has[pos[0]] = True
        extra.append(int(pos[0]))
    return np.concatenate([picked, np.asarray(extra, dtype=np.int64)]) if extra else picked
