"""``clip`` and ``siglip`` equal open_clip's ``ClipLoss`` and ``SigLipLoss`` (forward and gradients)."""

from __future__ import annotations

import pytest
import torch
from open_clip.loss import ClipLoss, SigLipLoss

import objectives


def _features(b, d, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.nn.functional.normalize(torch.randn(b, d, generator=g, dtype=dtype), dim=1)
    y = torch.nn.functional.normalize(torch.randn(b, d, generator=g, dtype=dtype), dim=1)
    return x, y


def _run(fn, x, y, s, bias=None):
    xs, ys = x.clone().requires_grad_(), y.clone().requires_grad_()
    ss = s.clone().requires_grad_()
    bb = bias.clone().requires_grad_() if bias is not None else None
    loss = fn(xs, ys, ss, bb)
    loss.backward()
    return loss.detach(), xs.grad, ys.grad, ss.grad, (bb.grad if bb is not None else None)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 2e-5)])
@pytest.mark.parametrize("b", [1, 7, 64])
@pytest.mark.parametrize("chunk", [0, 5])
def test_clip_equals_open_clip(dtype, tol, b, chunk):
    x, y = _features(b, 16, dtype, seed=b)
    s = torch.tensor(1 / 0.07, dtype=dtype)
    obj = objectives.build("clip", chunk_size=chunk)
    ours = _run(lambda x, y, s, _b: obj(x, {"caption": y}, None, s)["loss"], x, y, s)
    theirs = _run(lambda x, y, s, _b: ClipLoss()(x, y, s), x, y, s)
    for a, t in zip(ours, theirs):
        if a is not None:
            torch.testing.assert_close(a, t, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 2e-5)])
@pytest.mark.parametrize("b", [1, 7, 64])
@pytest.mark.parametrize("chunk", [0, 5])
def test_siglip_equals_open_clip(dtype, tol, b, chunk):
    x, y = _features(b, 16, dtype, seed=100 + b)
    s, bias = torch.tensor(10.0, dtype=dtype), torch.tensor(-10.0, dtype=dtype)
    obj = objectives.build("siglip", chunk_size=chunk)
    assert obj.needs_logit_bias and obj.init_logit_scale == 10.0 and obj.init_logit_bias == -10.0
    ours = _run(lambda x, y, s, bb: obj(x, {"caption": y}, None, s, bb)["loss"], x, y, s, bias)
    theirs = _run(lambda x, y, s, bb: SigLipLoss()(x, y, s, bb), x, y, s, bias)
    for a, t in zip(ours, theirs):
        torch.testing.assert_close(a, t, rtol=tol, atol=tol)
