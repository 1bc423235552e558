"""Every objective against the slow reference of tests/objectives/obj_reference.py (values and gradients,
float64), plus the special cases the specification implies."""

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


def _grads(loss, tensors):
    gs = torch.autograd.grad(loss, tensors, allow_unused=True, retain_graph=True)
    return [torch.zeros_like(t) if g is None else g for g, t in zip(gs, tensors)]


def assert_same(got_loss, want_loss, tensors):
    torch.testing.assert_close(got_loss, torch.as_tensor(want_loss, dtype=got_loss.dtype), **TOL)
    for g1, g2 in zip(_grads(got_loss, tensors), _grads(want_loss, tensors)):
        torch.testing.assert_close(g1, g2, **TOL)


def test_clip_matches_reference():
    image, texts, ids, s = make_batch(levels=("disease",))
    out = objectives.build("clip")(image, texts, ids, s)
    assert set(out) == {"loss", "clip/disease"}
    assert_same(out["loss"], ref.clip(image, texts["disease"], s), [image, texts["disease"], s])


@pytest.mark.parametrize("use_labels", [False, True])
def test_siglip_matches_reference(use_labels):
    image, texts, ids, s = make_batch(levels=("disease",))
    b = torch.tensor(-2.0, dtype=torch.float64, requires_grad=True)
    out = objectives.build("siglip", use_labels=use_labels)(image, texts, ids, s, b)
    want = ref.siglip(image, texts["disease"], s, b, ids["disease"], use_labels=use_labels)
    assert_same(out["loss"], want, [image, texts["disease"], s, b])


def test_siglip_jaccard_labels():
    image, texts, _, s = make_batch(levels=("disease",))
    mh = make_multi_hot()
    b = torch.tensor(-1.0, dtype=torch.float64, requires_grad=True)
    out = objectives.build("siglip", use_labels=True, target="jaccard")(image, texts, {"disease": mh}, s, b)
    want = ref.siglip(image, texts["disease"], s, b, mh, use_labels=True, target="jaccard")
    assert_same(out["loss"], want, [image, texts["disease"], s, b])


@pytest.mark.parametrize("target", ["exact", "jaccard"])
def test_clip_multipositive_matches_reference(target):
    image, texts, ids, s = make_batch(levels=("disease",))
    labels = {"disease": make_multi_hot()} if target == "jaccard" else ids
    out = objectives.build("clip_multipositive", target=target)(image, texts, labels, s)
    want = ref.clip_multipositive(image, texts["disease"], s, labels["disease"], target=target)
    assert_same(out["loss"], want, [image, texts["disease"], s])


@pytest.mark.parametrize("name", ["soft_clip", "unicl", "flair"])
def test_soft_clip_matches_reference(name):
    image, texts, ids, s = make_batch()
    out = objectives.build(name)(image, texts, ids, s)
    assert set(out) == {"loss", "soft_clip/disease", "soft_clip/description"}
    assert_same(out["loss"], ref.soft_clip(image, texts, s, ids), [image, *texts.values(), s])


def test_soft_clip_jaccard_matches_reference():
    image, texts, _, s = make_batch()
    labels = {"disease": make_multi_hot(seed=1), "description": make_multi_hot(seed=2, empty_rows=(0, 3))}
    out = objectives.build("soft_clip", target="jaccard")(image, texts, labels, s)
    assert_same(out["loss"], ref.soft_clip(image, texts, s, labels, target="jaccard"), [image, *texts.values(), s])


def test_medclip_matches_reference():
    image, texts, _, s = make_batch(levels=("findings",))
    mh = make_multi_hot(c=5)
    out = objectives.build("medclip")(image, texts, {"findings": mh}, s)
    assert_same(out["loss"], ref.medclip(image, texts["findings"], s, mh), [image, texts["findings"], s])


MGLL_CASES = [
    dict(),
    dict(terms=["sclip"]),
    dict(terms=["pointwise"]),
    dict(terms=["sclip", "pointwise"]),
    dict(terms=["skl"]),
    dict(weights=[0.2, 0.7, 1.3]),
    dict(soft_labels=False),
    dict(pointwise_target="soft"),
    dict(target="jaccard"),
    dict(target="jaccard", pointwise_target="soft"),
]


@pytest.mark.parametrize("opts", MGLL_CASES, ids=[str(c) for c in MGLL_CASES])
def test_mgll_matches_reference(opts):
    image, texts, ids, s = make_batch()
    labels = ids
    if opts.get("target") == "jaccard":
        labels = {"disease": make_multi_hot(seed=1), "description": make_multi_hot(seed=2, empty_rows=(0, 3))}
    out = objectives.build("mgll", **opts)(image, texts, labels, s)
    kw = {k: v for k, v in opts.items() if k in ("soft_labels", "target", "pointwise_target")}
    want, terms = ref.mgll(
        image,
        texts,
        s,
        labels,
        terms=tuple(opts.get("terms", ("sclip", "pointwise", "skl"))),
        weights=tuple(opts.get("weights", (0.5, 1.0, 1.0))),
        **kw,
    )
    for k, v in out.items():
        if k != "loss":
            torch.testing.assert_close(v, terms[k], **TOL)
    assert_same(out["loss"], want, [image, *texts.values(), s])


def test_mgll_three_levels():
    image, texts, ids, s = make_batch(levels=("modality", "study", "series"), b=7)
    out = objectives.build("mgll")(image, texts, ids, s)
    want, _ = ref.mgll(image, texts, s, ids)
    assert_same(out["loss"], want, [image, *texts.values(), s])


def test_mgll_released_matches_transcription_with_finite_kl():
    # all-positive features -> all-positive logits -> the raw-logit KL is finite and added
    g = torch.Generator().manual_seed(3)
    image = torch.rand(6, 4, generator=g, dtype=torch.float64).requires_grad_()
    texts = {lv: torch.rand(6, 4, generator=g, dtype=torch.float64).requires_grad_() for lv in ("kw", "desc")}
    ids = {"kw": torch.tensor([0, 1, 0, 2, 1, 0]), "desc": torch.tensor([0, 1, 2, 3, 1, 0])}
    s = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    obj = objectives.build("mgll_released")
    out = obj(image, texts, ids, s)
    want, terms = ref.mgll_released(image, texts, s, ids)
    assert torch.isfinite(terms["kl_raw"]) and float(out["kl_dropped"]) == 0.0
    torch.testing.assert_close(out["kl_raw"], terms["kl_raw"], **TOL)
    assert_same(out["loss"], want, [image, *texts.values(), s])
    assert (obj.kl_calls, obj.kl_dropped_count) == (1, 0)


def test_mgll_released_drops_nan_kl_and_reports_it():
    image, texts, ids, s = make_batch(levels=("kw", "desc"))  # cosine logits of both signs -> NaN KL
    obj = objectives.build("mgll_released")
    out = obj(image, texts, ids, s)
    want, terms = ref.mgll_released(image, texts, s, ids)
    assert not torch.isfinite(terms["kl_raw"])
    assert torch.isnan(out["kl_raw"]) and float(out["kl_dropped"]) == 1.0
    assert torch.isfinite(out["loss"])
    for k in ("softce/kw", "bce/kw", "softce/desc", "bce/desc"):
        torch.testing.assert_close(out[k], terms[k], **TOL)
    assert_same(out["loss"], want, [image, *texts.values(), s])
    obj(image, texts, ids, s)
    assert (obj.kl_calls, obj.kl_dropped_count) == (2, 2)


# ---------------------------------------------------------------------------------------------------------
# special cases implied by the specification
# ---------------------------------------------------------------------------------------------------------


def test_soft_clip_with_distinct_ids_equals_clip():
    image, texts, _, s = make_batch(levels=("disease",))
    ids = {"disease": torch.arange(6) * 7}
    a = objectives.build("soft_clip")(image, texts, ids, s)["loss"]
    b = objectives.build("clip")(image, texts, None, s)["loss"]
    assert_same(a, b, [image, texts["disease"], s])
    c = objectives.build("clip_multipositive")(image, texts, ids, s)["loss"]
    assert_same(c, b, [image, texts["disease"], s])


def test_mgll_one_level_sclip_is_a1_times_soft_clip():
    """mgll(levels=[g], terms=[sclip]): the term "sclip/g" equals soft_clip's term, and the loss is
    a1 * soft_clip (the spec's total L = a1 sum_g sCLIP_g; default a1 = 0.5)."""
    image, texts, ids, s = make_batch()
    soft = objectives.build("soft_clip", levels=["disease"])(image, texts, ids, s)
    for a1 in (0.5, 2.0):
        out = objectives.build("mgll", levels=["disease"], terms=["sclip"], weights=[a1, 1, 1])(image, texts, ids, s)
        torch.testing.assert_close(out["sclip/disease"], soft["soft_clip/disease"], **TOL)
        assert_same(out["loss"], a1 * soft["loss"], [image, texts["disease"], s])


def test_identical_levels_give_zero_skl():
    image, texts, ids, s = make_batch(levels=("a",))
    texts2 = {"a": texts["a"], "b": texts["a"]}
    out = objectives.build("mgll")(image, texts2, {"a": ids["a"], "b": ids["a"]}, s)
    assert abs(out["skl"].detach().item()) < 1e-12
    assert out["sclip/a"].item() == pytest.approx(out["sclip/b"].item(), rel=1e-12)


def test_two_level_skl_is_twice_jensen_shannon():
    image, texts, ids, s = make_batch()
    out = objectives.build("mgll", terms=["skl"])(image, texts, ids, s)
    with torch.no_grad():
        p = torch.softmax(s * image @ texts["disease"].T, 1)
        q = torch.softmax(s * image @ texts["description"].T, 1)
        m = (p + q) / 2
        js = 0.5 * (p * (p / m).log()).sum(1) + 0.5 * (q * (q / m).log()).sum(1)
    torch.testing.assert_close(out["skl"].detach(), 2 * js.mean(), **TOL)
