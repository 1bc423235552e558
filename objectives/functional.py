"""The formulas of ``shared/design/objectives.md`` in plain torch: what every objective's ``reference``
implementation is written with (autograd gives the gradients). Dense B x B matrices, no tricks: read these
next to the specification. The fast engine (``objectives/engine.py``) must agree with them to float precision;
the tests check that on every objective and option.

Notation: ``S`` [B, K] logits (rows = images, columns = texts), ``T`` a target matrix of the same shape,
``C`` a co-occurrence matrix, ``W`` its row-normalised form, ``Y`` its binary form.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


__all__ = [
    "binary",
    "bce_mean",
    "cooccurrence",
    "logits",
    "mean_over",
    "medclip_target",
    "raw_kl",
    "row_normalise",
    "sigmoid_loss",
    "smooth_kl",
    "soft_ce",
]


def mean_over(total: Tensor, n: int | float) -> Tensor:
    """``total / n``, and ``total * 0`` (still on the graph) when there is nothing to average."""
    return total / n if n else total * 0.0


def logits(x: Tensor, y: Tensor, scale: Tensor, bias: Tensor | None = None) -> Tensor:
    """S = s X Y^T (+ b)."""
    s = scale * x @ y.T
    return s + bias if bias is not None else s


def soft_ce(S: Tensor, T: Tensor) -> Tensor:
    """CE(S, T) = -(1/B) sum_i sum_j T_ij log softmax_j(S_i.)   (B = rows of S)."""
    return mean_over(-(T * S.log_softmax(dim=1)).sum(), S.shape[0])


def bce_mean(S: Tensor, Y: Tensor) -> Tensor:
    """BCE-with-logits(S_ij, Y_ij) averaged over all entries."""
    return mean_over(F.binary_cross_entropy_with_logits(S, Y, reduction="sum"), S.numel())


def sigmoid_loss(S: Tensor, Y: Tensor) -> Tensor:
    """-(1/B) sum_ij log sigmoid(z_ij S_ij),  z = 2Y - 1   (SigLIP)."""
    return mean_over(-F.logsigmoid((2 * Y - 1) * S).sum(), S.shape[0])


def smooth_kl(S_levels: list[Tensor]) -> Tensor:
    """(1/B) sum_i sum_g KL(P^g_i || M_i),  P^g_i = softmax_j(S^g_i.),  M_i = (1/|G|) sum_g P^g_i,
    with log M = logsumexp_g log P^g - log |G|."""
    log_p = torch.stack([S.log_softmax(dim=1) for S in S_levels])  # [G, B, K]
    log_m = torch.logsumexp(log_p, dim=0) - math.log(len(S_levels))
    return mean_over((log_p.exp() * (log_p - log_m)).sum(), log_p.shape[1])


def raw_kl(A: Tensor, D: Tensor) -> Tensor:
    """The released MGLL code's ``kl_loss_2`` on raw logit matrices: with Mr = (A + D) / 2,
    k = 1/2 kl_div(log A, Mr, batchmean) + 1/2 kl_div(log D, Mr, batchmean), torch's
    ``kl_div(input, target) = sum(target (log target - input)) / B`` (NaN as soon as a logit is <= 0)."""
    Mr = (A + D) / 2
    b = A.shape[0]
    kl_a = mean_over((torch.xlogy(Mr, Mr) - Mr * torch.log(A)).sum(), b)
    kl_d = mean_over((torch.xlogy(Mr, Mr) - Mr * torch.log(D)).sum(), b)
    return 0.5 * kl_a + 0.5 * kl_d


# ---------------------------------------------------------------------------------------------------------
# targets (dense; the labels of the samples taking part)
# ---------------------------------------------------------------------------------------------------------
def cooccurrence(labels: Tensor, target: str, dtype: torch.dtype) -> Tensor:
    """C [B, B]: ``exact`` C_ij = 1[id_i == id_j] (multi-hot: identical rows); ``jaccard`` (multi-hot)
    C_ij = |m_i AND m_j| / |m_i OR m_j| with 0/0 := 1."""
    if target == "exact":
        if labels.dim() == 2:  # identical label sets
            return (labels[:, None, :] == labels[None, :, :]).all(dim=2).to(dtype)
        return (labels[:, None] == labels[None, :]).to(dtype)
    if target == "jaccard":
        m = (labels > 0).to(dtype)
        inter = m @ m.T
        union = m.sum(1)[:, None] + m.sum(1)[None, :] - inter
        return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(inter))
    raise ValueError(f"unknown target {target!r}")


def row_normalise(C: Tensor) -> Tensor:
    """W_ij = C_ij / sum_k C_ik."""
    return C / C.sum(dim=1, keepdim=True)


def binary(C: Tensor) -> Tensor:
    """Y_ij = 1[C_ij > 0]."""
    return (C > 0).to(C.dtype)


def medclip_target(multi_hot: Tensor, dtype: torch.dtype) -> Tensor:
    """MedCLIP's semantic target T = softmax_row(M M^T)."""
    m = multi_hot.to(dtype)
    return torch.softmax(m @ m.T, dim=1)
