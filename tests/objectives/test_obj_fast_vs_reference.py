"""The fast engine (``impl=fast``, the default) against each objective's reference implementation
(``impl=reference``: the formula in plain torch with autograd) on batches too large for the loops of
obj_reference.py: every output and the gradients of the features, the scale and the bias."""

from __future__ import annotations

import pytest
import torch

import objectives
from objectives import ObjectiveConfigError

B, D = 41, 6

CASES = [
    ("clip", {}, "none"),
    ("clip", {}, "ids"),
    ("siglip", {}, "none"),
    ("siglip", {"use_labels": True}, "ids"),
    ("siglip", {"use_labels": True, "target": "jaccard"}, "mh"),
    ("clip_multipositive", {}, "ids"),
    ("clip_multipositive", {"target": "jaccard"}, "mh"),
    ("soft_clip", {}, "ids"),
    ("soft_clip", {"target": "jaccard"}, "mh"),
    ("soft_clip", {}, "mh"),  # exact targets from multi-hot labels: identical label sets
    ("medclip", {}, "mh"),
    ("mgll", {}, "ids"),
    ("mgll", {}, "distinct"),
    ("mgll", {}, "few"),
    ("mgll", {"terms": ["sclip", "pointwise"], "weights": [0.3, 2.0, 0.0]}, "ids"),
    ("mgll", {"soft_labels": False}, "ids"),
    ("mgll", {"pointwise_target": "soft"}, "ids"),
    ("mgll", {"target": "jaccard"}, "mh"),
    ("mgll", {"levels": ["description", "disease", "extra"]}, "ids"),
    ("mgll_released", {}, "ids"),
    ("mgll_released", {}, "positive"),
]


def _batch(kind: str, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    levels = ("disease", "description", "extra")

    def feat():
        f = torch.randn(B, D, generator=g, dtype=torch.float64)
        return f.abs() if kind == "positive" else torch.nn.functional.normalize(f, dim=1)

    image = feat()
    texts = {lv: feat() for lv in levels}
    if kind in ("mh",):
        labels = {lv: (torch.rand(B, 5, generator=g) > 0.6).long() for lv in levels}
        for lv in levels:
            labels[lv][[3, 17]] = -1  # missing texts
    elif kind == "none":
        labels = None
    else:
        k = {"ids": 6, "positive": 6, "distinct": B, "few": 2}[kind]
        labels = {lv: torch.randperm(B, generator=g) % k if kind == "distinct" else torch.randint(0, k, (B,), generator=g)
                  for lv in levels}
        if kind != "distinct":
            labels["description"][[0, 9, 30]] = -1
            labels["disease"][[9, 12]] = -1
    return image, texts, labels


def _run(name, opts, kind, impl, chunk=0):
    image, texts, labels = _batch(kind)
    if name in ("mgll_released", "soft_clip") and "levels" not in opts:
        texts = {k: v for k, v in texts.items() if k != "extra"}
        labels = labels if labels is None else {k: v for k, v in labels.items() if k != "extra"}
    x = image.clone().requires_grad_()
    t = {k: v.clone().requires_grad_() for k, v in texts.items()}
    s = torch.tensor(3.5, dtype=torch.float64, requires_grad=True)
    b = torch.tensor(-2.0, dtype=torch.float64, requires_grad=True)
    options = dict(opts, impl=impl, **({"chunk_size": chunk} if chunk else {}))
    out = objectives.build(name, **options)(x, t, labels, s, b)
    tensors = [x, *t.values(), s, b]
    gs = torch.autograd.grad(out["loss"], tensors, allow_unused=True)
    return out, [torch.zeros_like(v) if gr is None else gr for gr, v in zip(gs, tensors)]


@pytest.mark.parametrize("name,opts,kind", CASES, ids=[f"{n}-{o}-{k}" for n, o, k in CASES])
@pytest.mark.parametrize("chunk", [0, 7])
def test_fast_equals_reference(name, opts, kind, chunk):
    want, gwant = _run(name, opts, kind, "reference")
    got, ggot = _run(name, opts, kind, "fast", chunk)
    assert list(got) == list(want)  # same terms, same order
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=1e-10, atol=1e-12, equal_nan=True, msg=k)
    for a, r in zip(ggot, gwant):
        torch.testing.assert_close(a, r, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", ["clip", "mgll"])
def test_fast_equals_reference_float32_large(name):
    g = torch.Generator().manual_seed(1)
    n, d = 384, 64
    x, y1, y2 = (torch.nn.functional.normalize(torch.randn(n, d, generator=g), dim=1) for _ in range(3))
    ids = {"disease": torch.randint(0, 24, (n,), generator=g), "description": torch.randint(0, 96, (n,), generator=g)}
    s = torch.tensor(1 / 0.07)
    outs = [objectives.build(name, impl=impl)(x, {"disease": y1, "description": y2}, ids, s) for impl in ("fast", "reference")]
    for k in outs[1]:
        torch.testing.assert_close(outs[0][k], outs[1][k], rtol=2e-5, atol=2e-5)


def test_reference_refuses_chunking():
    with pytest.raises(ObjectiveConfigError, match="chunk_size=8 needs impl=fast"):
        objectives.build("mgll", impl="reference", chunk_size=8)


def test_impl_is_a_checked_option():
    with pytest.raises(ObjectiveConfigError, match="impl") as err:
        objectives.build("clip", impl="slow")
    assert err.value.allowed == ["fast", "reference"]
    assert objectives.build("clip").opt.impl == "fast"


@pytest.mark.parametrize("weights", [[0.5, -1.0, 1.0], [-0.1, 1, 1]])
def test_negative_weights_are_refused(weights):
    with pytest.raises(ObjectiveConfigError, match=r"weights\[\d\]=-[\d.]+ must be >= 0") as err:
        objectives.build("mgll", weights=weights)
    assert err.value.option == "weights" and err.value.objective == "mgll"


def test_options_dataclass_checks_when_built_directly():
    from objectives.mgll import MGLLOptions

    with pytest.raises(ObjectiveConfigError, match="'mgll'.*terms"):
        MGLLOptions(terms=("sclip", "bogus"))
    assert MGLLOptions(weights=[1, 2, 3]).weights == (1.0, 2.0, 3.0)
