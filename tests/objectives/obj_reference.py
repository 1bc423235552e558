"""Slow, obviously-correct reference implementations of every objective, written from the specification
(shared/design/objectives.md) with explicit loops over rows and columns, in float64 torch scalars (so that
autograd gives reference gradients too). Nothing here shares code with ``objectives/``.

Missing texts (project convention): a negative id (or a multi-hot row with a negative entry) marks a sample
whose text at that level is missing; each level's terms use only the present samples (rows and columns),
the cross-level KL the samples present at every level.
"""

from __future__ import annotations

import math

import torch

# -------------------------------------------------------------------------------------------------------
# basic pieces
# -------------------------------------------------------------------------------------------------------


def similarity(x, y, s, b=None):
    """S_ij = s * <x_i, y_j> (+ b), by loops."""
    n, m, d = x.shape[0], y.shape[0], x.shape[1]
    rows = []
    for i in range(n):
        row = []
        for j in range(m):
            v = sum(x[i, k] * y[j, k] for k in range(d)) * s
            if b is not None:
                v = v + b
            row.append(v)
        rows.append(torch.stack(row))
    return torch.stack(rows)


def log_softmax_row(row):
    m = max(float(v.detach()) for v in row)
    lse = m + torch.log(sum(torch.exp(v - m) for v in row))
    return [v - lse for v in row]


def ce(S, T):
    """CE(S, T) = -(1/B) sum_i sum_j T_ij log softmax_j(S_i.)."""
    n = S.shape[0]
    total = 0.0
    for i in range(n):
        lp = log_softmax_row(list(S[i]))
        for j in range(S.shape[1]):
            total = total - T[i][j] * lp[j]
    return total / n


def transpose(M):
    return [[M[i][j] for i in range(len(M))] for j in range(len(M[0]))]


def bce_with_logits(z, y):
    """-[y log sigmoid(z) + (1 - y) log(1 - sigmoid(z))], written with log1p/exp for stability."""

    # log sigmoid(z) = -log(1 + e^-z); log(1 - sigmoid(z)) = -log(1 + e^z)
    def log1pexp(t):
        return torch.log1p(torch.exp(-abs(t))) + torch.clamp(t, min=0)

    return y * log1pexp(-z) + (1 - y) * log1pexp(z)


def present(labels):
    if labels is None:
        return None
    if labels.dim() == 1:
        return [i for i in range(labels.shape[0]) if int(labels[i]) >= 0]
    return [i for i in range(labels.shape[0]) if all(float(v) >= 0 for v in labels[i])]


# -------------------------------------------------------------------------------------------------------
# targets
# -------------------------------------------------------------------------------------------------------


def cooc_exact(labels):
    n = labels.shape[0]
    if labels.dim() == 1:
        keys = [int(v) for v in labels]
    else:
        keys = [tuple(float(v) for v in row) for row in labels]
    return [[1.0 if keys[i] == keys[j] else 0.0 for j in range(n)] for i in range(n)]


def cooc_jaccard(mh):
    n = mh.shape[0]
    sets = [{k for k in range(mh.shape[1]) if float(mh[i, k]) > 0} for i in range(n)]
    out = []
    for i in range(n):
        row = []
        for j in range(n):
            union = sets[i] | sets[j]
            row.append(1.0 if not union else len(sets[i] & sets[j]) / len(union))
        out.append(row)
    return out


def identity(n):
    return [[1.0 if i == j else 0.0 for j in range(n)] for i in range(n)]


def row_normalise(C):
    return [[c / sum(row) for c in row] for row in C]


def binary(C):
    return [[1.0 if c > 0 else 0.0 for c in row] for row in C]


def medclip_target(mh):
    n = mh.shape[0]
    G = [[sum(float(mh[i, k]) * float(mh[j, k]) for k in range(mh.shape[1])) for j in range(n)] for i in range(n)]
    out = []
    for i in range(n):
        m = max(G[i])
        z = sum(math.exp(g - m) for g in G[i])
        out.append([math.exp(g - m) / z for g in G[i]])
    return out


def cooc(labels, target):
    return cooc_jaccard(labels) if target == "jaccard" else cooc_exact(labels)


# -------------------------------------------------------------------------------------------------------
# objectives
# -------------------------------------------------------------------------------------------------------


def _sub(x, idx):
    return x if idx is None else x[idx]


def _n(x, idx):
    return x.shape[0] if idx is None else len(idx)


def clip(x, y, s, labels=None):
    P = present(labels)
    xs, ys = _sub(x, P), _sub(y, P)
    n = xs.shape[0]
    if n == 0:
        return torch.zeros((), dtype=x.dtype)
    S = similarity(xs, ys, s)
    eye = identity(n)
    return 0.5 * (ce(S, eye) + ce(S.T, eye))


def siglip(x, y, s, b, labels=None, use_labels=False, target="exact"):
    P = present(labels) if labels is not None else None
    xs, ys = _sub(x, P), _sub(y, P)
    n = xs.shape[0]
    S = similarity(xs, ys, s, b)
    Y = binary(cooc(labels[P] if P is not None else labels, target)) if use_labels else identity(n)
    total = 0.0
    for i in range(n):
        for j in range(n):
            z = 2 * Y[i][j] - 1
            total = total - torch.nn.functional.logsigmoid(z * S[i, j])
    return total / n


def soft_ce_pair(x, y, s, T):
    S = similarity(x, y, s)
    return 0.5 * (ce(S, T) + ce(S.T, T))  # CE(S^T, T): text j's target row is T_j.


def clip_multipositive(x, y, s, labels, target="exact"):
    P = present(labels)
    C = cooc(labels[P], target)
    return soft_ce_pair(x[P], y[P], s, C)


def soft_clip(x, texts, s, labels, target="exact"):
    total = 0.0
    for g in texts:
        P = present(labels[g])
        if not P:
            continue
        total = total + soft_ce_pair(x[P], texts[g][P], s, row_normalise(cooc(labels[g][P], target)))
    return total


def medclip(x, y, s, mh):
    P = present(mh)
    return soft_ce_pair(x[P], y[P], s, medclip_target(mh[P]))


def mgll_terms(x, texts, s, labels, soft_labels=True, target="exact", pointwise_target="binary"):
    """Returns {"sclip/g", "pointwise/g", "skl"} for every level in texts (skl when 2+ levels)."""
    out = {}
    levels = list(texts)
    for g in levels:
        P = present(labels[g]) if labels.get(g) is not None else list(range(x.shape[0]))
        n = len(P)
        if n == 0:
            out[f"sclip/{g}"] = torch.zeros((), dtype=x.dtype)
            out[f"pointwise/{g}"] = torch.zeros((), dtype=x.dtype)
            continue
        S = similarity(x[P], texts[g][P], s)
        if soft_labels:
            C = cooc(labels[g][P], target)
            W, Y = row_normalise(C), binary(C)
        else:
            W = Y = identity(n)
        if pointwise_target == "soft":
            Y = W
        out[f"sclip/{g}"] = 0.5 * (ce(S, W) + ce(S.T, W))
        bce = 0.0
        for i in range(n):
            for j in range(n):
                bce = bce + bce_with_logits(S[i, j], Y[i][j])
        out[f"pointwise/{g}"] = bce / (n * n)
    if len(levels) >= 2:
        Q = list(range(x.shape[0]))
        for g in levels:
            if labels.get(g) is not None:
                pg = set(present(labels[g]))
                Q = [i for i in Q if i in pg]
        if not Q:
            out["skl"] = torch.zeros((), dtype=x.dtype)
        else:
            LPs = {g: [log_softmax_row(list(row)) for row in similarity(x[Q], texts[g][Q], s)] for g in levels}
            total = 0.0
            G = len(levels)
            for i in range(len(Q)):
                for j in range(len(Q)):
                    m = sum(torch.exp(LPs[g][i][j]) for g in levels) / G
                    for g in levels:
                        p = torch.exp(LPs[g][i][j])
                        total = total + p * (LPs[g][i][j] - torch.log(m))
            out["skl"] = total / len(Q)
    return out


def mgll(x, texts, s, labels, terms=("sclip", "pointwise", "skl"), weights=(0.5, 1.0, 1.0), **kw):
    t = mgll_terms(x, texts, s, labels, **kw)
    a1, a2, a3 = weights
    loss = 0.0
    for k, v in t.items():
        kind = k.split("/")[0]
        if kind not in terms:
            continue
        loss = loss + {"sclip": a1, "pointwise": a2, "skl": a3}[kind] * v
    return loss, t


def mgll_released(x, texts, s, labels):
    """A direct transcription of the released MultiGranularModule maths (spec section mgll_released)."""
    kw, desc = list(texts)
    out = {}
    for g in (kw, desc):
        P = present(labels[g])
        S = similarity(x[P], texts[g][P], s)
        W = row_normalise(cooc_exact(labels[g][P]))
        n = len(P)
        out[f"softce/{g}"] = 0.25 * (ce(S, W) + ce(S.T, W))
        bce = 0.0
        for i in range(n):
            for j in range(n):
                bce = bce + bce_with_logits(S[i, j], W[i][j])
        out[f"bce/{g}"] = bce / (n * n)
    Q = [i for i in present(labels[kw]) if i in set(present(labels[desc]))]
    A = similarity(x[Q], texts[kw][Q], s)
    D = similarity(x[Q], texts[desc][Q], s)
    Mr = (A + D) / 2

    def kl_div(inp, target):  # torch's kl_div(input, target, reduction="batchmean")
        return (torch.xlogy(target, target) - target * inp).sum() / inp.shape[0]

    k = 0.5 * kl_div(torch.log(A), Mr) + 0.5 * kl_div(torch.log(D), Mr)
    out["kl_raw"] = k
    loss = out[f"softce/{kw}"] + out[f"bce/{kw}"] + out[f"softce/{desc}"] + out[f"bce/{desc}"]
    if torch.isfinite(k):
        loss = loss + 0.5 * k
    return loss, out
