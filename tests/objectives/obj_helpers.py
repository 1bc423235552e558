"""Helpers shared by the objective tests: small random batches (float64 by default)."""

from __future__ import annotations

import torch


def make_batch(b=6, d=4, levels=("disease", "description"), seed=0, dtype=torch.float64, normalise=True, scale=3.0):
    g = torch.Generator().manual_seed(seed)

    def feat():
        f = torch.randn(b, d, generator=g, dtype=dtype)
        return torch.nn.functional.normalize(f, dim=1) if normalise else f

    image = feat().requires_grad_()
    texts = {lv: feat().requires_grad_() for lv in levels}
    ids = {lv: torch.randint(0, max(2, b // 2), (b,), generator=g) for lv in levels}
    s = torch.tensor(scale, dtype=dtype, requires_grad=True)
    return image, texts, ids, s


def make_multi_hot(b=6, c=4, seed=1, empty_rows=(1,)):
    g = torch.Generator().manual_seed(seed)
    mh = (torch.rand(b, c, generator=g) > 0.5).long()
    for r in empty_rows:
        mh[r] = 0
    return mh


def grads(*tensors):
    return [t.grad.clone() if t.grad is not None else None for t in tensors]


def zero_grads(*tensors):
    for t in tensors:
        t.grad = None
