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
    # val/test: MGLL's eval transform, T.Resize(16, bicubic) of the image, then (x / 255 - 0.5) / 0.5
    from torchvision import transforms as T

    test = splits["test"]
    assert test.image(0).shape[0] != 16  # the resize is exercised
    got = torch.cat(list(task._eval_pixels(model, test)))
    resize = T.Resize((16, 16), interpolation=T.InterpolationMode.BICUBIC, antialias=True)
    want = torch.stack([resize(torch.from_numpy(test.image(i)).permute(2, 0, 1)) for i in range(len(test))]).float()
    assert got.shape == (len(test), 3, 16, 16)
    assert ((got + 1) * 127.5 - want).abs().max() <= 1 + 1e-4  # uint8 rounding of the two resize kernels
    bilinear = torch.nn.functional.interpolate(torch.stack([torch.from_numpy(test.image(i)) for i in range(len(test))])
                                               .permute(0, 3, 1, 2).float(), size=(16, 16), mode="bilinear")
    assert ((got + 1) * 127.5 - bilinear).abs().max() > 4  # not the bilinear resize of the other presets
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
