"""Every task end to end on the real (tiny) TwoTower at 16 px: keys present, values finite, model intact."""

from __future__ import annotations

import math

import torch

from bench.models import TwoTower
from tasks import FeatureCache, build


def test_all_tasks_on_twotower(tmp_path, colour_splits):
    torch.manual_seed(0)
    model = TwoTower({"patch_size": 8, "width": 32, "depth": 1, "heads": 2}, {"width": 32, "layers": 1, "heads": 2},
                     embed_dim=16, resolution=16)
    model.eval()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    splits = colour_splits("multilabel", {"train": 40, "val": 20, "test": 20})
    cache = FeatureCache(tmp_path)
    runs = {
        "linear_probe": dict(target="channels", c_grid=[0.1, 1.0]),
        "finetune": dict(target="channels", epochs=1, batch_size=16),
        "zeroshot": dict(target="channels", prompt="a photo with {}"),
        "retrieval": dict(level="colour"),
    }
    for name, options in runs.items():
        m = build(name, **options).run(model, splits, cache=cache)
        for key, value in m.items():
            assert isinstance(value, (int, float, str)), (name, key)
        if name == "retrieval":
            assert 0.0 <= m["i2t_recall@1"] <= m["i2t_recall@10"] <= 1.0
        else:
            assert math.isfinite(m["auc"]) and 0.0 <= m["acc"] <= 1.0
    assert cache.hits >= 2  # zeroshot and retrieval reused the linear probe's test features
    assert not model.training
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


def _tiny(precision: str) -> TwoTower:
    torch.manual_seed(0)
    return TwoTower({"patch_size": 8, "width": 32, "depth": 1, "heads": 2}, {"width": 32, "layers": 1, "heads": 2},
                    embed_dim=16, resolution=16, precision=precision)


def test_precision_is_part_of_the_cache_key_and_bf16_runs(tmp_path, colour_splits):
    splits = colour_splits("multiclass", {"train": 30, "val": 20, "test": 20})
    cache = FeatureCache(tmp_path)
    fp32, bf16 = _tiny("fp32"), _tiny("bf16")
    assert all(torch.equal(a, b) for a, b in zip(fp32.state_dict().values(), bf16.state_dict().values()))
    a = build("linear_probe", target="colour", c=1.0).run(fp32, splits, cache=cache)
    b = build("linear_probe", target="colour", c=1.0).run(bf16, splits, cache=cache)  # autocast on CPU
    assert a["features_cached"] == 0 and b["features_cached"] == 0 and cache.hits == 0
    assert math.isfinite(b["auc"])
    f = build("finetune", target="colour", epochs=1, batch_size=16).run(bf16, splits)
    assert math.isfinite(f["auc"])
