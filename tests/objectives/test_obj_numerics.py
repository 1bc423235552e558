"""Numerics: gradcheck, dtypes (half in -> fp32 out, float64 stays), autocast, NaN/inf raise naming the term."""

from __future__ import annotations

import pytest
import torch

import objectives
from objectives import ObjectiveNumericsError
from obj_helpers import make_batch, make_multi_hot

GRADCHECK = [
    ("clip", {}, "ids"),
    ("siglip", {}, "ids"),
    ("siglip", {"use_labels": True}, "ids"),
    ("clip_multipositive", {"target": "jaccard"}, "mh"),
    ("soft_clip", {}, "ids"),
    ("medclip", {}, "mh"),
    ("mgll", {}, "ids"),
    ("mgll", {"target": "jaccard", "chunk_size": 2}, "mh"),
    ("mgll", {"pointwise_target": "soft", "soft_labels": False}, "ids"),
    ("mgll_released", {}, "positive"),
]


@pytest.mark.parametrize("name,opts,kind", GRADCHECK, ids=[f"{n}-{o}" for n, o, _ in GRADCHECK])
def test_gradcheck_float64(name, opts, kind):
    image, texts, ids, s = make_batch(b=5, d=3, seed=11, normalise=False)
    if kind == "positive":
        image = image.detach().abs().requires_grad_()
        texts = {g: t.detach().abs().requires_grad_() for g, t in texts.items()}
    labels = ids
    if kind == "mh":
        labels = {"disease": make_multi_hot(b=5, c=3, seed=1), "description": make_multi_hot(b=5, c=3, seed=2)}
    labels = {g: v.clone() for g, v in labels.items()}
    labels["description"][1] = -1
    s = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    bias = torch.tensor(-0.3, dtype=torch.float64, requires_grad=True)
    obj = objectives.build(name, **opts)
    levels = list(texts)

    def f(x, y1, y2, s, b):
        return obj(x, dict(zip(levels, (y1, y2))), labels, s, b)["loss"]

    assert torch.autograd.gradcheck(f, (image, *texts.values(), s, bias))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", ["clip", "siglip", "mgll", "mgll_released", "soft_clip"])
def test_half_inputs_give_fp32_outputs(dtype, name):
    image, texts, ids, s = make_batch(b=8, d=8, dtype=torch.float32)
    image = image.detach().to(dtype).requires_grad_()
    texts = {g: t.detach().to(dtype).requires_grad_() for g, t in texts.items()}
    s = torch.tensor(14.0, dtype=dtype, requires_grad=True)
    out = objectives.build(name)(image, texts, ids, s, torch.tensor(-1.0, dtype=dtype))
    for k, v in out.items():
        assert v.dtype == torch.float32, k
    ref = objectives.build(name)(image.float(), {g: t.float() for g, t in texts.items()}, ids, s.float(), -1.0)
    torch.testing.assert_close(out["loss"], ref["loss"])
    out["loss"].backward()
    assert image.grad.dtype == dtype and s.grad.dtype == dtype


def test_float64_stays_float64():
    image, texts, ids, s = make_batch()
    out = objectives.build("mgll")(image, texts, ids, s)
    assert all(v.dtype == torch.float64 for v in out.values())


def test_autocast_is_disabled_inside():
    image, texts, ids, s = make_batch(b=8, d=8, dtype=torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = objectives.build("mgll")(image, texts, ids, s)
    assert out["loss"].dtype == torch.float32
    ref = objectives.build("mgll")(image, texts, ids, s)
    torch.testing.assert_close(out["loss"], ref["loss"])


@pytest.mark.parametrize(
    "name,term",
    [
        ("clip", "clip/disease"),
        ("mgll", "sclip/disease"),
        ("siglip", "siglip/disease"),
        ("mgll_released", "softce/disease"),
    ],
)
def test_nan_input_raises_naming_the_term(name, term):
    image, texts, ids, s = make_batch()
    bad = image.detach().clone()
    bad[2, 1] = float("nan")
    with pytest.raises(ObjectiveNumericsError) as err:
        objectives.build(name)(bad, texts, ids, s, -1.0)
    assert term in str(err.value) and err.value.term == term and name in str(err.value)
    assert isinstance(err.value, FloatingPointError)


def test_nan_in_one_level_names_that_level():
    image, texts, ids, s = make_batch()
    texts = dict(texts)
    bad = texts["description"].detach().clone()
    bad[0, 0] = float("inf")
    texts["description"] = bad
    with pytest.raises(ObjectiveNumericsError, match="description"):
        objectives.build("mgll", terms=["sclip", "pointwise"])(image, texts, ids, s)


def test_infinite_scale_raises():
    image, texts, ids, s = make_batch()
    with pytest.raises(ObjectiveNumericsError):
        objectives.build("soft_clip")(image, texts, ids, torch.tensor(float("inf"), dtype=torch.float64))


def test_large_logits_stay_finite_in_fp32():
    image, texts, ids, _ = make_batch(b=16, d=8, dtype=torch.float32, normalise=False)
    image = (image.detach() * 30).requires_grad_()
    out = objectives.build("mgll")(image, texts, ids, torch.tensor(100.0))
    assert torch.isfinite(out["loss"])
    out["loss"].backward()
    assert torch.isfinite(image.grad).all()


@pytest.mark.parametrize("chunk", [0, 3])
def test_backward_twice_with_retain_graph(chunk):
    """Without chunking dL/dS overwrites the stored S; a second backward recomputes S and gives the same."""
    image, texts, ids, s = make_batch(b=7)
    out = objectives.build("mgll", chunk_size=chunk)(image, texts, ids, s)
    g1 = torch.autograd.grad(out["loss"], [image, s], retain_graph=True)
    g2 = torch.autograd.grad(out["loss"], [image, s])
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
