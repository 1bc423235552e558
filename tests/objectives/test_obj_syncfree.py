"""No host synchronisation in a call (forward and backward) when the labels are on the host.

On the CPU the "device" is the meta device (``bench.syncguard``: reading a meta tensor on the host is
impossible, so any ``.item()``, ``bool()``, ``.tolist()``, ``nonzero``, ``unique``, ... on the features' side
raises); on a GPU, when one is present, CUDA's own detector (``torch.cuda.set_sync_debug_mode("error")``)."""

from __future__ import annotations

import pytest
import torch

import objectives
from bench.syncguard import HostSyncError, no_host_sync

DEVICES = ["meta"] + (["cuda"] if torch.cuda.is_available() else [])
B, D = 24, 8

CASES = [
    ("clip", {}, "none"),
    ("clip", {}, "ids"),
    ("clip", {"chunk_size": 5}, "ids"),
    ("siglip", {}, "none"),
    ("siglip", {"use_labels": True}, "ids"),
    ("clip_multipositive", {}, "ids"),
    ("soft_clip", {}, "ids"),
    ("soft_clip", {"target": "jaccard"}, "mh"),
    ("medclip", {}, "mh"),
    ("mgll", {}, "ids"),
    ("mgll", {}, "distinct"),
    ("mgll", {}, "few"),
    ("mgll", {"chunk_size": 7}, "ids"),
    ("mgll", {"target": "jaccard", "pointwise_target": "soft"}, "mh"),
    ("mgll", {"soft_labels": False, "terms": ["pointwise", "skl"]}, "ids"),
    ("mgll_released", {}, "ids"),
    # the reference implementations need no synchronisation either
    ("clip", {"impl": "reference"}, "ids"),
    ("siglip", {"impl": "reference", "use_labels": True}, "ids"),
    ("clip_multipositive", {"impl": "reference", "target": "jaccard"}, "mh"),
    ("soft_clip", {"impl": "reference"}, "mh"),
    ("medclip", {"impl": "reference"}, "mh"),
    ("mgll", {"impl": "reference"}, "ids"),
    ("mgll_released", {"impl": "reference"}, "ids"),
]


def _labels(kind: str, missing: bool):
    g = torch.Generator().manual_seed(0)
    if kind == "none":
        return None
    if kind == "mh":
        out = {lv: (torch.rand(B, 4, generator=g) > 0.5).long() for lv in ("disease", "description")}
    else:
        k = {"ids": 5, "distinct": B, "few": 2}[kind]
        out = {lv: (torch.randperm(B, generator=g) if kind == "distinct" else torch.randint(0, k, (B,), generator=g))
               for lv in ("disease", "description")}
    if missing:
        out["description"][3] = -1
    return out


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("missing", [False, True])
@pytest.mark.parametrize("name,opts,kind", CASES, ids=[f"{n}-{o}-{k}" for n, o, k in CASES])
def test_forward_and_backward_never_wait_for_the_device(name, opts, kind, missing, device):
    dev = torch.device(device)
    x = torch.randn(B, D, device=dev, requires_grad=True)
    texts = {lv: torch.randn(B, D, device=dev, requires_grad=True) for lv in ("disease", "description")}
    s = torch.full((), 10.0, device=dev, requires_grad=True)
    b = torch.full((), -1.0, device=dev, requires_grad=True)
    labels = _labels(kind, missing and kind != "none")  # on the host, as the training loop hands them over
    obj = objectives.build(name, **opts)
    obj.check_finite = False  # the training step checks finiteness on the device (bench/train_step.py)
    if device == "cuda":  # library handles are created at the first call, outside the guard
        obj(x, texts, labels, s, b if obj.needs_logit_bias else None)["loss"].backward()
    with no_host_sync(dev):
        for _ in range(2):
            out = obj(x, texts, labels, s, b if obj.needs_logit_bias else None)
            out["loss"].backward()
    assert out["loss"].device.type == dev.type and x.grad is not None and s.grad is not None


def test_the_guard_fails_on_a_sync():
    x = torch.randn(4, 3, device="meta")
    for bad in (lambda: x.sum().item(), lambda: bool(x.sum() > 0), lambda: x.tolist(), lambda: x.nonzero(),
                lambda: torch.unique(x), lambda: x.cpu(), lambda: x[x > 0], lambda: float(x.mean()),
                lambda: torch.ones(3).to("meta"), lambda: torch.tensor(1.0, device="meta"),
                lambda: torch.empty(3, device="meta").copy_(torch.ones(3))):
        with pytest.raises(HostSyncError), no_host_sync("meta"):
            bad()
    with no_host_sync("meta"):  # what the objectives do instead
        torch.ones(3).to("meta", non_blocking=True)
        torch.full((), 1.0, device="meta")
        torch.where(torch.isfinite(x), x, 0.0).sum()


def test_direct_calls_still_check_finiteness():
    """check_finite (the default) raises at once, naming the term (one synchronisation per call)."""
    x = torch.randn(B, D)
    x[0, 0] = float("nan")
    with pytest.raises(objectives.ObjectiveNumericsError, match="clip/disease"):
        objectives.build("clip")(x, {"disease": torch.randn(B, D)}, None, 10.0)
    obj = objectives.build("clip")
    obj.check_finite = False
    assert torch.isnan(obj(x, {"disease": torch.randn(B, D)}, None, 10.0)["loss"])
