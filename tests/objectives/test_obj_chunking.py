"""``chunk_size`` computes in row blocks (the backward recomputes them); results equal the unchunked ones."""

from __future__ import annotations

import pytest
import torch

import objectives
from obj_helpers import make_batch, make_multi_hot

CASES = [
    ("clip", {}, "ids"),
    ("siglip", {}, "ids"),
    ("siglip", {"use_labels": True, "target": "jaccard"}, "mh"),
    ("clip_multipositive", {}, "ids"),
    ("soft_clip", {}, "ids"),
    ("soft_clip", {"target": "jaccard"}, "mh"),
    ("medclip", {}, "mh"),
    ("mgll", {}, "ids"),
    ("mgll", {"target": "jaccard", "pointwise_target": "soft"}, "mh"),
    ("mgll", {"soft_labels": False, "terms": ["pointwise", "skl"]}, "ids"),
    ("mgll_released", {}, "ids"),
    ("mgll_released", {}, "positive"),
]


def _run(name, opts, kind, chunk):
    b = 13
    image, texts, ids, s = make_batch(b=b, d=5, seed=7, normalise=kind != "positive")
    if kind == "positive":  # all-positive logits: the released raw-logit KL is finite
        image = image.detach().abs().requires_grad_()
        texts = {g: t.detach().abs().requires_grad_() for g, t in texts.items()}
    labels = ids
    if kind == "mh":
        labels = {"disease": make_multi_hot(b=b, c=4, seed=3), "description": make_multi_hot(b=b, c=3, seed=4)}
    labels = {g: v.clone() for g, v in labels.items()}
    labels["description"][4] = -1  # a missing text too
    bias = torch.tensor(-2.0, dtype=torch.float64, requires_grad=True)
    out = objectives.build(name, chunk_size=chunk, **opts)(image, texts, labels, s, bias)
    tensors = [image, *texts.values(), s, bias]
    gs = torch.autograd.grad(out["loss"], tensors, allow_unused=True)
    return out, [torch.zeros_like(t) if g is None else g for g, t in zip(gs, tensors)]


@pytest.mark.parametrize("name,opts,kind", CASES, ids=[f"{n}-{o}-{k}" for n, o, k in CASES])
def test_chunked_equals_unchunked(name, opts, kind):
    want, gwant = _run(name, opts, kind, 0)
    if kind == "positive":
        assert float(want["kl_dropped"]) == 0.0 and torch.isfinite(want["kl_raw"])
    for chunk in (1, 4, 13, 100):
        got, ggot = _run(name, opts, kind, chunk)
        assert set(got) == set(want)
        for k in want:
            torch.testing.assert_close(got[k], want[k], rtol=1e-10, atol=1e-12, equal_nan=True)
        for a, b in zip(ggot, gwant):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ["mgll", "clip_multipositive", "mgll_released"])
def test_sparse_and_dense_positive_paths_agree(name, monkeypatch):
    """Exact targets use a list of positive pairs when few, dense kernel blocks otherwise; both agree."""
    import objectives.targets as targets

    results = []
    for fraction in (0.0, 1.0):  # 0: always dense, 1: always sparse
        monkeypatch.setattr(targets, "SPARSE_FRACTION", fraction)
        for chunk in (0, 4):
            results.append(_run(name, {}, "ids", chunk))
    want, gwant = results[0]
    for got, ggot in results[1:]:
        for k in want:
            torch.testing.assert_close(got[k], want[k], rtol=1e-10, atol=1e-12, equal_nan=True)
        for a, b in zip(ggot, gwant):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
