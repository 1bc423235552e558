"""Fine-tuning's ``augment`` option: flip (default, true), none (false), mgll (the MGLL downstream preset
through the loader, mean = std = 0.5 normalisation for train, val and test)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bench.models import TwoTower
from tasks import build


def _tiny() -> TwoTower:
    torch.manual_seed(0)
    return TwoTower({"patch_size": 8, "width": 32, "depth": 1, "heads": 2}, {"width": 32, "layers": 1, "heads": 2},
                    embed_dim=16, resolution=16)


def test_augment_choices():
    assert build("finetune", target="x").options.augment == "flip"
    assert build("finetune", target="x", augment=True).options.augment == "flip"
    assert build("finetune", target="x", augment=False).options.augment == "none"
    assert build("finetune", target="x", augment="mgll").options.augment == "mgll"
    with pytest.raises(ValueError, match="augment"):
        build("finetune", target="x", augment="mgl")


def test_mgll_preset_pixels_and_deterministic_run(colour_splits):
    splits = colour_splits("multilabel", {"train": 24, "val": 12, "test": 12})
    model = _tiny()
    task = build("finetune", target="channels", epochs=1, batch_size=8, augment="mgll")
    # val/test: the images resized to 16 px, (x / 255 - 0.5) / 0.5
    test = splits["test"]
    got = torch.cat(list(task._eval_pixels(model, test)))
    want = torch.stack([torch.from_numpy(test.image(i)) for i in range(len(test))])
    want = torch.nn.functional.interpolate(want.permute(0, 3, 1, 2).float(), size=(16, 16), mode="bilinear",
                                           antialias=True) if want.shape[1] != 16 else want.permute(0, 3, 1, 2).float()
    assert got.shape == (len(test), 3, 16, 16)
    assert torch.allclose(got, want / 127.5 - 1, atol=2 / 255 + 1e-6)
    # train: augmented, in [-1, 1], drawn per (seed, epoch, sample)
    order = np.arange(len(splits["train"]))
    a = list(task._train_pixels(model, splits["train"], order, 1))
    b = list(task._train_pixels(model, splits["train"], order, 1))
    c = list(task._train_pixels(model, splits["train"], order, 2))
    assert [r.tolist() for r, _ in a] == [list(range(0, 8)), list(range(8, 16)), list(range(16, 24))]
    assert all(torch.equal(x, y) for (_, x), (_, y) in zip(a, b))
    assert not all(torch.equal(x, y) for (_, x), (_, y) in zip(a, c))
    assert all(float(x.min()) >= -1 and float(x.max()) <= 1 for _, x in a)
    m1 = task.run(model, splits)
    m2 = build("finetune", target="channels", epochs=1, batch_size=8, augment="mgll").run(_tiny(), splits)
    assert math.isfinite(m1["auc"]) and m1["auc"] == m2["auc"] and m1["train_loss"] == m2["train_loss"]
