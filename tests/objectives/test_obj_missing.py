"""Missing texts (the paper's missing-label experiment): a negative id (or a multi-hot row with a negative
entry) marks a sample whose text at that level is missing. It takes no part in that level's terms (rows and
columns); the texts tensor still has a row for it, whose content is ignored; nothing divides by zero."""

from __future__ import annotations

import pytest
import torch

import objectives
import obj_reference as ref
from obj_helpers import make_batch, make_multi_hot

TOL = dict(rtol=1e-10, atol=1e-12)


@pytest.fixture(params=["fast", "reference"], autouse=True)
def impl(request, monkeypatch):
    """Every test here runs both implementations against the slow loops of obj_reference.py
    (``chunk_size`` is the fast engine's; the reference computes unchunked)."""
    real = objectives.build

    def build(name, **options):
        if request.param == "reference":
            options.pop("chunk_size", None)
        return real(name, **{"impl": request.param, **options})

    monkeypatch.setattr(objectives, "build", build)
    return request.param
SINGLE = [("clip", {}), ("siglip", {}), ("siglip", {"use_labels": True}), ("soft_clip", {}), ("clip_multipositive", {})]


def _loss_and_grads(obj, image, texts, labels, s, bias=None):
    out = obj(image, texts, labels, s, bias)
    tensors = [image, *texts.values(), s]
    gs = torch.autograd.grad(out["loss"], tensors, allow_unused=True)
    return out, [torch.zeros_like(t) if g is None else g for g, t in zip(gs, tensors)]


@pytest.mark.parametrize("name,opts", SINGLE, ids=[f"{n}{o}" for n, o in SINGLE])
@pytest.mark.parametrize("chunk", [0, 2])
def test_missing_sample_equals_dropping_it(name, opts, chunk):
    image, texts, ids, s = make_batch(b=7, levels=("disease",))
    bias = torch.tensor(-1.5, dtype=torch.float64)
    obj = objectives.build(name, chunk_size=chunk, **opts)
    k = 3
    masked = ids["disease"].clone()
    masked[k] = -1
    poisoned = texts["disease"].detach().clone()
    poisoned[k] = float("nan")  # the row of a missing text is never read
    poisoned.requires_grad_()
    out, g = _loss_and_grads(obj, image, {"disease": poisoned}, {"disease": masked}, s, bias)
    keep = [i for i in range(7) if i != k]
    img2 = image.detach()[keep].clone().requires_grad_()
    txt2 = texts["disease"].detach()[keep].clone().requires_grad_()
    s2 = s.detach().clone().requires_grad_()
    out2, g2 = _loss_and_grads(obj, img2, {"disease": txt2}, {"disease": ids["disease"][keep]}, s2, bias)
    torch.testing.assert_close(out["loss"], out2["loss"], **TOL)
    torch.testing.assert_close(g[0][keep], g2[0], **TOL)
    torch.testing.assert_close(g[1][keep], g2[1], **TOL)
    assert torch.all(g[0][k] == 0) and torch.all(g[1][k] == 0)
    torch.testing.assert_close(g[2], g2[2], **TOL)


def _masked_labels():
    ids = {"disease": torch.tensor([0, 1, 0, -1, 1, 2, 0]), "description": torch.tensor([0, -1, 1, 2, -1, 3, 0])}
    return ids


@pytest.mark.parametrize("opts", [{}, {"terms": ["skl"]}, {"pointwise_target": "soft"}, {"soft_labels": False}])
@pytest.mark.parametrize("chunk", [0, 3])
def test_mgll_with_missing_texts_matches_reference(opts, chunk):
    image, texts, _, s = make_batch(b=7)
    ids = _masked_labels()
    out, g = _loss_and_grads(objectives.build("mgll", chunk_size=chunk, **opts), image, texts, ids, s)
    kw = {k: v for k, v in opts.items() if k in ("soft_labels", "pointwise_target")}
    want, terms = ref.mgll(image, texts, s, ids, terms=tuple(opts.get("terms", ("sclip", "pointwise", "skl"))), **kw)
    for k, v in out.items():
        if k != "loss":
            torch.testing.assert_close(v, terms[k], **TOL)
    tensors = [image, *texts.values(), s]
    gw = torch.autograd.grad(want, tensors, allow_unused=True)
    for a, b in zip(g, gw):
        torch.testing.assert_close(a, torch.zeros_like(a) if b is None else b, **TOL)


def test_mgll_jaccard_with_missing_multi_hot_rows():
    image, texts, _, s = make_batch(b=6)
    labels = {"disease": make_multi_hot(seed=1), "description": make_multi_hot(seed=2, empty_rows=(0,))}
    labels["disease"][2] = -1
    labels["description"][4] = -1
    out = objectives.build("mgll", target="jaccard")(image, texts, labels, s)
    want, _ = ref.mgll(image, texts, s, labels, target="jaccard")
    torch.testing.assert_close(out["loss"], want, **TOL)


def test_mgll_released_with_missing_texts():
    g = torch.Generator().manual_seed(5)
    image = torch.rand(7, 4, generator=g, dtype=torch.float64).requires_grad_()
    texts = {lv: torch.rand(7, 4, generator=g, dtype=torch.float64).requires_grad_() for lv in ("kw", "desc")}
    ids = {"kw": torch.tensor([0, 1, 0, -1, 1, 2, 0]), "desc": torch.tensor([0, -1, 1, 2, 3, 3, 0])}
    s = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    out = objectives.build("mgll_released")(image, texts, ids, s)
    want, terms = ref.mgll_released(image, texts, s, ids)
    assert float(out["kl_dropped"]) == 0.0
    torch.testing.assert_close(out["kl_raw"], terms["kl_raw"], **TOL)
    torch.testing.assert_close(out["loss"], want, **TOL)


@pytest.mark.parametrize("name", ["clip", "siglip", "soft_clip", "clip_multipositive", "mgll", "mgll_released"])
@pytest.mark.parametrize("chunk", [0, 2])
def test_all_missing_gives_finite_zero_with_a_gradient_path(name, chunk):
    image, texts, ids, s = make_batch(b=5)
    none = {g: torch.full((5,), -1) for g in texts}
    obj = objectives.build(name, chunk_size=chunk)
    out = obj(image, texts, none, s, torch.tensor(-1.0, dtype=torch.float64))
    for k, v in out.items():
        if k not in ("kl_raw", "kl_dropped"):
            assert torch.isfinite(v) and float(v.detach()) == 0.0, k
    assert out["loss"].requires_grad
    out["loss"].backward()
    assert image.grad is not None and torch.all(image.grad == 0)


def test_one_level_all_missing_other_level_still_trains():
    image, texts, ids, s = make_batch(b=5)
    ids = {"disease": ids["disease"], "description": torch.full((5,), -1)}
    out = objectives.build("mgll")(image, texts, ids, s)
    assert float(out["sclip/description"].detach()) == 0.0 and float(out["skl"].detach()) == 0.0
    assert float(out["sclip/disease"].detach()) > 0
    out["loss"].backward()
    assert torch.all(texts["description"].grad == 0) and texts["disease"].grad.abs().sum() > 0


def test_medclip_missing_rows():
    image, texts, _, s = make_batch(b=6, levels=("findings",))
    mh = make_multi_hot(c=5)
    mh[4] = -1
    out = objectives.build("medclip")(image, texts, {"findings": mh}, s)
    keep = [0, 1, 2, 3, 5]
    want = ref.medclip(image[keep], texts["findings"][keep], s, mh[keep])
    torch.testing.assert_close(out["loss"], want, **TOL)
